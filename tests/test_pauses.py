"""Pause and resume with a real worker on a real Redis: a paused task name's messages are held
(not run, not lost), resume runs each exactly once under its own id, a pause with an end
expires on the next pass, and a paused queue is not consumed until resumed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery

from celery_watchdog import install
from celery_watchdog.monitor import pauses
from celery_watchdog.monitor.check import run_pass
from celery_watchdog.runtime import Watchdog
from celery_watchdog.store import Store
from tests.helpers import make_app, run_worker, wait_for
from tests.test_cli import celery

pytestmark = pytest.mark.timeout(120)
FAST = {"watchdog_flush_interval": 0.1, "watchdog_snapshot_interval": 0.2}


class Env:
    def __init__(self, redis_url: str) -> None:
        self.app: Celery = make_app(redis_url, **FAST)
        self.runs: list[int] = []
        runs = self.runs

        @self.app.task(name="p.work", shared=False)
        def work(n: int) -> int:
            runs.append(n)
            return n * 10

        self.work = work
        wd = install(self.app)
        assert wd is not None
        self.wd: Watchdog = wd
        self.store: Store = wd.store()

    def held(self, target: str) -> int:
        return self.store.pauses.held_counts([target])[target]


@pytest.fixture
def env(redis_url: str) -> Iterator[Env]:
    env = Env(redis_url)
    yield env
    env.app.close()


def test_a_paused_task_name_is_held_and_each_message_runs_once_on_resume(env: Env) -> None:
    with run_worker(env.app, queues=["celery"]):
        assert env.work.delay(0).get(timeout=20) == 0  # runs while not paused
        pauses.pause(env.wd, env.store, "task:p.work", by="alice", until=None, note="vendor down")
        time.sleep(0.6)  # workers see it within a snapshot interval
        sent = [env.work.delay(n) for n in (1, 2, 3)]
        wait_for(lambda: env.held("task:p.work") == 3, timeout=20, what="3 held")
        time.sleep(0.5)
        assert env.runs == [0] and {r.state for r in sent} == {"PENDING"}
        done = pauses.resume(env.wd, env.store, "task:p.work", by="bob")
        assert done == {"resumed": True, "released": 3, "failed": ""}
        assert [r.get(timeout=20) for r in sent] == [10, 20, 30]  # the same ids
        time.sleep(0.5)
    assert sorted(env.runs) == [0, 1, 2, 3]  # nothing lost, nothing run twice
    assert env.held("task:p.work") == 0
    audit = [(e["action"], e["by"]) for e in env.store.pauses.log()]
    assert audit == [("resume", "bob"), ("pause", "alice")]


def test_a_held_message_keeps_its_countdown_when_released(env: Env) -> None:
    with run_worker(env.app, queues=["celery"]):
        pauses.pause(env.wd, env.store, "task:p.work", by="alice", until=None)
        time.sleep(0.6)
        sent_at = time.time()
        later = env.work.apply_async((6,), countdown=4)
        wait_for(lambda: env.held("task:p.work") == 1, timeout=20, what="1 held")
        assert pauses.resume(env.wd, env.store, "task:p.work", by="bob")["released"] == 1
        time.sleep(max(0.0, sent_at + 2.5 - time.time()))
        assert env.runs == []  # released as it was sent: not before its time
        assert later.get(timeout=20) == 60
    assert env.runs == [6] and time.time() - sent_at >= 3.5


def test_a_pause_for_a_while_ends_on_the_next_pass_after_it(env: Env) -> None:
    with run_worker(env.app):
        until = env.store.now() + 1.0
        pauses.pause(env.wd, env.store, "task:p.work", by="alice", until=until)
        time.sleep(0.6)
        sent = [env.work.delay(n) for n in (7, 8)]
        wait_for(lambda: env.held("task:p.work") == 2, timeout=20, what="2 held")
        time.sleep(max(0.0, until - env.store.now()) + 0.2)
        run_pass(env.wd, env.store)
        assert [r.get(timeout=20) for r in sent] == [70, 80]
    assert env.store.pauses.all() == {}
    assert [e["action"] for e in env.store.pauses.log()][:1] == ["expired"]


def test_a_paused_queue_is_not_consumed_until_resumed(env: Env) -> None:
    with run_worker(env.app, queues=["pq"]):
        pauses.pause(env.wd, env.store, "queue:pq", by="alice", until=None)
        time.sleep(0.6)
        sent = [env.work.apply_async((n,), queue="pq") for n in (4, 5)]
        time.sleep(1.5)
        assert env.runs == []
        done = pauses.resume(env.wd, env.store, "queue:pq", by="bob")
        assert done["resumed"] and not done["failed"]
        assert [r.get(timeout=20) for r in sent] == [40, 50]
        time.sleep(0.5)
    assert sorted(env.runs) == [4, 5]


def test_pause_and_resume_as_commands(redis_url: str) -> None:
    from tests.helpers import unique_prefix

    prefix = unique_prefix("wdpause")
    where: dict[str, Any] = {"redis_url": redis_url, "prefix": prefix}
    out = celery("pause", "tests.workerapp.add", "--for", "30m", "--note", "db migration", **where)
    assert out.returncode == 0 and "Paused task:tests.workerapp.add" in out.stdout, out.stderr
    listed = json.loads(celery("pause", "--list", "--json", **where).stdout)
    [paused] = listed["paused"]
    assert paused["target"] == "task:tests.workerapp.add" and paused["note"] == "db migration"
    assert paused["until"] and paused["held"] == 0
    assert celery("pause", **where).returncode == 2  # neither a name nor --queue
    out = celery("resume", "tests.workerapp.add", **where)
    assert out.returncode == 0 and "0 held message(s) published again" in out.stdout
    assert celery("resume", "tests.workerapp.add", **where).returncode == 1  # not paused

"""Input quarantine with a real worker on a real Redis: the same bad input sent again and
again as new tasks runs at most ``quarantine_after`` times; later copies are parked in the
dead-letter queue unrun, with one alert for the input; ``release`` (or a dead-letter replay
after the fix) lets it run again."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery

from celery_watchdog import dlq, install
from celery_watchdog.monitor.check import run_pass
from celery_watchdog.runtime import Watchdog
from celery_watchdog.store import Store
from celery_watchdog.testing import capture_alerts
from tests.helpers import make_app, run_worker, wait_for
from tests.test_cli import celery

pytestmark = pytest.mark.timeout(120)
FAST = {"watchdog_flush_interval": 0.1, "watchdog_snapshot_interval": 0.3}


class Env:
    def __init__(self, redis_url: str) -> None:
        self.app: Celery = make_app(redis_url, **FAST)
        self.runs: list[Any] = []
        self.fixed = False
        env = self

        @self.app.task(name="q.import_csv", shared=False, fingerprint_args=("file_id",),
                       alert_context=("file_id",))  # fmt: skip
        def import_csv(file_id: int, attempt: int = 0) -> str:
            env.runs.append((file_id, attempt))
            if env.fixed or file_id != 555:
                return "imported"
            raise ValueError(f"row 17 of file {file_id}: 'abc' is not a number")

        self.task = import_csv
        wd = install(self.app)
        assert wd is not None
        self.wd: Watchdog = wd
        self.store: Store = wd.store()

    def state(self, task_id: str) -> str:
        runs = self.store.runs.of_task(task_id)
        return runs[0].state if runs else "PENDING"

    def send(self, file_id: int, attempt: int) -> str:
        return str(self.task.delay(file_id, attempt=attempt).id)

    def ended(self, task_id: str, *states: str) -> str:
        return str(wait_for(lambda: (s := self.state(task_id)) in states and s, timeout=20,
                            what=f"{task_id} in {states}"))  # fmt: skip

    def quarantined(self) -> dict[str, Any]:
        return wait_for(lambda: self.store.quarantine.all(), timeout=10,
                        what="a quarantined input")  # fmt: skip


@pytest.fixture
def env(redis_url: str) -> Iterator[Env]:
    env = Env(redis_url)
    with run_worker(env.app, concurrency=2):
        yield env
    env.app.close()


def test_the_same_bad_input_sent_twelve_times_runs_three_times_and_the_rest_are_parked(
    env: Env,
) -> None:
    for attempt in range(3):  # a producer re-sending the same file as new tasks
        env.ended(env.send(555, attempt), "FAILURE")
    [(fp, doc)] = env.quarantined().items()
    assert doc["name"] == "q.import_csv" and doc["label"] == "q.import_csv(file_id=555)"
    assert doc["reason"] == "bad input" and doc["failures"] == 3
    wait_for(lambda: env.store.quarantine.version() != "0", what="quarantine version")
    time.sleep(1.0)  # every worker reloads the quarantined inputs within a snapshot interval
    parked = [env.send(555, attempt) for attempt in range(3, 12)]
    other = env.send(777, 0)  # another input of the same task runs as usual
    for task_id in parked:
        assert env.ended(task_id, "REVOKED", "FAILURE", "SUCCESS") == "REVOKED"
    assert env.ended(other, "SUCCESS") == "SUCCESS"
    assert [r for r in env.runs if r[0] == 555] == [(555, 0), (555, 1), (555, 2)]

    with capture_alerts() as alerts:
        findings = [f for _ in range(2) for f in run_pass(env.wd, env.store).findings]
    page = alerts.assert_sent(kind="poison", task_name="q.import_csv")
    assert "q.import_csv(file_id=555) failed 3 times with the same error" in page.summary
    assert "bad input" in page.summary and page.action == "quarantined"
    assert f"quarantine release {fp}" in page.next_step
    assert sorted(f.run.task_id for f in findings if f.action == "dead_lettered") == sorted(
        parked
    )
    assert set(env.store.dlq.ids()) == set(parked)
    assert env.store.quarantine.get(fp)["parked"] == 9  # type: ignore[index]

    where = {"redis_url": env.app.conf.broker_url, "prefix": env.app.conf.watchdog_key_prefix}
    listed = celery("quarantine", "list", **where)
    assert listed.returncode == 0, listed.stderr
    assert fp in listed.stdout and "q.import_csv(file_id=555)" in listed.stdout
    shown = json.loads(celery("quarantine", "show", fp[:6], "--json", **where).stdout)
    assert shown["parked"] == 9 and shown["reason"] == "bad input"
    released = celery("quarantine", "release", fp[:8], **where)
    assert released.returncode == 0 and f"Released {fp}" in released.stdout
    assert env.store.quarantine.all() == {}
    with capture_alerts() as after:
        run_pass(env.wd, env.store)
    resolved = after.assert_sent(kind="poison", notice="resolved")
    assert resolved.incident.resolution.startswith("released by ")

    time.sleep(1.0)
    env.fixed = True
    assert env.ended(env.send(555, 12), "SUCCESS", "REVOKED") == "SUCCESS"


def test_a_dead_letter_replay_after_the_fix_releases_the_input(env: Env) -> None:
    for attempt in range(3):
        env.ended(env.send(555, attempt), "FAILURE")
    [fp] = env.quarantined()
    time.sleep(1.0)
    parked = env.send(555, 3)
    assert env.ended(parked, "REVOKED", "FAILURE", "SUCCESS") == "REVOKED"
    run_pass(env.wd, env.store)
    entry = dlq.get(env.store, parked)
    assert entry is not None and entry.fingerprint == fp
    env.fixed = True
    [result] = dlq.replay(env.app, env.store, [parked], now=env.store.now())
    assert result.outcome == "replayed"
    assert env.app.AsyncResult(result.new_task_id).get(timeout=20) == "imported"
    assert env.store.quarantine.all() == {}

"""Flower-shaped documents built from a store that real runs on real workers filled."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import Celery

from celery_watchdog import WatchedTask, install
from celery_watchdog.runtime import Watchdog
from celery_watchdog.store import Store
from celery_watchdog.views import documents as views
from celery_watchdog.views import status as statusdoc
from tests.helpers import PreforkWorker, make_app, run_worker, wait_for

FAST = {"watchdog_flush_interval": 0.1, "watchdog_snapshot_interval": 0.2}
WATCHDOG_KEYS = {
    "health", "reason", "last_heartbeat", "step", "processed", "total", "deliveries", "pid",
    "cpu", "running", "elapsed", "copies", "queue", "outcome", "owner", "runbook",
}  # fmt: skip


class Env:
    """An app with test tasks, its watchdog runtime and a store to read back from."""

    def __init__(self, redis_url: str) -> None:
        self.app: Celery = make_app(redis_url, **FAST)
        self.gate = threading.Event()
        self.tasks = _define_tasks(self.app, self.gate)
        wd = install(self.app)
        assert wd is not None
        self.wd: Watchdog = wd
        self.store: Store = wd.store()

    def tasks_doc(self, **filters: Any) -> dict[str, dict[str, Any]]:
        return views.tasks_doc(self.store, self.wd, **filters)

    def wait_doc(
        self, predicate: Callable[[dict[str, Any]], Any], what: str, **filters: Any
    ) -> Any:
        return wait_for(lambda: predicate(self.tasks_doc(**filters)), timeout=10, what=what)


def _define_tasks(app: Celery, gate: threading.Event) -> dict[str, Any]:
    @app.task(name="v.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="v.fail", shared=False)
    def fail(msg: str) -> None:
        raise ValueError(msg)

    @app.task(name="v.login", shared=False)
    def login(user: str, password: str) -> str:
        return user

    @app.task(name="v.export", shared=False, base=WatchedTask, bind=True, owner="reports")
    def export(self: WatchedTask, rows: int) -> int:
        with self.step("write rows"):
            for i in range(1, rows + 1):
                self.heartbeat(processed=i, total=rows)
                if i == rows // 2:
                    gate.wait(15)
        return rows

    @app.task(name="v.silent", shared=False, base=WatchedTask, bind=True, heartbeat_timeout=0.5)
    def silent(self: WatchedTask) -> None:
        self.heartbeat(step="call vendor")
        gate.wait(15)

    @app.task(name="v.wait", shared=False)
    def wait() -> None:
        gate.wait(15)

    return {"add": add, "fail": fail, "login": login, "export": export, "silent": silent,
            "wait": wait}  # fmt: skip


@pytest.fixture
def env(redis_url: str) -> Iterator[Env]:
    env = Env(redis_url)
    yield env
    env.gate.set()
    env.app.close()


def _finished(doc: dict[str, Any], task_id: str, state: str) -> Any:
    task = doc.get(task_id)
    return task if task and task["state"] == state else None


def test_a_finished_task_has_flowers_task_fields_and_a_watchdog_object(env: Env) -> None:
    with run_worker(env.app) as worker:
        result = env.tasks["add"].delay(2, 3)
        assert result.get(timeout=10) == 5
        task = env.wait_doc(lambda d: _finished(d, result.id, "SUCCESS"), "add recorded")

    assert set(views.TASK_FIELDS) <= set(task)
    assert task["uuid"] == result.id and task["name"] == "v.add"
    assert task["worker"] == worker.hostname
    assert task["args"] == "(2, 3)" and task["kwargs"] == "{}"
    assert task["result"] == "5" and task["exception"] is None
    assert isinstance(task["succeeded"], float) and task["timestamp"] == task["succeeded"]
    # received is only known for redelivered messages (a first delivery costs nothing extra)
    assert task["started"] <= task["succeeded"]
    assert 0 <= task["runtime"] < 5
    assert task["routing_key"] == "celery" and task["retries"] == 0
    assert set(task["watchdog"]) >= WATCHDOG_KEYS
    assert task["watchdog"]["health"] == "ok" and task["watchdog"]["running"] is False
    assert task["watchdog"]["deliveries"] == 1


def test_a_secret_argument_is_shown_redacted(env: Env) -> None:
    with run_worker(env.app):
        result = env.tasks["login"].delay("ada", password="hunter2")
        result.get(timeout=10)
        task = env.wait_doc(lambda d: _finished(d, result.id, "SUCCESS"), "login recorded")
    assert "hunter2" not in str(task)
    assert task["kwargs"] == "{'password': [redacted]}"


def test_a_running_watched_task_shows_its_step_and_progress(env: Env) -> None:
    with run_worker(env.app) as worker:
        result = env.tasks["export"].delay(10)
        task = env.wait_doc(
            lambda d: (t := d.get(result.id)) and t["watchdog"]["cpu"] is not None and t,
            "export at 5/10 with the worker's CPU reading",
        )
        env.gate.set()
        result.get(timeout=10)

    wd = task["watchdog"]
    assert task["state"] == "STARTED" and task["worker"] == worker.hostname
    assert (wd["step"], wd["processed"], wd["total"]) == ("write rows", 5, 10)
    assert wd["health"] == "ok" and wd["running"] is True and wd["watched"] is True
    assert wd["pid"] == os.getpid()  # an in-process threads worker runs tasks in this process
    assert wd["last_heartbeat"] is not None and wd["elapsed"] >= 0
    assert wd["owner"] == "reports"


def test_a_failed_task_shows_its_exception_and_traceback(env: Env) -> None:
    with run_worker(env.app):
        result = env.tasks["fail"].delay("card declined")
        with pytest.raises(ValueError):
            result.get(timeout=10)
        task = env.wait_doc(lambda d: _finished(d, result.id, "FAILURE"), "failure recorded")
    assert task["exception"] == "ValueError: card declined"
    assert "Traceback" in task["traceback"] and isinstance(task["failed"], float)
    assert task["succeeded"] is None and task["watchdog"]["outcome"] == "failed"


def test_a_watched_run_without_progress_past_its_heartbeat_timeout_is_stuck(env: Env) -> None:
    with run_worker(env.app):
        stuck = env.tasks["silent"].delay()
        calm = env.tasks["wait"].delay()
        doc = env.wait_doc(lambda d: d, "a stuck run", health="stuck")
        everything = env.tasks_doc()
        env.gate.set()
        stuck.get(timeout=10)
        calm.get(timeout=10)

    assert list(doc) == [stuck.id]
    assert doc[stuck.id]["watchdog"]["step"] == "call vendor"
    assert doc[stuck.id]["watchdog"]["reason"].startswith("no heartbeat for")
    assert everything[calm.id]["watchdog"]["health"] == "ok"


def test_filters_select_like_flowers_and_limit_keeps_the_first_entries(env: Env) -> None:
    with run_worker(env.app) as worker:
        ok = [env.tasks["add"].delay(i, i) for i in range(3)]
        bad = env.tasks["fail"].delay("x")
        for r in ok:
            r.get(timeout=10)
        with pytest.raises(ValueError):
            bad.get(timeout=10)
        env.wait_doc(lambda d: len(d) == 4, "4 finished tasks")

    assert list(env.tasks_doc(state="FAILURE")) == [bad.id]
    assert list(env.tasks_doc(state="failure")) == [bad.id]
    assert set(env.tasks_doc(taskname="v.add")) == {r.id for r in ok}
    assert set(env.tasks_doc(taskname="v.*")) == {bad.id, *(r.id for r in ok)}
    assert len(env.tasks_doc(workername=worker.hostname)) == 4
    assert env.tasks_doc(workername="nobody@nowhere") == {}
    assert len(env.tasks_doc(limit=2)) == 2
    assert env.tasks_doc(health="stuck") == {}


def test_a_task_id_running_twice_at_once_is_listed_twice_as_duplicate(env: Env) -> None:
    with run_worker(env.app, concurrency=2):
        env.tasks["wait"].apply_async(task_id="dup-1")
        env.tasks["wait"].apply_async(task_id="dup-1")
        doc = env.wait_doc(lambda d: len(d) == 2 and d, "two runs of dup-1")
        info = views.task_doc(env.store, env.wd, "dup-1")
        env.gate.set()

    assert set(doc) == {"dup-1", "dup-1#2"}
    assert {t["uuid"] for t in doc.values()} == {"dup-1"}
    assert {t["watchdog"]["health"] for t in doc.values()} == {"duplicate"}
    assert all(t["watchdog"]["copies"] == 2 for t in doc.values())
    assert info["uuid"] == "dup-1" and len(info["watchdog"]["runs"]) == 2


def test_task_doc_resolves_a_unique_prefix_and_refuses_unknown_or_ambiguous_ones(
    env: Env,
) -> None:
    with run_worker(env.app):
        for task_id in ("order-17-a", "order-17-b", "invoice-9"):
            env.tasks["add"].apply_async((1, 1), task_id=task_id).get(timeout=10)
        env.wait_doc(lambda d: len(d) == 3, "3 finished tasks")

    info = views.task_doc(env.store, env.wd, "inv")
    assert info["uuid"] == "invoice-9" and info["state"] == "SUCCESS"
    assert set(views.TASK_FIELDS) <= set(info) and info["watchdog"]["runs"]
    assert views.task_doc(env.store, env.wd, "order-17-b")["uuid"] == "order-17-b"
    with pytest.raises(views.TaskLookupError, match="ambiguous") as ambiguous:
        views.task_doc(env.store, env.wd, "order-17")
    assert sorted(ambiguous.value.candidates) == ["order-17-a", "order-17-b"]
    with pytest.raises(views.TaskLookupError, match="no task with id or prefix 'nope'"):
        views.task_doc(env.store, env.wd, "nope")


def test_workers_doc_has_flowers_worker_shape_with_active_tasks(env: Env) -> None:
    with run_worker(env.app, concurrency=3) as worker:
        result = env.tasks["wait"].delay()
        doc = wait_for(
            lambda: (d := views.workers_doc(env.store)) and d[worker.hostname]["active"] and d,
            what="a snapshot with the active task",
        )
        env.gate.set()
        result.get(timeout=10)

    entry = doc[worker.hostname]
    assert set(entry) >= {"stats", "active", "active_queues", "timestamp", "watchdog"}
    assert entry["stats"]["pid"] == os.getpid()
    assert entry["stats"]["pool"]["max-concurrency"] == 3
    assert [q["name"] for q in entry["active_queues"]] == ["celery"]
    (active,) = entry["active"]
    assert active["id"] == result.id and active["name"] == "v.wait"
    assert active["hostname"] == worker.hostname and active["worker_pid"] == os.getpid()
    assert active["time_start"] <= entry["timestamp"]
    assert entry["watchdog"]["online"] is True and entry["watchdog"]["pool"] == "threads"


def _stuck_and_failed(doc: dict[str, Any]) -> dict[str, Any] | None:
    tasks = doc["tasks"]
    silent_stuck = "v.silent" in tasks and tasks["v.silent"]["health"]["stuck"]
    add_failed = "v.add" in tasks and tasks["v.add"]["counts_1h"].get("failed")
    return doc if silent_stuck and add_failed else None


def test_status_doc_counts_running_runs_by_health_with_rates_p95_and_last_error(
    env: Env,
) -> None:
    with run_worker(env.app, concurrency=3):
        for i in range(3):
            env.tasks["add"].delay(i, 1).get(timeout=10)
        with pytest.raises(TypeError):
            env.tasks["add"].delay("1", 1).get(timeout=10)
        running = env.tasks["silent"].delay()
        doc = wait_for(
            lambda: _stuck_and_failed(statusdoc.status_doc(env.store, env.wd)),
            what="a stuck v.silent and 4 v.add outcomes",
        )
        env.gate.set()
        running.get(timeout=10)

    add, silent = doc["tasks"]["v.add"], doc["tasks"]["v.silent"]
    assert add["running"] == 0 and add["counts_1h"] == {"succeeded": 3, "failed": 1}
    assert add["success_rate_1h"] == add["success_rate_24h"] == 0.75
    assert add["p95_runtime"] is not None and 0 <= add["p95_runtime"] < 5
    assert add["last_success"] is not None and "TypeError" in add["last_error"]
    assert silent["running"] == 1 and silent["health"]["stuck"] == 1
    assert set(silent["health"]) == set(views.HEALTHS)
    assert doc["workers"] == {"online": 1, "offline": 0}
    assert doc["timestamp"] > 0


@pytest.mark.timeout(60)
def test_runs_of_a_killed_worker_are_lost_once_its_snapshot_expires(redis_url: str) -> None:
    worker = PreforkWorker(redis_url, conf={**FAST}).start()
    try:
        wd = install(worker.app)
        assert wd is not None
        store = wd.store()
        result = worker.task("hang_forever").delay()
        wait_for(lambda: views.tasks_doc(store, wd).get(result.id), what="the run recorded")
        os.killpg(worker.main_pid, signal.SIGKILL)
        task = wait_for(
            lambda: (d := views.tasks_doc(store, wd, health="lost")) and d[result.id],
            timeout=15,
            what="the run judged lost",
        )
    finally:
        worker.stop()
    assert task["state"] == "STARTED"
    assert "stopped reporting" in task["watchdog"]["reason"]
    assert views.workers_doc(store)[worker.name]["watchdog"]["online"] is False

"""Recording with an in-process worker on a real Redis: what a person will see, and its cost."""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
from celery import Celery

from celery_watchdog import WatchedTask, install
from celery_watchdog.embedded import RedisServer
from celery_watchdog.recording import signals
from celery_watchdog.recording.batch import SAMPLE
from celery_watchdog.runtime import Watchdog
from celery_watchdog.store import Store
from tests.helpers import make_app, run_worker, wait_for


def runtime_of(app: Celery) -> Watchdog:
    wd = install(app)
    assert wd is not None
    return wd


def finished_run(store: Store, task_id: str, state: str = "SUCCESS") -> Any:
    def find() -> Any:
        runs = [r for r in store.runs.finished(500) if r.task_id == task_id and r.state == state]
        return runs[0] if runs else None

    return wait_for(find, timeout=10, what=f"{task_id} recorded as {state}")


def define_tasks(app: Celery) -> dict[str, Any]:
    gate = threading.Event()

    @app.task(name="t.charge", shared=False)
    def charge(account_id: int, card_token: str, password: str = "") -> int:
        return account_id

    @app.task(name="t.fail", shared=False)
    def fail(msg: str) -> None:
        raise ValueError(msg)

    @app.task(name="t.export", shared=False, base=WatchedTask, bind=True, heartbeat_timeout=30)
    def export(self: WatchedTask, rows: int) -> int:
        with self.step("fetch rows", timeout=60):
            self.heartbeat(rows_fetched=rows)
        for i in range(1, rows + 1):
            self.heartbeat(processed=i, total=rows)
            if i == rows // 2:
                gate.wait(10)
        return rows

    @app.task(name="t.flaky", shared=False, bind=True, max_retries=1, default_retry_delay=0)
    def flaky(self: Any) -> str:
        if self.request.retries == 0:
            raise self.retry(exc=RuntimeError("vendor timeout"))
        return "ok"

    @app.task(name="t.wait", shared=False)
    def wait(seconds: float) -> None:
        gate.wait(seconds)

    return {"charge": charge, "fail": fail, "export": export, "flaky": flaky, "wait": wait,
            "gate": gate}  # fmt: skip


def test_a_finished_task_is_recorded_with_state_runtime_worker_and_redacted_args(
    redis_url: str,
) -> None:
    app = make_app(redis_url)
    tasks = define_tasks(app)
    store = runtime_of(app).store()
    with run_worker(app) as worker:
        result = tasks["charge"].delay(42, "tok_live_abc", password="hunter2")
        assert result.get(timeout=10) == 42
        run = finished_run(store, result.id)
    assert run.name == "t.charge"
    assert run.worker == worker.hostname
    assert run.args == "(42, [redacted])"
    assert run.kwargs == "{'password': [redacted]}"
    assert run.deliveries == 1
    assert run.runtime is not None and 0 <= run.runtime < 5
    assert run.started is not None and run.finished is not None
    assert run.started <= run.finished
    assert run.result == "42"


def test_a_running_watched_task_shows_its_step_and_progress(redis_url: str) -> None:
    app = make_app(redis_url)
    tasks = define_tasks(app)
    store = runtime_of(app).store()
    with run_worker(app):
        result = tasks["export"].delay(10)
        running = wait_for(
            lambda: [r for r in store.runs.running() if r.processed == 5], what="progress 5/10"
        )[0]
        assert running.total == 10 and running.watched and running.state == "STARTED"
        assert running.last_heartbeat is not None and running.pid is not None
        assert abs(running.last_heartbeat - store.now()) < 5  # server clock, not ours
        tasks["gate"].set()
        assert result.get(timeout=10) == 10
        done = finished_run(store, result.id)
    assert (done.processed, done.total) == (10, 10)
    assert store.runs.running() == []


def test_a_step_with_its_own_timeout_is_recorded_while_inside_it(redis_url: str) -> None:
    app = make_app(redis_url)

    @app.task(name="t.stepper", shared=False, base=WatchedTask, bind=True)
    def stepper(self: WatchedTask, gate_key: str) -> None:
        client = redis.Redis.from_url(redis_url)
        with self.step("render PDF", timeout=45):
            while not client.get(gate_key):
                time.sleep(0.05)

    store = runtime_of(app).store()
    with run_worker(app):
        result = stepper.delay("gate")
        run = wait_for(lambda: store.runs.running(), what="stepper running")[0]
        assert run.step == "render PDF" and run.step_timeout == 45
        store.r.set("gate", "1")
        result.get(timeout=10)


def test_a_failure_records_exception_traceback_and_the_last_error_of_its_name(
    redis_url: str,
) -> None:
    app = make_app(redis_url)
    tasks = define_tasks(app)
    store = runtime_of(app).store()
    with run_worker(app):
        result = tasks["fail"].delay("negative amount")
        run = finished_run(store, result.id, "FAILURE")
    assert run.exception == "ValueError: negative amount"
    assert run.traceback and "ValueError" in run.traceback
    stats = store.names.stats(["t.fail"], store.now())["t.fail"]
    assert stats.last_hour == {"failed": 1} and stats.last_day == {"failed": 1}
    assert stats.last_error == "ValueError: negative amount" and stats.last_failure


def test_counts_percentiles_and_last_success_per_task_name(redis_url: str) -> None:
    app = make_app(redis_url)
    tasks = define_tasks(app)
    store = runtime_of(app).store()
    with run_worker(app):
        results = [tasks["charge"].delay(i, "tok") for i in range(30)]
        for r in results:
            r.get(timeout=10)
        flaky = tasks["flaky"].delay()
        assert flaky.get(timeout=10) == "ok"
        wait_for(
            lambda: (
                store.names.stats(["t.charge"], store.now())["t.charge"].last_hour.get("succeeded")
                == 30
            ),
            what="30 successes counted",
        )
        wait_for(
            lambda: (
                store.names.stats(["t.flaky"], store.now())["t.flaky"].last_hour
                == {"retried": 1, "succeeded": 1}
            ),
            what="one retry and one success",
        )
    stats = store.names.stats(["t.charge"], store.now())["t.charge"]
    assert sum(stats.runtime_buckets.values()) == 30  # the day's histogram counts every run
    p50, p95, p99 = (stats.percentile(q) for q in (0.5, 0.95, 0.99))
    assert p50 is not None and p95 is not None and p99 is not None
    assert 0 <= p50 <= p95 <= p99 < 5
    assert stats.last_success is not None
    assert NameStatsRate(stats.last_day) == 1.0
    assert set(store.names.recent()) >= {"t.charge", "t.flaky"}


def NameStatsRate(counts: dict[str, int]) -> float | None:
    from celery_watchdog.model.records import NameStats

    return NameStats.success_rate(counts)


def test_the_same_task_id_running_twice_at_once_shows_both_runs(redis_url: str) -> None:
    app = make_app(redis_url)
    tasks = define_tasks(app)
    store = runtime_of(app).store()
    with run_worker(app, concurrency=2):
        tasks["wait"].apply_async((10,), task_id="dup-1")
        tasks["wait"].apply_async((10,), task_id="dup-1")
        of_task = store.runs.of_task
        runs = wait_for(lambda: len(of_task("dup-1")) == 2 and of_task("dup-1"),
                        what="two runs of dup-1")  # fmt: skip
        tasks["gate"].set()
    assert {r.task_id for r in runs} == {"dup-1"}
    assert len({r.run_key for r in runs}) == 2


def test_solo_pool_records_too(redis_url: str) -> None:
    app = make_app(redis_url)
    tasks = define_tasks(app)
    store = runtime_of(app).store()
    with run_worker(app, pool="solo", concurrency=1):
        result = tasks["charge"].delay(1, "tok")
        result.get(timeout=10)
        assert finished_run(store, result.id).state == "SUCCESS"


def test_tasks_keep_completing_while_the_watchdog_redis_is_down_and_records_arrive_after(
    redis_url: str,
) -> None:
    with RedisServer() as watchdog_redis:
        app = make_app(redis_url, watchdog_redis_url=watchdog_redis.url)
        tasks = define_tasks(app)
        wd = runtime_of(app)
        store = wd.store()
        with run_worker(app):
            first = tasks["charge"].delay(1, "tok")
            first.get(timeout=10)
            finished_run(store, first.id)
            watchdog_redis.stop()
            started = time.monotonic()
            results = [tasks["charge"].delay(i, "tok") for i in range(20)]
            assert [r.get(timeout=10) for r in results] == list(range(20))
            assert time.monotonic() - started < 8  # no task waited on the dead store
            wait_for(lambda: wd.recorder.errors > 0, what="the flusher noticing the outage")
            watchdog_redis.restart()
            # Nothing was lost: every run of the outage is counted (the restarted server keeps
            # nothing from before; a busy name's short successes beyond a flush's sample are
            # counted, not each written as a document).
            wait_for(
                lambda: (
                    store.names.stats(["t.charge"], store.now())["t.charge"].last_hour.get(
                        "succeeded"
                    )
                    == 20
                ),
                what="the outage's 20 successes counted after it",
            )
            assert store.runs.of_task(results[0].id), "the outage's first runs are written in full"
    assert wd.recorder.dropped == 0


def test_a_tracer_recorded_run_still_going_at_a_flush_is_written_running_then_closed(
    redis_url: str,
) -> None:
    # What a prefork child's wrapped tracer does (tests/test_prefork.py runs the real one):
    # the run is a tuple until the flusher finds it still going and writes it as running.
    app = make_app(redis_url)
    charge = define_tasks(app)["charge"]
    wd = runtime_of(app)
    recorder, store = wd.recorder, wd.store()
    info = signals._watching_of(charge)
    request = {"hostname": "w1@host", "delivery_info": {"routing_key": "billing"},
               "args": [7, "tok_4242"], "kwargs": {"password": "hunter2"}}  # fmt: skip
    recorder.begin("light-1", request, charge, info)
    assert recorder.flush()
    (run,) = store.runs.of_task("light-1")
    assert run.running and run.queue == "billing" and run.worker == "w1@host"
    assert "hunter2" not in (run.kwargs or "")
    recorder.finish((7, None, None, "7"))
    assert recorder.flush()
    (run,) = store.runs.of_task("light-1")
    assert not run.running and run.state == "SUCCESS" and run.result == "7"
    assert not [r for r in store.runs.running() if r.task_id == "light-1"]


def test_short_successes_past_a_flushs_sample_are_counted_not_written(redis_url: str) -> None:
    app = make_app(redis_url)
    charge = define_tasks(app)["charge"]
    wd = runtime_of(app)
    recorder, store = wd.recorder, wd.store()
    info = signals._watching_of(charge)
    for i in range(30):
        recorder.begin(f"short-{i}", {"args": [i, "tok"], "kwargs": {}}, charge, info)
        recorder.finish((i, None, None, str(i)))
    recorder.begin("short-bad", {"args": [0, "tok"]}, charge, info)
    recorder.finish((None, ValueError("declined"), None, None))
    assert recorder.flush()
    written = {r.task_id for r in store.runs.finished(100) if r.name == "t.charge"}
    assert written == {f"short-{i}" for i in range(SAMPLE)} | {"short-bad"}
    stats = store.names.stats(["t.charge"], store.now())["t.charge"]
    assert stats.last_hour.get("succeeded") == 30 and stats.last_hour.get("failed") == 1
    assert sum(stats.runtime_buckets.values()) == 31  # every run is timed, counted or written


def test_a_malformed_event_is_dropped_alone_and_counted_and_the_rest_are_written(
    redis_url: str,
) -> None:
    # Redis keeps a failed script's earlier writes: retrying the batch would count them twice
    # and fail again on the same event. The bad event is rejected; its neighbours land once.
    wd = runtime_of(make_app(redis_url))
    recorder, store = wd.recorder, wd.store()
    recorder.add({"kind": "redeliv", "id": "good-1", "name": "n", "worker": "w@h"})
    recorder.add(
        {
            "kind": "end",
            "id": "bad-1",
            "name": "n",
            "worker": "w@h",
            "pid": 1,
            "slot": "1",
            "state": "SUCCESS",
        }
    )  # fmt: skip  (no outcome)
    recorder.add({"kind": "redeliv", "id": "good-2", "name": "n", "worker": "w@h"})
    assert recorder.flush() is True
    assert recorder.dropped == 1 and recorder.errors == 0
    assert set(store.runs.find_task_ids("good-", limit=10)) == {"good-1", "good-2"}
    (doc,) = store.runs.of_task("good-1")
    assert doc.deliveries == 2  # applied once, not again by a retry
    assert recorder.flush() is True and recorder.dropped == 1  # nothing left to retry


def test_the_buffer_is_bounded_and_counts_what_it_drops(redis_url: str) -> None:
    with RedisServer() as watchdog_redis:
        app = make_app(redis_url, watchdog_redis_url=watchdog_redis.url, watchdog_buffer_size=10)
        recorder = runtime_of(app).recorder
        watchdog_redis.stop()
        for i in range(100):
            recorder.add({"kind": "redeliv", "id": f"x{i}", "name": "n", "worker": "w@h"})
        assert recorder.flush() is False
        assert recorder.dropped == 90
        watchdog_redis.restart()
        assert recorder.flush() is True
        store = runtime_of(app).store()
        assert len(store.runs.find_task_ids("x", limit=100)) == 10


def test_memory_stays_bounded_every_key_expires_or_is_capped(redis_url: str) -> None:
    # Short flushes: every run is written as a document, so the cap is what bounds them.
    app = make_app(redis_url, watchdog_max_finished=20, watchdog_flush_interval=0.05)
    tasks = define_tasks(app)
    wd = runtime_of(app)
    store = wd.store()
    with run_worker(app):
        results = [tasks["charge"].delay(i, "tok") for i in range(60)]
        for r in results:
            r.get(timeout=10)
        wait_for(
            lambda: (
                store.names.stats(["t.charge"], store.now())["t.charge"].last_hour.get("succeeded")
                == 60
            ),
            what="60 successes counted",
        )
    prefix = wd.settings.key_prefix
    assert store.r.zcard(f"{prefix}:finished") == 20
    assert len(store.runs.find_task_ids("", limit=1000)) == 20
    capped = {f"{prefix}:{name}" for name in ("finished", "running", "names", "workers")}
    for key in store.r.scan_iter(match=f"{prefix}:*"):
        if key not in capped:
            assert store.r.ttl(key) > 0, f"{key} never expires"

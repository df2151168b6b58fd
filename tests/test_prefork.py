"""Recording under a real ``celery worker -P prefork``: kills, time limits, revokes, snapshots."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
from celery import group

from celery_watchdog import install
from celery_watchdog.model.records import Run
from celery_watchdog.store import Store
from tests.helpers import PreforkWorker, wait_for

pytestmark = pytest.mark.timeout(90)


def store_of(worker: PreforkWorker) -> Store:
    wd = install(worker.app)
    assert wd is not None
    return wd.store()


def final(store: Store, task_id: str, state: str, timeout: float = 15) -> Run:
    def find() -> Run | None:
        runs = store.runs.of_task(task_id)
        return runs[0] if runs and runs[0].state == state else None

    return wait_for(find, timeout=timeout, what=f"{task_id} in state {state}")


def running_pid(store: Store, task_id: str) -> int:
    """The child pid running ``task_id``, as the worker's main process reports it."""

    def find() -> int | None:
        for w in store.workers.all():
            for r in w.active:
                if r.task_id == task_id and r.pid:
                    return r.pid
        return None

    return wait_for(find, timeout=15, what=f"{task_id} in a worker snapshot")


def counts(store: Store, name: str) -> dict[str, int]:
    return dict(store.names.stats([name], store.now())[name].last_hour)


@pytest.fixture(scope="module")
def worker(shared_prefork_worker: PreforkWorker) -> PreforkWorker:
    return shared_prefork_worker


def test_a_child_sigkilled_mid_task_is_recorded_lost_once_and_the_worker_goes_on(
    worker: PreforkWorker,
) -> None:
    store = store_of(worker)
    result = worker.task("hang_forever").delay()
    pid = running_pid(store, result.id)
    os.kill(pid, signal.SIGKILL)
    run = final(store, result.id, "FAILURE")
    assert run.outcome == "lost"
    assert run.exception and "WorkerLostError" in run.exception
    assert worker.task("add").delay(2, 3).get(timeout=15) == 5
    time.sleep(1.5)  # let any second report of the same death arrive
    assert counts(store, "tests.workerapp.hang_forever").get("lost") == 1
    assert all(r.task_id != result.id for r in store.runs.running())


def test_a_task_that_kills_its_own_process_is_lost_not_running_forever(
    worker: PreforkWorker,
) -> None:
    store = store_of(worker)
    result = worker.task("crash_child").delay()
    run = final(store, result.id, "FAILURE")
    assert run.outcome == "lost"
    assert all(r.task_id != result.id for r in store.runs.running())


def test_a_hard_time_limit_is_recorded_once(worker: PreforkWorker) -> None:
    store = store_of(worker)
    result = worker.task("hard_limited").delay()
    run = final(store, result.id, "FAILURE")
    assert run.exception and "TimeLimitExceeded" in run.exception
    time.sleep(2)  # Celery fires task_failure twice for a hard limit; both must be flushed
    assert sum(counts(store, "tests.workerapp.hard_limited").values()) == 1


def test_a_revoked_and_terminated_task_is_recorded_revoked(worker: PreforkWorker) -> None:
    store = store_of(worker)
    result = worker.task("hang_forever").delay()
    running_pid(store, result.id)
    worker.app.control.revoke(result.id, terminate=True, signal="SIGTERM")
    run = final(store, result.id, "REVOKED")
    assert run.exception and "terminated" in run.exception
    assert counts(store, "tests.workerapp.hang_forever").get("revoked") == 1


def test_a_watched_task_in_a_prefork_child_reports_progress(worker: PreforkWorker) -> None:
    store = store_of(worker)
    result = worker.task("progress").delay(40, 0.1)
    run = wait_for(
        lambda: [
            r for r in store.runs.running() if r.task_id == result.id and (r.processed or 0) > 3
        ],
        what="progress reported from the child",
    )[0]
    assert run.step == "work" and run.total == 40 and run.watched
    assert run.pid in worker.pids()
    assert result.get(timeout=20) == 40


def test_a_prefork_child_records_runs_from_its_tracers_without_signal_dispatch(
    worker: PreforkWorker,
) -> None:
    # Celery dispatches task_prerun/postrun only while a receiver is connected: a child
    # records from each task's wrapped tracer instead, and its message fields all the same.
    result = worker.task("how_recorded").apply_async(kwargs={"queue_note": "x"})
    assert result.get(timeout=15) == {"wrapped": True, "receiver": False}
    run = final(store_of(worker), result.id, "SUCCESS")
    assert run.queue == "celery" and run.kwargs == "{'queue_note': 'x'}" and run.worker
    assert run.result is not None and "wrapped" in run.result


def test_a_burst_of_short_tasks_in_prefork_children_is_counted_exactly_and_sampled(
    worker: PreforkWorker,
) -> None:
    # A short success nobody looked at costs the child a tuple and a count, not a document:
    # all 400 are counted, a sample per flush is written in full, none is left "running".
    store = store_of(worker)
    add, fail = worker.task("add"), worker.task("fail")
    before = counts(store, add.name).get("succeeded", 0)
    results = group(add.s(i, i) for i in range(400)).apply_async()
    failed = fail.delay("bad input 7")
    assert results.get(timeout=60) == [2 * i for i in range(400)]
    wait_for(
        lambda: counts(store, add.name).get("succeeded", 0) - before == 400 or None,
        what="all 400 successes counted",
    )
    written = [r for r in store.runs.finished(1000) if r.name == add.name]
    assert 0 < len(written) < 400
    assert all(r.worker and r.runtime is not None for r in written)
    assert not [r for r in store.runs.running() if r.name == add.name]
    stats = store.names.stats([add.name], store.now())[add.name]
    assert sum(stats.runtime_buckets.values()) >= 50 and stats.last_success is not None
    # A failure in a child still gets its handle and its exception.
    assert "bad input 7" in (final(store, failed.id, "FAILURE").exception or "")


def test_the_worker_snapshot_lists_active_requests_with_child_pid_and_cpu(
    worker: PreforkWorker,
) -> None:
    store = store_of(worker)
    hang = worker.task("hang_forever").delay()
    pid = running_pid(store, hang.id)
    info = next(w for w in store.workers.all() if w.hostname == worker.name)
    assert info.online and info.pool == "prefork" and info.concurrency == 2
    assert set(info.processes) == set(worker.pids())
    active = next(r for r in info.active if r.task_id == hang.id)
    assert active.pid == pid and active.cpu is not None and active.started is not None
    worker.app.control.revoke(hang.id, terminate=True, signal="SIGKILL")
    final(store, hang.id, "REVOKED")


def test_with_reject_on_worker_lost_a_killed_child_is_lost_then_redelivered(
    start_prefork_worker: Callable[..., PreforkWorker],
) -> None:
    # acks_late + task_reject_on_worker_lost: Celery fires no signal at all for the dead child
    # and redelivers at once; only the main-process reporter can tell what happened.
    worker = start_prefork_worker(
        conf={
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "watchdog_snapshot_interval": 0.5,
        }
    )
    store = store_of(worker)
    result = worker.task("sleep").delay(2)
    pid = running_pid(store, result.id)
    os.kill(pid, signal.SIGKILL)
    assert result.get(timeout=20) == 2  # redelivered to a fresh child
    run = final(store, result.id, "SUCCESS")
    assert run.deliveries == 2
    wait_for(lambda: counts(store, "tests.workerapp.sleep").get("lost") == 1, what="1 lost")
    assert counts(store, "tests.workerapp.sleep").get("succeeded") == 1


def test_a_stopped_worker_is_reported_offline(
    start_prefork_worker: Callable[..., PreforkWorker],
) -> None:
    worker = start_prefork_worker(conf={"watchdog_snapshot_interval": 0.5})
    store = store_of(worker)
    wait_for(lambda: any(w.online for w in store.workers.all()), what="worker online")
    worker.stop()
    info: Any = next(w for w in store.workers.all() if w.hostname == worker.name)
    assert not info.online


@pytest.mark.parametrize(
    ("conf", "named"),
    [
        ({"watchdog_heartbeat_timeout": -1}, "watchdog_heartbeat_timeout"),
        ({"watchdog_on_stuck": "explode"}, "watchdog_on_stuck"),
        ({"watchdog_task_policies": {"tests.*": {"owner": 5}}}, "watchdog_task_policies"),
    ],
)
def test_a_bad_setting_stops_worker_start_up_naming_the_setting(
    redis_url: str, conf: dict[str, Any], named: str
) -> None:
    worker = PreforkWorker(redis_url, conf=conf)
    with pytest.raises(RuntimeError) as err:
        worker.start(timeout=20)
    assert named in str(err.value)


def test_a_visibility_timeout_redelivery_while_running_shows_both_runs(redis_url: str) -> None:
    # celery#5935: with acks_late on Redis, an unacked message past visibility_timeout is
    # restored (here by a second worker starting) and runs again while the first run goes on.
    conf = {
        "task_acks_late": True,
        "broker_transport_options": {"visibility_timeout": 2},
        "worker_prefetch_multiplier": 1,
    }
    with PreforkWorker(redis_url, conf=conf) as first:
        store = store_of(first)
        result = first.task("sleep").delay(20)
        running_pid(store, result.id)
        time.sleep(2.5)
        second = PreforkWorker(redis_url, prefix=first.prefix, conf=conf)
        second.name = f"second-{first.name}"
        with second:
            of_task = store.runs.of_task
            runs = wait_for(lambda: len(of_task(result.id)) == 2 and of_task(result.id),
                            timeout=20, what="two runs of one task id")  # fmt: skip
            assert len({r.run_key for r in runs}) == 2  # whichever worker took the copy
            from celery_watchdog.model.rules import health

            wd = install(first.app)
            assert wd is not None
            verdicts = {health(r, wd.policy(r.name), store.now(), copies=2).health for r in runs}
            assert verdicts == {"duplicate"}
            from celery_watchdog.monitor.check import run_pass

            findings = [f for _ in range(3) for f in run_pass(wd, store).findings]
            duplicates = [f for f in findings if f.kind == "duplicate"]
            assert len(duplicates) == 1 and duplicates[0].action == "none"
            first.app.control.revoke(result.id, terminate=True, signal="SIGKILL")

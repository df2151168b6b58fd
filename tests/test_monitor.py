"""The monitor against real prefork workers: verdicts, actions exactly once, where it waits."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from celery_watchdog import install
from celery_watchdog.embedded import RedisServer
from celery_watchdog.model.records import Finding
from celery_watchdog.model.rules import grace_after_outage
from celery_watchdog.monitor.check import PassReport, run_pass
from celery_watchdog.runtime import Watchdog
from celery_watchdog.store import Store
from tests.helpers import PreforkWorker, wait_for

pytestmark = pytest.mark.timeout(120)
CONF = {
    "watchdog_snapshot_interval": 0.5,
    "watchdog_terminate_grace": 1.0,
    # Stacks are taken at half the 2 s heartbeat_timeout and written at the next flush.
    "watchdog_flush_interval": 0.3,
}


class SilentServer:
    """A TCP server that accepts connections and never answers (a vendor API gone quiet)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture(scope="module")
def worker() -> Iterator[PreforkWorker]:
    with RedisServer() as server, PreforkWorker(server.url, conf=CONF) as w:
        yield w


def runtime(worker: PreforkWorker) -> tuple[Watchdog, Store]:
    wd = install(worker.app)
    assert wd is not None
    return wd, wd.store()


def finding_for(
    wd: Watchdog, store: Store, task_id: str, kind: str, timeout: float = 25
) -> Finding:
    """Run passes (as beat would) until one reports ``kind`` for ``task_id``."""
    seen: list[Finding] = []

    def one_pass() -> Finding | None:
        report: PassReport = run_pass(wd, store)
        seen.extend(report.findings)
        return next((f for f in seen if f.run.task_id == task_id and f.kind == kind), None)

    return wait_for(one_pass, timeout=timeout, interval=0.3, what=f"{kind} finding for {task_id}")


def ended(store: Store, task_id: str, state: str, timeout: float = 15) -> Any:
    return wait_for(
        lambda: next((r for r in store.runs.of_task(task_id) if r.state == state), None),
        timeout=timeout, what=f"{task_id} {state}",
    )  # fmt: skip


def test_a_task_blocked_on_a_silent_server_is_stuck_stopped_dead_lettered_and_diagnosed(
    worker: PreforkWorker,
) -> None:
    wd, store = runtime(worker)
    server = SilentServer()
    try:
        result = worker.task("vendor_read").delay(server.port, account_id=42)
        found = finding_for(wd, store, result.id, "stuck")
    finally:
        server.close()
    assert "no heartbeat" in found.reason
    assert found.action == "dead_lettered" and "not idempotent" in found.detail
    assert found.diagnosis and "network read" in found.diagnosis
    assert "tests/workerapp.py" in found.diagnosis and "CPU idle" in found.diagnosis
    entry = store.dlq.get(result.id)
    assert entry and entry["verdict"] == "stuck" and entry["message"]["body"]
    ended(store, result.id, "REVOKED")
    assert worker.task("add").delay(1, 1).get(timeout=15) == 2  # the worker serves the next


def test_an_infinite_loop_without_heartbeats_is_stuck_and_busy(worker: PreforkWorker) -> None:
    wd, store = runtime(worker)
    result = worker.task("spin").delay()
    found = finding_for(wd, store, result.id, "stuck")
    assert found.diagnosis and "busy in a loop" in found.diagnosis, found.diagnosis
    ended(store, result.id, "REVOKED")


def test_heartbeats_without_progress_are_a_progress_stall(worker: PreforkWorker) -> None:
    wd, store = runtime(worker)
    result = worker.task("stall").delay()
    found = finding_for(wd, store, result.id, "stuck")
    assert "progress has not moved" in found.reason
    assert (found.run.processed, found.run.total) == (1, 10)
    ended(store, result.id, "REVOKED")


def test_a_catastrophic_regex_is_stuck_not_lost_and_killed_after_the_grace(
    worker: PreforkWorker,
) -> None:
    wd, store = runtime(worker)
    result = worker.task("regex").delay()
    found = finding_for(wd, store, result.id, "stuck", timeout=30)
    # No stack can be taken while C code holds the GIL; the CPU % depends on how loaded the
    # machine is, so only the shape of the line is checked here.
    assert found.diagnosis and "CPU" in found.diagnosis, found.diagnosis
    assert "stack" in found.diagnosis or "busy" in found.diagnosis, found.diagnosis

    # The child holds the GIL: SIGTERM's handler never runs; a later pass sends SIGKILL.
    def gone() -> bool:
        run_pass(wd, store)
        return not [r for r in store.runs.running() if r.task_id == result.id]

    wait_for(gone, timeout=30, interval=0.5, what="the regex run to end")
    assert store.runs.of_task(result.id)[0].state in ("REVOKED", "FAILURE")


def test_a_killed_child_of_an_idempotent_task_is_lost_and_requeued(worker: PreforkWorker) -> None:
    wd, store = runtime(worker)
    key = f"crash-once-{time.monotonic()}"
    result = worker.task("crash_once").delay(key)
    found = finding_for(wd, store, result.id, "lost")
    # Its run may end before the worker saves its message: then it cannot be requeued.
    if found.action == "requeued":
        assert found.new_task_id
        assert worker.app.AsyncResult(found.new_task_id).get(timeout=15) == "second time lucky"
    else:
        assert found.action == "dead_lettered"


def test_a_killed_child_of_a_plain_task_is_lost_and_dead_lettered(worker: PreforkWorker) -> None:
    wd, store = runtime(worker)
    result = worker.task("hang_forever").delay()
    pid = wait_for(
        lambda: next(
            (
                a.pid
                for w in store.workers.all()
                for a in w.active
                if a.task_id == result.id and a.pid
            ),
            None,
        ),
        what="its child",
    )
    time.sleep(1.2)  # one snapshot later its message is kept
    os.kill(pid, signal.SIGKILL)
    found = finding_for(wd, store, result.id, "lost")
    assert found.action == "dead_lettered"
    assert store.dlq.get(result.id)["verdict"] == "lost"  # type: ignore[index]
    # Settled exactly once, however many passes follow.
    assert not [f for _ in range(3) for f in run_pass(wd, store).findings
                if f.run.task_id == result.id]  # fmt: skip


def test_a_whole_worker_killed_is_lost_within_snapshot_ttl_and_one_interval(redis_url: str) -> None:
    with PreforkWorker(redis_url, conf=CONF) as w:
        wd, store = runtime(w)
        result = w.task("hang_forever").delay()
        wait_for(lambda: store.runs.running(), what="the run recorded")
        os.killpg(w.main_pid, signal.SIGKILL)
        killed = time.monotonic()
        found = finding_for(wd, store, result.id, "lost", timeout=20)
        # Every worker silent could be a frozen Redis: the monitor first waits until silence
        # is unusual (1.5 snapshot intervals + 1 s), then gives workers a grace to report.
        interval = CONF["watchdog_snapshot_interval"]
        grace = grace_after_outage(interval, CONF["watchdog_flush_interval"])
        assert time.monotonic() - killed <= 1.5 * interval + 1 + grace + 1.0 + 1.0
        assert "stopped reporting" in found.reason
        w.stop(check=False)


def test_no_pass_for_three_intervals_is_reported_as_blind_by_check_worker_and_status(
    worker: PreforkWorker,
) -> None:
    from celery_watchdog.views import status as statusdoc

    wd, store = runtime(worker)
    run_pass(wd, store)
    interval = wd.settings.check_interval
    key = f"{wd.settings.key_prefix}:monitor"

    def stale() -> None:  # what beat being down (or every slot stuck) leaves behind
        store.r.hset(key, "at", store.now() - 3.5 * interval)

    stale()
    assert blind_reason(run_pass(wd, store))
    stale()
    info = wait_for(
        lambda: next((w for w in store.workers.all()
                      if "no monitor pass for" in (w.watchdog.get("blind") or "")), None),
        what="the worker's snapshot to say blind",
    )  # fmt: skip
    assert info.online
    assert "no monitor pass for" in statusdoc.status_doc(store, wd)["watchdog"]["blind"]


def blind_reason(report: PassReport) -> str:
    assert report.blind and "no monitor pass for" in report.blind
    return report.blind

"""Resume, not restart: ``heartbeat(cursor=...)`` reaches the next attempt as ``resume_from``
through a Celery retry, a requeue by the monitor and a dead-letter replay (real Redis, a real
in-process worker, the real monitor pass)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from celery import Celery

from celery_watchdog import WatchedTask, dlq, install
from celery_watchdog.monitor.check import run_pass
from celery_watchdog.runtime import Watchdog
from tests.helpers import make_app, run_worker, wait_for

pytestmark = pytest.mark.timeout(120)
FAST = {"watchdog_flush_interval": 0.1, "watchdog_snapshot_interval": 0.3}


def runtime_of(app: Celery) -> Watchdog:
    wd = install(app)
    assert wd is not None
    return wd


def define(app: Celery, seen: list[Any], release: threading.Event) -> dict[str, Any]:
    @app.task(name="r.export", shared=False, base=WatchedTask, bind=True, max_retries=1,
              default_retry_delay=0)  # fmt: skip
    def export(self: WatchedTask, rows: int) -> Any:
        start = self.resume_from
        seen.append(start)
        begin = 0 if start is None else start["row"]
        for row in range(begin, rows):
            self.heartbeat(processed=row, total=rows, cursor={"row": row})
            if row == 12 and start is None:
                raise self.retry(exc=ConnectionError("vendor went away at row 12"))
        return {"from": begin}

    @app.task(name="r.stuck_export", shared=False, base=WatchedTask, bind=True,
              heartbeat_timeout=1, idempotent=True)  # fmt: skip
    def stuck_export(self: WatchedTask) -> Any:
        start = self.resume_from
        seen.append(start)
        if start is not None:
            return {"resumed": start}
        self.heartbeat(processed=1, total=100, cursor={"row": 12430, "file": "a.csv"})
        while not release.is_set():  # stalls (heartbeats, no progress) until cancelled
            self.heartbeat(processed=1, total=100)
            time.sleep(0.05)
        return None

    @app.task(name="r.stuck_charge", shared=False, base=WatchedTask, bind=True,
              heartbeat_timeout=1)  # fmt: skip
    def stuck_charge(self: WatchedTask) -> Any:
        start = self.resume_from
        seen.append(start)
        if start is not None:
            return {"resumed": start}
        self.heartbeat(processed=3, total=10, cursor=[3, "invoice-77"])
        while not release.is_set():
            self.heartbeat(processed=3, total=10)
            time.sleep(0.05)
        return None

    return {"export": export, "stuck_export": stuck_export, "stuck_charge": stuck_charge}


def stalled(wd: Watchdog, task: Any) -> Any:
    """Send ``task``, let it stall past its heartbeat_timeout, and judge it: the finding."""
    store = wd.store()
    first = task.delay()
    wait_for(lambda: store.messages.get(first.id), timeout=30, what="its saved message")
    time.sleep(1.5)  # past its heartbeat_timeout without progress
    findings = wait_for(
        lambda: [f for f in run_pass(wd, store).findings if f.kind == "stuck"],
        timeout=20, what="a stuck verdict",
    )  # fmt: skip
    return findings[0]


def test_a_retry_continues_from_the_cursor_of_the_attempt_before(redis_url: str) -> None:
    app = make_app(redis_url, **FAST)
    seen: list[Any] = []
    tasks = define(app, seen, threading.Event())
    runtime_of(app)
    with run_worker(app):
        assert tasks["export"].delay(20).get(timeout=30) == {"from": 12}
    assert seen == [None, {"row": 12}]


def test_a_requeued_run_starts_from_its_cursor(redis_url: str) -> None:
    app = make_app(redis_url, **FAST)
    seen: list[Any] = []
    release = threading.Event()
    tasks = define(app, seen, release)
    wd = runtime_of(app)
    with run_worker(app, concurrency=3):
        try:
            finding = stalled(wd, tasks["stuck_export"])
            assert finding.action == "requeued" and finding.new_task_id
            new = app.AsyncResult(finding.new_task_id)
            assert new.get(timeout=30) == {"resumed": {"row": 12430, "file": "a.csv"}}
        finally:
            release.set()
    assert seen[0] is None and seen[-1] == {"row": 12430, "file": "a.csv"}


def test_a_dead_letter_replay_starts_from_its_cursor(redis_url: str) -> None:
    app = make_app(redis_url, **FAST)
    seen: list[Any] = []
    release = threading.Event()
    tasks = define(app, seen, release)
    wd = runtime_of(app)
    store = wd.store()
    with run_worker(app, concurrency=3):
        try:
            finding = stalled(wd, tasks["stuck_charge"])
            assert finding.action == "dead_lettered"
            task_id = finding.run.task_id
            entry = dlq.get(store, task_id)
            assert entry is not None and entry.cursor == '[3,"invoice-77"]'
            [result] = dlq.replay(app, store, [task_id], now=store.now())
            assert result.outcome == "replayed" and result.new_task_id
            replayed = app.AsyncResult(result.new_task_id)
            assert replayed.get(timeout=30) == {"resumed": [3, "invoice-77"]}
        finally:
            release.set()

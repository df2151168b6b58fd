"""`celery watchdog check` / `monitor` as a person or a cron job runs them, and the
cooperative stop that works on every pool."""

from __future__ import annotations

import json
import threading
import time

import pytest
from celery import Celery

from celery_watchdog import TaskCancelled, WatchedTask, install
from celery_watchdog.monitor.check import run_pass
from tests.helpers import make_app, run_worker, unique_prefix, wait_for
from tests.test_cli import celery

pytestmark = pytest.mark.timeout(90)


def test_check_exits_0_when_healthy_and_reports_the_pass_as_json(redis_url: str) -> None:
    prefix = unique_prefix()
    first = celery("check", redis_url=redis_url, prefix=prefix)
    assert first.returncode == 1 and "ever completed" in first.stdout  # nobody watched before
    second = celery("check", "--json", redis_url=redis_url, prefix=prefix)
    assert second.returncode == 0, second.stdout + second.stderr
    report = json.loads(second.stdout)
    assert report["findings"] == [] and report["blind"] is None and report["due"] == 0


def test_check_exits_1_with_a_finding_and_names_it(redis_url: str) -> None:
    prefix = unique_prefix()
    app = make_app(redis_url, watchdog_key_prefix=prefix, watchdog_snapshot_interval=0.2,
                   watchdog_on_stuck="alert")  # fmt: skip

    done = threading.Event()

    # Same name and options as tests.workerapp's stall, which the CLI process loads.
    @app.task(name="tests.workerapp.stall", shared=False, base=WatchedTask, bind=True,
              heartbeat_timeout=2)  # fmt: skip
    def stall(self: WatchedTask) -> None:
        while not done.is_set():
            self.heartbeat(processed=1, total=10)
            time.sleep(0.05)

    store = install(app).store()  # type: ignore[union-attr]
    with run_worker(app):
        stall.delay()
        wait_for(lambda: store.runs.running(), what="the run recorded")
        alert = {"watchdog_on_stuck": "alert"}
        # A first pass (not blind after it). On a loaded machine it may start late enough to
        # find the stall itself, and a finding is reported once: then it is the one to read.
        out = celery("check", redis_url=redis_url, prefix=prefix, conf=alert)
        if "STUCK" not in out.stdout:
            time.sleep(2.5)
        for _ in range(4):  # a loaded machine may need another pass or two
            if "STUCK" in out.stdout:
                break
            out = celery("check", redis_url=redis_url, prefix=prefix, conf=alert)
            time.sleep(0 if "STUCK" in out.stdout else 1)
        done.set()
    assert out.returncode == 1, out.stdout + out.stderr
    assert "STUCK" in out.stdout and "tests.workerapp.stall" in out.stdout
    assert "progress has not moved" in out.stdout and "action: none" in out.stdout


def test_check_exits_2_when_redis_is_unreachable() -> None:
    out = celery("check", redis_url="redis://127.0.0.1:1/0")
    assert out.returncode == 2 and "cannot reach Redis" in out.stderr
    assert "Traceback" not in out.stderr


def test_monitor_runs_the_given_number_of_passes(redis_url: str) -> None:
    prefix = unique_prefix()
    out = celery("monitor", "--interval", "0.2", "--passes", "3", redis_url=redis_url,
                 prefix=prefix)  # fmt: skip
    assert out.returncode == 0, out.stderr
    import redis as redis_py

    client = redis_py.Redis.from_url(redis_url, decode_responses=True)
    assert client.hget(f"{prefix}:monitor", "at")


def test_a_stuck_run_on_a_threads_pool_is_stopped_by_the_cooperative_cancel(
    redis_url: str,
) -> None:
    # revoke(terminate=True) cannot stop a thread; the cancel flag makes heartbeat() raise.
    app: Celery = make_app(redis_url, watchdog_snapshot_interval=0.2, watchdog_flush_interval=0.1)
    stopped: list[str] = []

    @app.task(name="t.looping", shared=False, base=WatchedTask, bind=True, heartbeat_timeout=1)
    def looping(self: WatchedTask) -> None:
        try:
            for _ in range(600):
                self.heartbeat(processed=7)  # alive, but never moving on
                time.sleep(0.05)
        except TaskCancelled:
            stopped.append(self.request.id)
            raise

    wd = install(app)
    assert wd is not None
    store = wd.store()
    with run_worker(app, pool="threads"):
        result = looping.delay()
        wait_for(lambda: store.runs.running(), what="the run recorded")
        run_pass(wd, store)
        wait_for(lambda: [f for f in run_pass(wd, store).findings if f.kind == "stuck"] or
                 stopped, timeout=10, interval=0.3, what="a stuck verdict")  # fmt: skip
        wait_for(lambda: stopped, timeout=10, what="TaskCancelled raised in the task")
        with pytest.raises(TaskCancelled):
            result.get(timeout=10)
    assert stopped == [result.id]

"""Missed beat runs with a real ``celery beat`` and a real worker: a dead-man's switch per entry.

Beat sends ``s.tick`` every second; the worker runs it. With beat stopped, the entry is not sent
in time and the monitor raises one ``missed_run`` (P1) naming the entry; started again, the
entry runs on time and the incident resolves.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

from celery_watchdog import install
from celery_watchdog.monitor.check import run_pass
from celery_watchdog.monitor.schedules import read
from celery_watchdog.testing import capture_alerts
from tests.helpers import REPO_ROOT, PreforkWorker, stop_process_group, unique_prefix, wait_for

pytestmark = pytest.mark.timeout(150)
CONF = {
    "beat_schedule": {"tick-every-second": {"task": "tests.workerapp.noop", "schedule": 1.0}},
    "watchdog_beat_grace": 2,
    "watchdog_snapshot_interval": 0.5,
    "watchdog_flush_interval": 0.2,
}


def start_beat(worker: PreforkWorker) -> subprocess.Popen[bytes]:
    schedule = os.path.join(tempfile.mkdtemp(prefix="wd-beat-"), "schedule")
    log = open(os.path.join(os.path.dirname(schedule), "beat.log"), "ab")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.workerapp", "beat", "-l", "INFO",
         "-s", schedule],
        cwd=REPO_ROOT, env=worker.env(), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def tick(wd: Any, store: Any) -> dict[str, Any]:
    docs = read(wd, store, store.now())
    return next(d for d in docs if d["entry"] == "tick-every-second")


@pytest.fixture
def worker(redis_url: str) -> Iterator[PreforkWorker]:
    with PreforkWorker(redis_url, prefix=unique_prefix("wdbeat"), conf=CONF) as w:
        yield w


def test_a_beat_entry_not_sent_in_time_is_a_missed_run_resolved_when_runs_resume(
    worker: PreforkWorker,
) -> None:
    wd = install(worker.app)
    assert wd is not None
    store = wd.store()
    beat = start_beat(worker)
    try:
        doc = wait_for(lambda: (d := tick(wd, store)) and d["last_succeeded"] and d,
                       timeout=40, what="a tick sent by beat and run")  # fmt: skip
        assert doc["health"] in ("ok", "late")
    finally:
        stop_process_group(beat)
    time.sleep(4.0)  # the next due time, and the grace, pass with beat down
    with capture_alerts() as alerts:
        run_pass(wd, store)
        run_pass(wd, store)
    page = alerts.assert_sent(kind="missed_run")
    assert "tick-every-second" in page.summary and "not sent" in page.summary
    assert page.severity == "P1"
    beat = start_beat(worker)
    try:
        wait_for(lambda: tick(wd, store)["health"] == "ok", timeout=40,
                 what="the entry on time again")  # fmt: skip
        with capture_alerts() as after:
            run_pass(wd, store)
        after.assert_sent(kind="missed_run", notice="resolved")
    finally:
        stop_process_group(beat)


def test_a_task_with_max_silence_that_stops_succeeding_is_a_missed_run(redis_url: str) -> None:
    from tests.helpers import make_app, run_worker

    app = make_app(redis_url, watchdog_flush_interval=0.1)

    @app.task(name="s.sync", shared=False, max_silence=2)
    def sync() -> str:
        return "synced"

    wd = install(app)
    assert wd is not None
    store = wd.store()
    with run_worker(app):
        sync.delay().get(timeout=20)
        time.sleep(3.0)  # no success for longer than max_silence
        with capture_alerts() as alerts:
            run_pass(wd, store)
        page = alerts.assert_sent(kind="missed_run", task_name="s.sync")
        assert "s.sync has not succeeded for" in page.summary and "(max_silence 2" in page.summary
        sync.delay().get(timeout=20)
        wait_for(lambda: (store.names.stats(["s.sync"], store.now())["s.sync"].last_success or 0)
                 > store.now() - 2, what="the new success recorded")  # fmt: skip
        with capture_alerts() as after:
            run_pass(wd, store)
        after.assert_sent(kind="missed_run", notice="resolved")


def test_schedules_lists_each_beat_entry_with_its_health(redis_url: str) -> None:
    import json

    from tests.test_cli import celery

    prefix = unique_prefix("wdsched")
    out = celery("schedules", "--json", redis_url=redis_url, prefix=prefix, conf=CONF)
    assert out.returncode == 0, out.stderr
    entries = {d["entry"]: d for d in json.loads(out.stdout)["schedules"]}
    tick = entries["tick-every-second"]
    assert tick["task"] == "tests.workerapp.noop" and tick["health"] in ("ok", "missed", "late")
    text = celery("schedules", redis_url=redis_url, prefix=prefix, conf=CONF).stdout
    assert "tick-every-second" in text and "tests.workerapp.noop" in text

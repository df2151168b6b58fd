"""The watchdog on a bad day: Redis frozen, hostile values, a worker killed, a skewed clock.

Each test runs real prefork workers against a real Redis and asserts that the watchdog neither
harms healthy work nor lies about it: no false lost/stuck verdict, no record that blocks a
batch, a pass or a command, a requeue that really runs, checks that run whatever the clocks.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from celery_watchdog import install
from celery_watchdog.cli import render
from celery_watchdog.embedded import RedisServer
from celery_watchdog.model.records import Finding
from celery_watchdog.monitor.check import PassReport, run_pass
from celery_watchdog.runtime import Watchdog
from celery_watchdog.store import Store
from celery_watchdog.views import documents as views
from celery_watchdog.views import status as statusdoc
from tests.helpers import REPO_ROOT, PreforkWorker, stop_process_group, wait_for
from tests.test_cli import celery
from tests.test_monitor import finding_for

pytestmark = pytest.mark.timeout(180)
FAST = {
    "watchdog_snapshot_interval": 0.5,
    "watchdog_flush_interval": 0.3,
    "watchdog_terminate_grace": 1.0,
}
SECRETS = ("hunter2pw", "sk_live_abcdefghijklmnopqrstuvwx", "abcdefghijklmnop0123456789")
DSN = "postgres://admin:hunter2pw@db.internal:5432/prod"


def runtime(worker: PreforkWorker) -> tuple[Watchdog, Store]:
    wd = install(worker.app)
    assert wd is not None
    return wd, wd.store()


class Passes:
    """Monitor passes in a background thread, as beat would run them; errors are kept."""

    def __init__(self, wd: Watchdog, every: float = 0.3) -> None:
        self.wd, self.every = wd, every
        self.reports: list[PassReport] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        store = self.wd.store()
        while not self._stop.is_set():
            try:
                self.reports.append(run_pass(self.wd, store))
            except Exception as exc:  # Redis frozen: the pass fails, the next one tries again
                self.errors.append(exc)
            self._stop.wait(self.every)

    def findings(self) -> list[Finding]:
        return [f for r in list(self.reports) for f in r.findings]

    def __enter__(self) -> Passes:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.fixture(scope="module")
def worker() -> Iterator[PreforkWorker]:
    with RedisServer() as server, PreforkWorker(server.url, concurrency=3, conf=FAST) as w:
        yield w


# -- absence of evidence is not death ---------------------------------------------------------


def test_a_20_second_redis_freeze_judges_no_heartbeating_run_lost_or_stuck(redis_url: str) -> None:
    conf = {**FAST, "watchdog_snapshot_interval": 1.0}
    server_pid = _server_pid(redis_url)
    with PreforkWorker(redis_url, conf=conf) as w:
        wd, store = runtime(w)
        results = [w.task("beat_for").delay(32) for _ in range(2)]
        ids = {r.id for r in results}
        wait_for(lambda: len(store.runs.running()) == 2, what="both runs recorded")
        with Passes(wd) as passes:
            time.sleep(2)
            os.kill(server_pid, signal.SIGSTOP)
            try:
                time.sleep(20)
            finally:
                os.kill(server_pid, signal.SIGCONT)
            assert [r.get(timeout=60) for r in results] == [160, 160]
            time.sleep(1)
        bad = [f for f in passes.findings() if f.run.task_id in ids]
        assert not bad, [(f.kind, f.reason, f.action) for f in bad]
        assert store.dlq.count() == 0
        assert any(r.doubt for r in passes.reports), "no pass waited for the workers to report"
        assert passes.errors, "the passes never noticed the freeze"
        doc = views.tasks_doc(store, wd)
        assert {doc[i]["state"] for i in ids} == {"SUCCESS"}
        assert {doc[i]["watchdog"]["health"] for i in ids} == {"ok"}
        status = statusdoc.status_doc(store, wd)
        assert status["tasks"]["tests.workerapp.beat_for"]["success_rate_1h"] == 1.0
        # The watchdog says what it went through: its own errors, per worker and kind.
        errors = wait_for(
            lambda: views.workers_doc(store)[w.name]["watchdog"]["errors"], timeout=15,
            what="the worker's own errors reported",
        )  # fmt: skip
        assert {"flush", "snapshot"} & set(errors), errors
        assert all(e["count_1h"] >= 1 and e["last"] for e in errors.values())
        assert statusdoc.status_doc(store, wd)["watchdog"]["errors"]
        now = store.now()
        status_now = statusdoc.status_doc(store, wd, now=now)
        for text in (render.workers_text(views.workers_doc(store, now=now), now),
                     render.status_text(status_now, now)):  # fmt: skip
            assert f"on {w.name}, last: " in text and "WATCHDOG ERRORS: " in text, text


def test_a_full_redis_makes_no_running_run_look_lost_or_stuck_and_check_says_so(
    redis_url: str,
) -> None:
    with PreforkWorker(redis_url, conf=FAST) as w:
        wd, store = runtime(w)
        result = w.task("beat_for").delay(14)
        wait_for(lambda: store.runs.running(), what="the run recorded")
        store.r.config_set("maxmemory-policy", "noeviction")
        store.r.config_set("maxmemory", "1")  # every write refused: OOM
        try:
            time.sleep(6)  # past the snapshot's lifetime and the 3 s heartbeat_timeout
            doc = views.tasks_doc(store, wd)
            assert doc[result.id]["watchdog"]["health"] == "ok", doc[result.id]["watchdog"]
            status = statusdoc.status_doc(store, wd)
            assert status["watchdog"]["doubt"]
            out = celery("check", redis_url=w.redis_url, prefix=w.prefix, conf=FAST)
            assert out.returncode == 2 and "out of memory" in out.stderr, out.stderr
            assert "Traceback" not in out.stderr
        finally:
            store.r.config_set("maxmemory", "0")
        assert result.get(timeout=30) == 70
        assert not [f for _ in range(3) for f in run_pass(wd, store).findings
                    if f.run.task_id == result.id]  # fmt: skip


def test_an_unreachable_watchdog_redis_is_reported_once_at_start_up_and_tasks_still_run(
    redis_url: str,
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"
    with PreforkWorker(redis_url, conf={**FAST, "watchdog_redis_url": dead}) as w:
        assert w.task("add").delay(2, 3).get(timeout=30) == 5
        line = wait_for(
            lambda: [x for x in w.log_text().splitlines() if "cannot use its Redis" in x],
            timeout=20, what="the start-up error",
        )  # fmt: skip
        assert len(line) == 1 and "127.0.0.1" in line[0]
        assert "unreachable" in line[0] or "cannot reach" in line[0] or "refused" in line[0]
        assert w.task("add").delay(3, 4).get(timeout=30) == 7


def _server_pid(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


# -- poison in, poison contained --------------------------------------------------------------


def test_surrogates_and_escapes_in_an_error_and_a_step_leave_the_runs_beside_them_ok(
    worker: PreforkWorker,
) -> None:
    wd, store = runtime(worker)
    healthy = worker.task("beat_for").delay(4)
    failing = worker.task("hostile_text").delay(DSN, 0.2)
    odd = worker.task("str_raises").delay()
    with Passes(wd) as passes:
        assert healthy.get(timeout=30) == 20
        with pytest.raises(ValueError):
            failing.get(timeout=30)
        with pytest.raises(Exception):  # noqa: B017 - its __str__ raises; the type is Odd
            odd.get(timeout=30)
    assert not [f for f in passes.findings() if f.run.task_id == healthy.id]
    assert not passes.errors
    failed = wait_for(lambda: _ended(store, failing.id, "FAILURE"), what="the failure recorded")
    assert "\\udce9" in (failed.exception or "") and "ValueError" in (failed.exception or "")
    assert "hunter2pw" not in (failed.exception or "") + (failed.traceback or "")
    odd_run = wait_for(lambda: _ended(store, odd.id, "FAILURE"), what="the odd failure")
    assert odd_run.exception and "Odd" in odd_run.exception  # recorded, not left empty
    assert not [e for e in statusdoc.watchdog_errors(store, store.now()) if e["kind"] == "rejected"]


def test_nan_and_inf_progress_never_stop_the_monitor_from_stopping_a_stuck_run_beside_it(
    worker: PreforkWorker,
) -> None:
    wd, store = runtime(worker)
    hostile = worker.task("hostile_numbers").delay(6)
    stuck = worker.task("sleep_watched").delay()
    with Passes(wd) as passes:
        found = wait_for(
            lambda: next((f for f in passes.findings() if f.run.task_id == stuck.id), None),
            timeout=30, what="the stuck run found",
        )  # fmt: skip
        assert hostile.get(timeout=30) == "done"
    assert found.kind == "stuck" and "revoked" in found.actions
    assert not passes.errors
    # A record an older version (or a hand) left with NaN in it is read around, not crashed on.
    runkey = next(iter(store.r.zrange(f"{wd.settings.key_prefix}:running", 0, 0)), None)
    if runkey:
        store.r.hset(
            f"{wd.settings.key_prefix}:run:{runkey}",
            mapping={"processed": "nan", "total": "inf", "started": "nan", "last_progress": "-inf"},
        )
    commands = [("status",), ("tasks",), ("task", hostile.id), ("workers",), ("check",)]
    for out in every_output(worker, commands):
        assert out.returncode in (0, 1), out.stderr
        assert "NaN" not in out.stdout and "Infinity" not in out.stdout
    doc = views.task_doc(store, wd, hostile.id)
    assert doc["watchdog"]["processed"] is None or math.isfinite(doc["watchdog"]["processed"])


def every_output(
    worker: PreforkWorker, commands: list[tuple[str, ...]]
) -> list[subprocess.CompletedProcess[str]]:
    """Each ``celery watchdog`` command as people and scripts run it (text, then --json)."""
    outs = []
    for args in commands:
        for extra in ((), ("--json",)):
            out = celery(*args, *extra, redis_url=worker.redis_url, prefix=worker.prefix,
                         conf=FAST)  # fmt: skip
            assert "Traceback" not in out.stderr, (args, out.stderr)
            outs.append(out)
    return outs


def _ended(store: Store, task_id: str, state: str) -> Any:
    return next((r for r in store.runs.of_task(task_id) if r.state == state), None)


# -- secrets and escapes, end to end ----------------------------------------------------------


def test_a_secret_in_args_step_and_error_is_in_no_record_command_or_alert(
    worker: PreforkWorker,
) -> None:
    from celery_watchdog.testing import capture_alerts

    wd, store = runtime(worker)
    failing = worker.task("hostile_text").delay(DSN, 0.2)
    stuck = worker.task("hostile_text").delay(DSN, 600)
    with pytest.raises(ValueError):
        failing.get(timeout=30)
    with capture_alerts() as alerts:
        finding_for(wd, store, stuck.id, "stuck", timeout=30)
    assert alerts, "no alert for the stuck run"
    shown = [json.dumps(a.as_dict(), default=str) + a.text() for a in alerts]
    commands = [("status",), ("tasks",), ("task", failing.id), ("task", stuck.id),
                ("dlq", "list"), ("dlq", "show", stuck.id), ("incidents",)]  # fmt: skip
    outputs = [out.stdout + out.stderr for out in every_output(worker, commands)]
    export = celery("dlq", "export", redis_url=worker.redis_url, prefix=worker.prefix, conf=FAST)
    outputs.append(export.stdout)
    records = _watchdog_records(store, wd.settings.key_prefix)
    for secret in SECRETS:
        for where, text in (
            [("alert", s) for s in shown]
            + [("cli", o) for o in outputs]
            + [("redis", r) for r in records]
        ):
            assert secret not in text, f"{secret!r} leaked into {where}: {text[:300]!r}"
    for text in outputs:
        assert "\x1b" not in text and "\x07" not in text and "\r" not in text


def _watchdog_records(store: Store, prefix: str) -> list[str]:
    """Every value the watchdog keeps, except the original messages kept for replay (a
    replay needs the arguments as sent: they live in the broker's queue anyway)."""
    out = []
    for key in store.r.scan_iter(match=f"{prefix}:*", count=1000):
        if key.startswith(f"{prefix}:msg:"):
            continue
        kind = store.r.type(key)
        if kind == "string":
            out.append(f"{key}={store.r.get(key)}")
        elif kind == "hash":
            doc = store.r.hgetall(key)
            doc.pop("message", None)  # a dead letter's replay copy of the original message
            out.append(f"{key}={doc}")
        elif kind == "list":
            out.append(f"{key}={store.r.lrange(key, 0, -1)}")
        elif kind == "set":
            out.append(f"{key}={store.r.smembers(key)}")
        elif kind == "zset":
            out.append(f"{key}={store.r.zrange(key, 0, -1)}")
    return out


# -- requeue means requeue --------------------------------------------------------------------


def test_the_only_worker_killed_mid_idempotent_run_is_requeued_and_runs_on_a_new_worker(
    redis_url: str,
) -> None:
    first = PreforkWorker(redis_url, conf=FAST)
    second = PreforkWorker(redis_url, prefix=first.prefix, conf=FAST)
    second.name = f"second-{first.prefix}@{socket.gethostname()}"
    try:
        first.start()
        wd, store = runtime(first)
        result = first.task("idem_sleep").delay(f"key-{uuid.uuid4().hex}", 120)
        wait_for(lambda: store.messages.get(result.id), what="its original message kept")
        os.killpg(first.main_pid, signal.SIGKILL)
        first.stop(check=False)
        time.sleep(3 * FAST["watchdog_snapshot_interval"] + 1)  # its snapshot expires
        second.start()
        found = finding_for(wd, store, result.id, "lost", timeout=30)
        assert found.action == "requeued", found.detail
        assert found.new_task_id
        again = first.app.AsyncResult(found.new_task_id)
        assert again.get(timeout=30) == "ran again"
        # Its incident ends with the work: when the requeued run succeeded.
        resolved = wait_for(
            lambda: run_pass(wd, store) and [i for i in store.incidents.recent()
                                             if i.state == "resolved"],
            timeout=15, interval=0.3, what="the lost run's incident resolved",
        )  # fmt: skip
        assert resolved[0].resolution == f"requeued as {found.new_task_id[:8]}…, succeeded"
        assert store.messages.get(result.id) is None  # decided: the saved copy is gone
        assert store.dlq.count() == 0
    finally:
        second.stop(check=False)
        first.stop(check=False)


# -- one clock for the monitor too ------------------------------------------------------------

SKEW = """
import datetime as _dt
import time as _time

_real = _time.time
_time.time = lambda: _real() + {skew}
_Real = _dt.datetime


class _Skewed(_Real):
    # Celery compares ``expires`` with datetime.now(): it must run ahead too.
    @classmethod
    def now(cls, tz=None):
        return _Real.now(tz) + _dt.timedelta(seconds={skew})

    @classmethod
    def utcnow(cls):
        return _Real.utcnow() + _dt.timedelta(seconds={skew})


_dt.datetime = _Skewed
"""


class SkewedWorker(PreforkWorker):
    """A worker whose ``time.time()`` runs ``skew`` seconds ahead (a sitecustomize)."""

    def __init__(self, *args: Any, skew: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.site = Path(tempfile.mkdtemp(prefix="watchdog-skew-"))
        (self.site / "sitecustomize.py").write_text(SKEW.format(skew=skew))

    def env(self) -> dict[str, str]:
        env = super().env()
        env["PYTHONPATH"] = os.pathsep.join([str(self.site), env["PYTHONPATH"]])
        return env


def test_a_worker_whose_clock_runs_30_s_ahead_of_beats_still_runs_every_check(
    redis_url: str, tmp_path: Path
) -> None:
    conf = {**FAST, "watchdog_check_interval": 1.0}
    with SkewedWorker(redis_url, conf=conf, skew=30) as w:
        wd, store = runtime(w)
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.workerapp", "beat",
             "-s", str(tmp_path / "schedule"), "--loglevel=INFO"],
            cwd=REPO_ROOT, env=PreforkWorker.env(w) | {"PYTHONPATH": str(REPO_ROOT)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            first = wait_for(lambda: store.monitor.last_pass().get("at"), timeout=30,
                             what="a check run by the skewed worker")  # fmt: skip
            wait_for(lambda: store.monitor.last_pass().get("at") != first, timeout=15,
                     what="a second check")  # fmt: skip
            status = statusdoc.status_doc(store, wd)
            assert status["watchdog"]["blind"] is None
            time.sleep(2)
        finally:
            assert not stop_process_group(beat)
        rows = views.tasks_doc(store, wd)
        assert not [t for t in rows.values() if t["name"].startswith("celery_watchdog.")]
        discarded = [line for line in w.log_text().splitlines()
                     if "expired" in line.lower() and "celery_watchdog.check" in line]  # fmt: skip
        assert not discarded


# -- a huge argument ---------------------------------------------------------------------------

# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the (big) test process.
MAXRSS = """
import atexit, re, runpy, sys
hwm = lambda: re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)
atexit.register(lambda: print("MAXRSS_KB", hwm(), file=sys.stderr))
sys.argv = ["celery", "-A", "tests.workerapp", "watchdog", *sys.argv[1:]]
runpy.run_module("celery", run_name="__main__")
"""


def test_a_50_mb_message_in_the_dead_letter_queue_is_listed_without_loading_it(
    redis_url: str, tmp_path: Path
) -> None:
    prefix = f"wdhuge-{uuid.uuid4().hex[:8]}"
    app_store = Store(redis.Redis.from_url(redis_url, decode_responses=True), prefix)
    body = "A" * (50 * 1024 * 1024)
    app_store.dlq.add({"id": "huge-1", "name": "tests.workerapp.sleep", "verdict": "stuck",
                       "reason": "test", "message": {"body": body, "task": "x"},
                       "dead_lettered_at": app_store.now(), "state": "dead"})  # fmt: skip
    del body
    script = tmp_path / "maxrss.py"
    script.write_text(MAXRSS)
    env = dict(os.environ, WATCHDOG_TEST_REDIS_URL=redis_url, WATCHDOG_TEST_PREFIX=prefix,
               WATCHDOG_TEST_CONF="{}", PYTHONPATH=str(REPO_ROOT))  # fmt: skip
    for extra in ((), ("--json",)):
        out = subprocess.run([sys.executable, str(script), "dlq", "list", *extra], cwd=REPO_ROOT,
                             env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert "huge-1" in out.stdout and len(out.stdout) < 100_000
        rss_mb = int(out.stderr.rsplit("MAXRSS_KB", 1)[1].split()[0]) / 1024
        assert rss_mb < 150, f"dlq list used {rss_mb:.0f} MB for one 50 MB entry"

"""Several monitors at once, in separate processes: every run is acted on exactly once.

Runs are written through the recorder's own write path (``RunHandle`` events into
``flush.lua``), then four monitor processes start one pass each at the same moment.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from celery_watchdog import install
from celery_watchdog.monitor.check import run_pass
from celery_watchdog.recording.recorder import RunHandle
from celery_watchdog.runtime import Watchdog
from celery_watchdog.store import Store
from tests.helpers import make_app, unique_prefix

pytestmark = pytest.mark.timeout(60)
MONITORS = 4
RUNS = 200
HOSTS = ("scale-a@host", "scale-b@host")
TASK = "scale.export"  # not registered anywhere: not idempotent, so a stopped run is dead-lettered
CONF = {"watchdog_heartbeat_timeout": 60}


@dataclass(frozen=True)
class Seen:
    """One finding of one monitor process, as plain picklable values."""

    kind: str
    task_id: str
    run_key: str
    action: str


def runtime(redis_url: str, prefix: str) -> tuple[Watchdog, Store]:
    wd = install(make_app(redis_url, watchdog_key_prefix=prefix, **CONF))
    assert wd is not None
    return wd, wd.store()


def record_runs(wd: Watchdog, store: Store, runs: list[tuple[str, str]], quiet: float) -> None:
    """Write the first event of each (task id, host) run, its last progress ``quiet`` s ago."""
    now = time.monotonic()
    events = []
    for i, (task_id, host) in enumerate(runs):
        handle = RunHandle(task_id, TASK, host, watched=True, policy=wd.policy(TASK), pid=1000 + i)
        handle.started = handle.last_progress = now - quiet
        events.append(handle.as_event(now, wd.redactor))
    store.runs.write_batch(events, [], wd.recorder.limits)


def workers_online(store: Store) -> None:
    for host in HOSTS:  # runs of a worker without a live snapshot would be judged lost
        store.workers.write_snapshot(host, {"active": []}, ttl=60, online=True)


def one_monitor(redis_url: str, prefix: str, barrier: Any, results: Any) -> None:
    """A monitor process: connect, wait at the start line with the others, run one pass."""
    try:
        wd, store = runtime(redis_url, prefix)
        store.now()  # connected before the start line, so the passes really overlap
        barrier.wait(timeout=30)
        began = time.time()
        report = run_pass(wd, store)
        seen = [Seen(f.kind, f.run.task_id, f.run.run_key, f.action) for f in report.findings]
        results.put({"seen": seen, "span": (began, time.time())})
    except BaseException:
        results.put({"error": traceback.format_exc()})


def monitors_at_once(redis_url: str, prefix: str) -> list[dict[str, Any]]:
    """Run MONITORS passes in separate processes released together; their reports."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(MONITORS)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=one_monitor, args=(redis_url, prefix, barrier, results))
        for _ in range(MONITORS)
    ]
    for proc in procs:
        proc.start()
    reports = []
    try:
        for _ in procs:  # drained before join: a child blocks on exit until its queue is read
            reports.append(results.get(timeout=40))
    except queue.Empty:
        pytest.fail(f"monitor processes did not report; exit codes {[p.exitcode for p in procs]}")
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
    errors = [r["error"] for r in reports if "error" in r]
    assert not errors, "a monitor process failed:\n" + "\n".join(errors)
    return reports


def claim_keys(store: Store) -> list[str]:
    return sorted(store.r.scan_iter(match=f"{store.p}:claim:*", count=1000))


def test_four_monitors_at_once_act_on_each_of_200_stuck_runs_exactly_once(redis_url: str) -> None:
    prefix = unique_prefix("wdscale")
    wd, store = runtime(redis_url, prefix)
    workers_online(store)
    runs = [(str(uuid.uuid4()), HOSTS[i % 2]) for i in range(RUNS)]
    record_runs(wd, store, runs, quiet=600)  # silent for 10 min, heartbeat_timeout 1 min
    run_keys = {r.run_key for r in store.runs.running(limit=RUNS + 1)}
    assert len(run_keys) == RUNS
    assert len(store.runs.due(store.now(), limit=RUNS + 1)) == RUNS

    reports = monitors_at_once(redis_url, prefix)

    seen: list[Seen] = [s for r in reports for s in r["seen"]]
    assert Counter(s.kind for s in seen) == {"stuck": RUNS}
    per_run = Counter(s.run_key for s in seen)
    assert set(per_run) == run_keys and set(per_run.values()) == {1}, "a run acted on twice"
    assert len({s.task_id for s in seen}) == RUNS
    assert {s.action for s in seen} == {"dead_lettered"}
    # The passes overlapped in time: exactly once held under real contention.
    starts, ends = zip(*(r["span"] for r in reports), strict=True)
    assert max(starts) < min(ends), f"passes did not overlap: {[r['span'] for r in reports]}"

    assert store.dlq.count() == RUNS
    entries = store.dlq.get_many([task_id for task_id, _ in runs])
    assert all(e and e["verdict"] == "stuck" for e in entries)
    assert claim_keys(store) == sorted(f"{prefix}:claim:stuck:{key}" for key in run_keys)
    assert run_pass(wd, store).findings == []  # acted on already: later passes stay quiet


def test_one_task_id_running_on_two_workers_is_one_duplicate_finding_across_four_monitors(
    redis_url: str,
) -> None:
    prefix = unique_prefix("wdscale")
    wd, store = runtime(redis_url, prefix)
    workers_online(store)
    twice = str(uuid.uuid4())
    healthy = [(str(uuid.uuid4()), HOSTS[i % 2]) for i in range(20)]
    record_runs(wd, store, healthy, quiet=0)
    for host in HOSTS:  # each worker's recorder reports its own copy, progressing
        record_runs(wd, store, [(twice, host)], quiet=0)
    assert {r.task_id for r in store.runs.due(store.now())} == {twice}

    reports = monitors_at_once(redis_url, prefix)

    seen = [s for r in reports for s in r["seen"]]
    assert [(s.kind, s.task_id, s.action) for s in seen] == [("duplicate", twice, "none")]
    assert claim_keys(store) == [f"{prefix}:claim:duplicate:{twice}"]
    assert store.dlq.count() == 0

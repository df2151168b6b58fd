"""What does one monitor pass cost, and how fast is a stuck run acted on? (issue 4)

Targets: a pass over 100k tracked running tasks with 0 due <= 50 ms; with 1k due, the pass
that handles them <= 2 s; detection latency from a run's last heartbeat to the action
<= heartbeat_timeout + check_interval + 1 s.

Method:

1. **Passes** (in this process, on a private ``redis-server``). N running runs (distinct
   task ids, 20 ``WatchedTask`` names, 4 worker host names, a few child pids each) are
   written through the real write path: ``RunHandle`` -> ``Recorder.flush`` ->
   ``store.runs.write_batch`` -> ``flush.lua``, as "run" events with ``new=True`` and
   ``heartbeat_timeout`` = 1 h, so nothing is due. The hosts' snapshots are written with
   ``store.workers.write_snapshot(host, snapshot, ttl, online=True)`` (so every run's worker is
   alive) and refreshed whenever they are 5 s old (never inside a timed pass). By default
   each snapshot lists its host's runs in ``active`` as a real worker's does (id, name, pid,
   CPU, args preview): with N runs in progress the fleet's snapshots hold N entries,
   whatever the number of hosts; ``--bare-snapshots`` leaves ``active`` empty.

   - *0 due*: ``celery_watchdog.monitor.check.run_pass(wd, store)`` timed several times.
   - *1k due*: 1000 runs not yet touched get their progress moved 2 h into the past (their
     handles' ``started``/``last_progress``/``last_heartbeat``), are flushed again (real
     "run" events, now ``new=False``, deadline in the past), and one pass is timed: it
     claims, judges (stuck), cancels, revokes (``app.control.revoke`` broadcasts to the
     private broker; nobody consumes it), dead-letters (no saved message: not replayable)
     and reschedules each. Repeated with fresh runs; ``watchdog_terminate_grace`` is 600 s so
     no repetition escalates an earlier one's SIGTERMs.
   - *0 due after*: passes timed again once the 1k batches were handled.
   - INFO rows: 0 due with bare snapshots (what the snapshots cost), and one pass that
     escalates 1k SIGTERMed runs still running to SIGKILL (their grace deadlines are moved
     to the past with ``ZADD XX``: the only write not made through the real path).
   - A breakdown: one more pass of each kind with every store call, the revoke, the rules,
     the logging and the snapshot parsing wrapped in timers (not counted in the figures).

2. **Latency** with a real worker: ``celery -A benchmarks.monitorapp worker -P prefork -c 2``
   (watchdog on, ``watchdog_heartbeat_timeout=2``, ``watchdog_check_interval=1``). Each
   ``bench.mon.hang`` run calls ``heartbeat(processed=1)`` once, stamps that moment with the
   Redis server's clock, then sleeps for an hour. This process runs ``run_pass`` every
   check interval, as ``celery watchdog monitor --interval 1`` does. Latency = server time
   right after the pass that dead-lettered the run - the run's ``last_heartbeat`` as
   recorded in the store (server clock); the task's own stamp is shown beside it.

``python -m benchmarks.monitor --help`` for the options; exit status 0 when every target
passes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ._harness import PrivateRedis, Worker, cleanup_all, install_signal_handlers

PASS_PREFIX = "wdmon"
LATENCY_PREFIX = "wdlat"
TARGET_IDLE_MS = 50.0
TARGET_DUE_S = 2.0
LATENCY_MARGIN = 1.0  # target = heartbeat_timeout + check_interval + 1 s
STALE = 7200.0  # seconds a due run's progress is moved into the past
CHUNK = 2000  # runs per recorder flush while populating
SNAPSHOT_TTL = 15.0  # 3 x the default snapshot interval, as a worker writes it
SNAPSHOT_REFRESH = 5.0
HOSTS = tuple(f"celery@reports-worker-5d8f7c9b6-{s}" for s in ("x2k4p", "q8w3m", "b7n2r", "t4z9c"))
PIDS_PER_HOST = 8


@dataclass
class Options:
    tracked: int
    due: int
    idle_reps: int
    due_reps: int
    bare_reps: int
    bare_snapshots: bool
    latency_tasks: int
    heartbeat_timeout: float
    check_interval: float
    latency_wait: float
    skip_passes: bool
    skip_latency: bool
    breakdown: bool
    json_path: str | None
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="watchdog-bench-")))


# -- timing helpers ----------------------------------------------------------------------------


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "max": max(values),
        "min": min(values),
        "n": len(values),
    }


def _load() -> str:
    try:
        one, five, fifteen = os.getloadavg()
        return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"
    except OSError:
        return "load average n/a"


_MISSING = object()


class CallTimer:
    """Wraps attributes (store methods, module functions…) in timers for one pass.

    ``nested`` labels run inside another timed call; they are shown indented and left out
    of the sum, so "everything else" = pass time - the top-level calls.
    """

    def __init__(self) -> None:
        self.calls: dict[str, list[float]] = {}
        self.nested: dict[str, str] = {}  # label -> the label of the call it runs inside

    def _wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        perf = time.perf_counter
        slot = self.calls.setdefault(label, [0, 0.0])

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = perf()
            try:
                return fn(*args, **kwargs)
            finally:
                slot[0] += 1
                slot[1] += perf() - t0

        return timed

    @contextmanager
    def patched(self, targets: list[tuple[Any, str, str, str | None]]) -> Iterator[CallTimer]:
        saved = []
        for obj, attr, label, parent in targets:
            own = obj.__dict__.get(attr, _MISSING)
            original = getattr(obj, attr)
            wrapped: Any = self._wrap(label, original)
            if isinstance(own, (classmethod, staticmethod)):
                wrapped = staticmethod(wrapped)  # the bound original already carries its class
            setattr(obj, attr, wrapped)
            saved.append((obj, attr, own))
            if parent:
                self.nested[label] = parent
        try:
            yield self
        finally:
            for obj, attr, own in reversed(saved):
                if own is _MISSING:
                    delattr(obj, attr)
                else:
                    setattr(obj, attr, own)

    def rows(self, total: float) -> list[tuple[str, int, float, float]]:
        """(label, calls, ms, µs per call), most expensive first, then "everything else"."""
        rows = [
            (label, int(n), t * 1000, (t / n * 1e6) if n else 0.0)
            for label, (n, t) in self.calls.items()
            if n
        ]
        top_rows = sorted((r for r in rows if r[0] not in self.nested), key=lambda r: -r[2])
        ordered = []
        for row in top_rows:
            ordered.append(row)
            ordered += [r for r in rows if self.nested.get(r[0]) == row[0]]
        rows = ordered
        top = sum(r[2] for r in top_rows)
        rows.append(("everything else (Python in run_pass/Handler)", 0, total * 1000 - top, 0.0))
        return rows


def _targets(store: Any, app: Any) -> list[tuple[Any, str, str, str | None]]:
    from celery_watchdog import dlq
    from celery_watchdog.model import records, rules
    from celery_watchdog.monitor import handling

    logger = logging.getLogger("celery_watchdog")
    names = [
        "now", "monitor.last_pass", "workers.all", "workers.online", "workers.offline",
        "monitor.terminating_due", "runs.running_many", "monitor.terminating_done", "runs.due",
        "names.budgets", "names.runtimes", "names.save_budgets", "monitor.claim_many",
        "monitor.claimed_many", "monitor.stop_many", "messages.get_many", "workers.cpu_of",
        "dlq.add_many", "runs.mark_verdicts", "runs.reschedule_many", "monitor.lost_pending",
        "monitor.lost_done", "monitor.record_pass", "runs.of_host", "runs.write_batch",
    ]  # fmt: skip
    targets: list[tuple[Any, str, str, str | None]] = []
    for path in names:
        family, _, method = path.rpartition(".")
        owner = getattr(store, family) if family else store
        if hasattr(owner, method):
            targets.append((owner, method, f"store.{path}", None))
    targets += [
        (app.control, "revoke", "app.control.revoke (kombu broadcast publish)", None),
        (rules, "health", "rules.health", None),
        (dlq, "make_entry", "dlq.make_entry", None),
        (handling.Handler, "_diagnose", "Handler._diagnose", None),
        (records.Finding, "as_dict", "Finding.as_dict (for the log line)", None),
        (logger, "warning", "logger.warning (one JSON line per finding)", None),
        (
            records.WorkerInfo,
            "from_doc",
            "  in workers(): WorkerInfo.from_doc (json.loads)",
            "store.workers.all",
        ),
    ]
    return targets


# -- tracked runs through the real write path ---------------------------------------------------


class Tracked:
    """N running runs recorded through RunHandle -> Recorder.flush -> flush.lua."""

    def __init__(self, wd: Any, url: str, prefix: str) -> None:
        from celery_watchdog.recording.recorder import Recorder
        from celery_watchdog.store import Limits, Store, connect

        self.wd = wd
        self.app = wd.app
        # Its own recorder: no flusher thread wakes up during a timed pass (flushes are ours).
        self.recorder = Recorder(
            store_factory=lambda: Store(connect(url), prefix),
            limits=Limits(wd.settings.retention, wd.settings.max_finished),
            redactor=wd.redactor,
            flush_interval=1e9,
            buffer_size=10 * CHUNK,
        )
        self.handles: list[Any] = []  # the runs that will be made due (kept to re-flush them)
        # Every run, compactly, for the snapshots: (task id, name, host, pid, started, args).
        # Tuples of strings and numbers only: a monitor process does not hold 100k objects
        # for its garbage collector to walk, so neither does this one.
        self.runs: list[tuple[str, str, str, int, float, str]] = []
        self.next_due = 0  # handles[:next_due] were made due already
        self.snapshot_at = -1e9
        self.with_active = True

    def populate(self, n: int, keep: int, progress: Callable[[int], None]) -> float:
        """Record ``n`` running runs; keep the handles of the first ``keep`` to make due."""
        from celery_watchdog.recording.recorder import RunHandle

        from .monitorapp import TRACKED_TASKS

        tasks = [self.app.tasks[name] for name in TRACKED_TASKS]
        started = time.perf_counter()
        for start in range(0, n, CHUNK):
            batch = []
            for i in range(start, min(n, start + CHUNK)):
                task = tasks[i % len(tasks)]
                task_id = str(uuid.uuid4())
                request = SimpleNamespace(
                    args=(i, "2024-05"),
                    kwargs={},
                    delivery_info={"exchange": "", "routing_key": "celery"},
                    eta=None,
                    expires=None,
                    retries=0,
                    root_id=task_id,
                    parent_id=None,
                )
                host = HOSTS[i % len(HOSTS)]
                pid = 1000 + (i // len(HOSTS)) % PIDS_PER_HOST
                handle = RunHandle(
                    task_id, task.name, host, True, self.wd.policy(task), pid, request, task
                )
                self.recorder.start_run(handle)
                batch.append(handle)
            self._flush(batch)
            self.handles += batch[: max(0, keep - len(self.handles))]
            self.runs += [
                (h.task_id, h.name, h.worker, h.pid, h.started, repr(h.request.args)) for h in batch
            ]
            progress(len(self.runs))
        return time.perf_counter() - started

    def _flush(self, batch: list[Any]) -> None:
        if not self.recorder.flush():
            raise RuntimeError("the recorder could not write to Redis")
        for handle in batch:
            self.recorder.forget(handle)  # keep the recorder's live set small

    def make_due(self, count: int) -> tuple[list[Any], float]:
        """Move the progress of ``count`` fresh runs STALE seconds back; flush (real events)."""
        from celery_watchdog.recording.recorder import monotonic

        if self.next_due + count > len(self.handles):
            raise RuntimeError(
                f"not enough tracked runs left to make {count} due: use more --tracked "
                "or fewer --due-reps"
            )
        batch = self.handles[self.next_due : self.next_due + count]
        self.next_due += count
        old = monotonic() - STALE
        for h in batch:
            h.started = h.last_progress = h.last_heartbeat = old
            h.dirty = True
            self.recorder.start_run(h)
        t0 = time.perf_counter()
        self._flush(batch)
        return batch, time.perf_counter() - t0

    def snapshots(self, store: Any, with_active: bool) -> float:
        """One snapshot per host, as its main process writes it; returns seconds taken."""
        from celery_watchdog.recording.recorder import monotonic

        now = monotonic()
        per_host: dict[str, list[dict[str, Any]]] = {h: [] for h in HOSTS}
        if with_active:
            timeout = self.wd.settings.heartbeat_timeout
            for task_id, name, host, pid, started, args in self.runs:
                per_host[host].append(
                    {
                        "id": task_id,
                        "name": name,
                        "pid": pid,
                        "started_age": now - started,
                        "cpu": 12.5,
                        "cpu_pct": 0.0,
                        "args": args,
                        "track": True,
                        "watched": True,
                        "deadline_after": timeout,
                        "kwargs": "{}",
                    }
                )
        self.with_active = with_active
        t0 = time.perf_counter()
        for i, host in enumerate(HOSTS):
            snapshot = {
                "pid": 4000 + i,
                "pool": "prefork",
                "concurrency": PIDS_PER_HOST,
                "queues": ["celery"],
                "processes": list(range(1000, 1000 + PIDS_PER_HOST)),
                "active": per_host[host],
                "total": {},
                "registered": sorted(n for n in self.app.tasks if not n.startswith("celery.")),
                "software": {"celery": "5.7.0", "python": "3.11"},
                "watchdog": {"dropped": 0, "errors": 0, "blind": None},
            }
            store.workers.write_snapshot(host, snapshot, SNAPSHOT_TTL, online=True)
        self.snapshot_at = time.monotonic()
        return time.perf_counter() - t0

    def keep_alive(self, store: Any) -> None:
        """Rewrite the snapshots once they are SNAPSHOT_REFRESH old (never inside a pass)."""
        if time.monotonic() - self.snapshot_at > SNAPSHOT_REFRESH:
            self.snapshots(store, self.with_active)


# -- part 1: passes ------------------------------------------------------------------------------


def _timed_pass(wd: Any, store: Any) -> tuple[float, Any]:
    from celery_watchdog.monitor.check import run_pass

    t0 = time.perf_counter()
    report = run_pass(wd, store)
    return time.perf_counter() - t0, report


def _snapshot_anatomy(store: Any) -> dict[str, Any]:
    """What ``store.workers.all()`` moves and parses: bytes, fetch, json.loads, records."""
    from celery_watchdog.model.records import WorkerInfo

    p = store.p
    hosts = store.r.zrevrange(f"{p}:workers", 0, -1, withscores=True)
    t0 = time.perf_counter()
    pipe = store.r.pipeline(transaction=False)
    for host, _ in hosts:
        pipe.hgetall(f"{p}:worker:{host}")
    docs = pipe.execute()
    t1 = time.perf_counter()
    for doc in docs:
        json.loads(doc.get("data") or "{}")
    t2 = time.perf_counter()
    infos = [WorkerInfo.from_doc(h, s, d) for (h, s), d in zip(hosts, docs, strict=True)]
    t3 = time.perf_counter()
    return {
        "hosts": len(hosts),
        "bytes": sum(len(d.get("data") or "") for d in docs),
        "active": sum(len(w.active) for w in infos),
        "fetch_ms": (t1 - t0) * 1000,
        "json_ms": (t2 - t1) * 1000,
        "from_doc_ms": (t3 - t2) * 1000,
    }


def measure_passes(server: PrivateRedis, opts: Options) -> dict[str, Any]:
    import celery_watchdog

    from .monitorapp import make_app

    conf = {"watchdog_heartbeat_timeout": 3600.0, "watchdog_terminate_grace": 600.0}
    app = make_app(server.url, PASS_PREFIX, conf)
    wd = celery_watchdog.install(app)
    assert wd is not None
    store = wd.store()  # what `celery watchdog check` / the check task use
    logger = logging.getLogger("celery_watchdog")
    findings_log = opts.log_dir / "findings.log"
    handler = logging.FileHandler(findings_log)  # one JSON line per finding, as in production
    logger.addHandler(handler)
    logger.propagate = False
    full = not opts.bare_snapshots
    out: dict[str, Any] = {"tracked": opts.tracked, "snapshots": "full" if full else "bare"}
    try:
        tracked = Tracked(wd, server.url, PASS_PREFIX)
        step = max(CHUNK, opts.tracked // 5 // CHUNK * CHUNK)

        def progress(done: int) -> None:
            if done % step == 0 or done == opts.tracked:
                print(f"    {done} runs recorded", flush=True)

        print(f"  recording {opts.tracked} running runs through Recorder.flush -> flush.lua")
        keep = opts.due * (opts.due_reps + opts.bare_reps + (1 if opts.breakdown else 0))
        out["populate_s"] = tracked.populate(opts.tracked, keep, progress)
        out["snapshot_write_s"] = tracked.snapshots(store, full)
        running = int(store.r.zcard(f"{PASS_PREFIX}:running"))
        out["running"] = running
        out["used_memory_mb"] = int(store.r.info("memory")["used_memory"]) / 1e6
        print(
            f"    {running} runs in {PASS_PREFIX}:running after {out['populate_s']:.1f}s; "
            f"snapshots of {len(HOSTS)} hosts written in {out['snapshot_write_s'] * 1000:.0f} ms "
            f"({'listing their runs' if full else 'bare'}); used_memory "
            f"{out['used_memory_mb']:.0f} MB"
        )
        if running != opts.tracked:
            raise RuntimeError(f"expected {opts.tracked} running runs, found {running}")
        out["anatomy"] = _snapshot_anatomy(store)
        rtts = []
        for _ in range(200):
            t0 = time.perf_counter()
            store.r.ping()
            rtts.append((time.perf_counter() - t0) * 1e6)
        out["rtt_us"] = statistics.median(rtts)
        print(f"    one Redis round trip (PING, redis-py) here: median {out['rtt_us']:.0f} µs")

        def idle_passes(label: str) -> list[float]:
            times = []
            for _ in range(opts.idle_reps):
                tracked.keep_alive(store)
                seconds, report = _timed_pass(wd, store)
                if report.due or report.findings:
                    raise RuntimeError(
                        f"{label}: expected 0 due, got {report.due} due, "
                        f"{len(report.findings)} findings"
                    )
                times.append(seconds * 1000)
            s = _stats(times)
            print(f"  {label}: median {s['median']:.1f} ms, max {s['max']:.1f} ms  ({_load()})")
            return times

        def due_passes(reps: int, label: str) -> tuple[list[float], list[dict[str, Any]]]:
            times, checks = [], []
            for rep in range(reps):
                tracked.keep_alive(store)
                batch, flush_s = tracked.make_due(opts.due)
                dlq_before = store.dlq.count()
                seconds, report = _timed_pass(wd, store)
                ids = {h.task_id for h in batch}
                acted = [f for f in report.findings if f.run.task_id in ids]
                dead = sum(1 for f in acted if f.kind == "stuck" and f.action == "dead_lettered")
                dlq_added = store.dlq.count() - dlq_before
                ok = report.due == opts.due and dead == opts.due and dlq_added == opts.due
                checks.append(
                    {"due": report.due, "dead_lettered": dead, "dlq_added": dlq_added, "ok": ok}
                )
                times.append(seconds)
                if acted and "sample_finding" not in out:
                    out["sample_finding"] = acted[0].as_dict()
                print(
                    f"  {label} (rep {rep + 1}/{reps}): {seconds:.2f} s "
                    f"({seconds / opts.due * 1e3:.2f} ms per due run); due {report.due}, stuck "
                    f"+ dead-lettered {dead}, DLQ +{dlq_added}; re-flush of the {opts.due} took "
                    f"{flush_s * 1000:.0f} ms  ({_load()})"
                )
            return times, checks

        _timed_pass(wd, store)  # warm-up: connections, script cache, imports
        out["idle_ms"] = idle_passes(f"pass, 0 due of {opts.tracked} tracked")
        out["due_s"], out["due_checks"] = due_passes(opts.due_reps, f"pass, {opts.due} due")
        if opts.due_reps:
            handled = opts.due_reps * opts.due
            out["idle_after_ms"] = idle_passes(f"pass, 0 due after {handled} handled")

        if full and opts.bare_reps:
            tracked.snapshots(store, False)
            out["idle_bare_ms"] = idle_passes("INFO pass, 0 due, snapshots without active lists")
            out["due_bare_s"], out["due_bare_checks"] = due_passes(
                opts.bare_reps, f"INFO pass, {opts.due} due, snapshots without active lists"
            )
            tracked.snapshots(store, True)

        if tracked.next_due:
            # Escalation: the last batch's SIGTERM grace ends now (ZADD XX), runs still going.
            batch = tracked.handles[tracked.next_due - opts.due : tracked.next_due]
            keys = [f"{h.task_id}|{h.worker}|{h.slot}" for h in batch]
            tracked.keep_alive(store)
            moved = store.r.zadd(
                f"{PASS_PREFIX}:terminating",
                {k: store.now() - 1 for k in keys},
                xx=True,
                ch=True,
            )
            seconds, report = _timed_pass(wd, store)
            left = int(store.r.zcard(f"{PASS_PREFIX}:terminating"))
            out["escalate"] = {"runs": int(moved), "s": seconds, "left": left}
            print(
                f"  INFO pass escalating {moved} SIGTERMed runs to SIGKILL: {seconds:.2f} s "
                f"({seconds / max(1, moved) * 1e3:.2f} ms per run); the {left} SIGTERMed in "
                "earlier passes still wait for their grace"
            )

        if opts.breakdown:
            out["breakdown"] = {}
            tracked.keep_alive(store)
            timer = CallTimer()
            store.r.config_resetstat()
            with timer.patched(_targets(store, app)):
                seconds, _ = _timed_pass(wd, store)
            out["breakdown"]["idle"] = {
                "ms": seconds * 1000,
                "rows": timer.rows(seconds),
                "server": _commandstats(store.r),
            }
            if tracked.next_due + opts.due <= len(tracked.handles):
                tracked.keep_alive(store)
                tracked.make_due(opts.due)
                timer = CallTimer()
                store.r.config_resetstat()
                with timer.patched(_targets(store, app)):
                    seconds, report = _timed_pass(wd, store)
                out["breakdown"]["due"] = {
                    "ms": seconds * 1000,
                    "rows": timer.rows(seconds),
                    "server": _commandstats(store.r),
                    "due": report.due,
                }
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.propagate = True
        store.r.close()
    return out


# -- part 2: detection latency with a real worker ---------------------------------------------


class MonitorWorker(Worker):
    """The harness's prefork worker, running ``benchmarks.monitorapp``."""

    def __init__(self, redis_url: str, conf: dict[str, Any], queue: str, log_dir: Path) -> None:
        super().__init__(
            "watchdog",
            redis_url,
            "celery@bench-monitor-latency",
            queue,
            log_dir,
            concurrency=2,
            prefix=LATENCY_PREFIX,
            extra_env={"BENCH_WATCHDOG_CONF": json.dumps(conf)},
        )
        self.args[self.args.index("benchmarks.benchapp")] = "benchmarks.monitorapp"


def measure_latency(server: PrivateRedis, opts: Options) -> dict[str, Any]:
    import celery_watchdog

    from .monitorapp import HANG_TASK, make_app, stamp_key

    conf = {
        "watchdog_heartbeat_timeout": opts.heartbeat_timeout,
        "watchdog_check_interval": opts.check_interval,
    }
    app = make_app(server.url, LATENCY_PREFIX, conf)
    wd = celery_watchdog.install(app)
    assert wd is not None
    logger = logging.getLogger("celery_watchdog")
    handler = logging.FileHandler(opts.log_dir / "latency-findings.log")
    logger.addHandler(handler)
    logger.propagate = False
    store = wd.store()
    client = server.client()
    queue = "bench.mon.hang"
    worker = MonitorWorker(server.url, conf, queue, opts.log_dir)
    target = opts.heartbeat_timeout + opts.check_interval + LATENCY_MARGIN
    results: list[dict[str, Any]] = []
    passes: list[float] = []
    try:
        print(
            f"  starting celery -A benchmarks.monitorapp worker -P prefork -c 2 (watchdog {conf})"
        )
        worker.start(app)
        ids = [app.tasks[HANG_TASK].apply_async(queue=queue).id for _ in range(opts.latency_tasks)]
        pending = set(ids)
        deadline = time.monotonic() + opts.latency_wait
        print(
            f"  {len(ids)} {HANG_TASK} runs published; run_pass every {opts.check_interval:g} s "
            f"(as `celery watchdog monitor --interval {opts.check_interval:g}`)"
        )
        while pending and time.monotonic() < deadline:
            started = time.monotonic()
            seconds, report = _timed_pass(wd, store)
            passes.append(seconds * 1000)
            seen_at = store.now()
            for f in report.findings:
                if f.run.task_id not in pending or f.kind != "stuck":
                    continue
                pending.discard(f.run.task_id)
                stamp = client.get(stamp_key(LATENCY_PREFIX, f.run.task_id))
                hb = f.run.last_heartbeat or f.run.last_progress
                r = {
                    "task_id": f.run.task_id,
                    "last_heartbeat": hb,
                    "task_stamp": float(stamp) if stamp else None,
                    "judged_at": report.now,
                    "acted_at": seen_at,
                    "latency": seen_at - hb if hb else None,
                    "judged_after": report.now - hb if hb else None,
                    "action": f.action,
                    "reason": f.reason,
                    "diagnosis": f.diagnosis,
                }
                results.append(r)
                stamp_note = (
                    f", task's own stamp {r['task_stamp'] - hb:+.3f} s"
                    if r["task_stamp"] and hb
                    else ""
                )
                print(
                    f"    {f.run.task_id[:8]}: judged {r['judged_after']:.2f} s and acted "
                    f"({f.action}) {r['latency']:.2f} s after its last heartbeat"
                    f"{stamp_note}; {f.reason}"
                )
                if f.diagnosis:
                    print(f"              where it waits: {f.diagnosis}")
            time.sleep(max(0.0, opts.check_interval - (time.monotonic() - started)))
        dlq = [e for e in (store.dlq.get_many(ids)) if e]
        out = {
            "tasks": len(ids),
            "results": results,
            "missing": sorted(pending),
            "dlq_entries": len(dlq),
            "ran": sum(1 for i in ids if client.exists(stamp_key(LATENCY_PREFIX, i))),
            "pass_ms": passes,
            "target": target,
        }
        if pending:
            print(f"    not detected within {opts.latency_wait:.0f} s: {sorted(pending)}")
            print(worker.tail())
        return out
    finally:
        worker.stop()
        logger.removeHandler(handler)
        handler.close()
        logger.propagate = True
        store.r.close()
        client.close()


# -- report --------------------------------------------------------------------------------------


def print_breakdown(title: str, data: dict[str, Any]) -> None:
    print(f"\n  {title}: {data['ms']:.1f} ms with timers (calls timed inclusively)")
    print(f"    {'call':<58} {'calls':>6} {'ms':>9} {'µs/call':>9} {'share':>6}")
    for label, calls, ms, per in data["rows"]:
        share = ms / data["ms"] if data["ms"] else 0.0
        c = str(calls) if calls else ""
        p = f"{per:.0f}" if calls else ""
        print(f"    {label:<58} {c:>6} {ms:>9.1f} {p:>9} {share:>6.0%}")
    server = data.get("server") or []
    if server:
        calls = sum(n for _, n, _ in server)
        busy = sum(us for _, _, us in server) / 1000
        top = ", ".join(f"{cmd} {n}x {us / 1000:.1f} ms" for cmd, n, us in server[:8])
        print(
            f"    Redis server side: {calls} commands, {busy:.1f} ms busy "
            f"({busy / data['ms']:.0%} of the pass): {top}"
        )


def _commandstats(client: Any) -> list[tuple[str, int, float]]:
    """(command, calls, µs inside Redis) since CONFIG RESETSTAT, most expensive first."""
    stats = client.info("commandstats")
    rows = [
        (key.removeprefix("cmdstat_").upper(), int(v["calls"]), float(v["usec"]))
        for key, v in stats.items()
        if key.removeprefix("cmdstat_") not in ("config", "info")
    ]
    return sorted(rows, key=lambda r: -r[2])


def summary(opts: Options, res: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    rows: list[tuple[str, bool | None, str]] = []
    p = res.get("passes")
    if p:
        n = p["tracked"]
        scale = "" if n >= 100_000 else f" [target is for 100k: {n} tracked here]"
        idle = _stats(p["idle_ms"] + p.get("idle_after_ms", []))
        before, after = _stats(p["idle_ms"]), _stats(p.get("idle_after_ms") or p["idle_ms"])
        rows.append(
            (
                f"pass with 0 due <= {TARGET_IDLE_MS:.0f} ms ({n} tracked, "
                f"snapshots {p['snapshots']})",
                idle["median"] <= TARGET_IDLE_MS if n >= 100_000 else None,
                f"median {idle['median']:.1f} ms = {idle['median'] / TARGET_IDLE_MS:.2f} x "
                f"target, max {idle['max']:.1f} ms (before 1k: median {before['median']:.1f}; "
                f"after: {after['median']:.1f}){scale}",
            )
        )
        if p.get("idle_bare_ms"):
            bare = _stats(p["idle_bare_ms"])
            rows.append(
                (
                    "the same passes, snapshots without active lists",
                    None,
                    f"median {bare['median']:.1f} ms = {bare['median'] / TARGET_IDLE_MS:.2f} x "
                    f"target, max {bare['max']:.1f} ms",
                )
            )
        if p.get("due_s"):
            d = _stats(p["due_s"])
            all_ok = all(c["ok"] for c in p["due_checks"])
            note = "" if all_ok else "  [NOT every due run was dead-lettered once: see above]"
            rows.append(
                (
                    f"{opts.due} due handled <= {TARGET_DUE_S:.0f} s",
                    (d["median"] <= TARGET_DUE_S and all_ok) if opts.due >= 1000 else None,
                    f"median {d['median']:.2f} s = {d['median'] / TARGET_DUE_S:.2f} x target, "
                    f"max {d['max']:.2f} s over {d['n']} passes "
                    f"({d['median'] / opts.due * 1e3:.2f} ms per due run){note}",
                )
            )
        if p.get("due_bare_s"):
            d = _stats(p["due_bare_s"])
            rows.append(
                (
                    f"the same {opts.due}-due passes, snapshots without active lists",
                    None,
                    f"median {d['median']:.2f} s = {d['median'] / TARGET_DUE_S:.2f} x target, "
                    f"max {d['max']:.2f} s over {d['n']} passes "
                    f"({d['median'] / opts.due * 1e3:.2f} ms per due run)",
                )
            )
        if p.get("escalate"):
            e = p["escalate"]
            rows.append(
                (
                    "a pass escalating SIGTERMed runs to SIGKILL",
                    None,
                    f"{e['runs']} runs in {e['s']:.2f} s "
                    f"({e['s'] / max(1, e['runs']) * 1e3:.2f} ms per run)",
                )
            )
    lat = res.get("latency")
    if lat:
        lats = [r["latency"] for r in lat["results"] if r["latency"] is not None]
        complete = not lat["missing"] and len(lats) == lat["tasks"]
        worst = max(lats) if lats else float("nan")
        detail = (
            f"max {worst:.2f} s = {worst / lat['target']:.2f} x target "
            f"({lat['target']:.0f} s = heartbeat_timeout {opts.heartbeat_timeout:g} + interval "
            f"{opts.check_interval:g} + {LATENCY_MARGIN:g}); "
            f"median {statistics.median(lats) if lats else float('nan'):.2f} s; "
            f"{len(lats)}/{lat['tasks']} detected, {lat['dlq_entries']} DLQ entries, "
            f"{lat['ran']} runs started (the worker served the next after each kill)"
        )
        rows.append(
            (
                "detection latency <= heartbeat_timeout + check_interval + 1 s",
                complete and worst <= lat["target"],
                detail,
            )
        )
    return rows


def report(opts: Options, res: dict[str, Any]) -> bool:
    p = res.get("passes")
    if p:
        a = p["anatomy"]
        print(
            f"\n  workers.all() reads {a['hosts']} snapshots, {a['bytes'] / 1e6:.1f} MB of JSON "
            f"listing {a['active']} active runs: fetch {a['fetch_ms']:.0f} ms, json.loads "
            f"{a['json_ms']:.0f} ms, WorkerInfo.from_doc (parse + records) "
            f"{a['from_doc_ms']:.0f} ms"
        )
        b = p.get("breakdown") or {}
        if "idle" in b:
            print_breakdown("breakdown of one pass with 0 due", b["idle"])
        if "due" in b:
            print_breakdown(f"breakdown of one pass with {b['due']['due']} due", b["due"])
    print("\nSummary (targets from issue 4; passes judged on the median, max shown)")
    ok = True
    for label, passed, detail in summary(opts, res):
        ok = ok and passed is not False
        tag = "INFO" if passed is None else "PASS" if passed else "FAIL"
        print(f"  [{tag}] {label}: {detail}")
    return ok


# -- command line --------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.monitor",
        description="Cost of one celery_watchdog monitor pass over N tracked running tasks "
        "(0 due, 1k due) and detection latency of a stuck run on a real prefork worker.",
    )
    parser.add_argument(
        "--tracked",
        type=int,
        default=None,
        help="running runs tracked (default 100000; quick 10000)",
    )
    parser.add_argument(
        "--due", type=int, default=1000, help="runs made due per pass (default 1000)"
    )
    parser.add_argument(
        "--idle-reps", type=int, default=None, help="timed passes with 0 due (default 7; quick 3)"
    )
    parser.add_argument(
        "--due-reps",
        type=int,
        default=None,
        help="timed passes with --due due (default 5; quick 2)",
    )
    parser.add_argument(
        "--bare-reps",
        type=int,
        default=None,
        help="INFO: passes with --due due after the snapshots lost their active lists, to "
        "isolate what parsing them costs (default 2; quick 1; 0 skips the bare INFO rows)",
    )
    parser.add_argument(
        "--bare-snapshots",
        action="store_true",
        help="worker snapshots list no active runs (default: each lists its host's runs, as "
        "a real worker's does)",
    )
    parser.add_argument(
        "--latency-tasks",
        type=int,
        default=None,
        help="stuck runs on the real worker (default 5; quick 3)",
    )
    parser.add_argument(
        "--heartbeat-timeout", type=float, default=2.0, help="latency part (default 2)"
    )
    parser.add_argument(
        "--check-interval", type=float, default=1.0, help="latency part (default 1)"
    )
    parser.add_argument(
        "--latency-wait",
        type=float,
        default=90.0,
        help="give up on undetected runs after this many seconds (default 90)",
    )
    parser.add_argument("--skip-passes", action="store_true", help="only the latency part")
    parser.add_argument("--skip-latency", action="store_true", help="only the pass part")
    parser.add_argument(
        "--no-breakdown", action="store_true", help="skip the per-call breakdown passes"
    )
    parser.add_argument("--quick", action="store_true", help="a smaller run (~40 s)")
    parser.add_argument(
        "--json", dest="json_path", default=None, help="also write raw results to this JSON file"
    )
    a = parser.parse_args(argv)

    def pick(value: int | None, normal: int, quick: int) -> int:
        return value if value is not None else (quick if a.quick else normal)

    opts = Options(
        tracked=pick(a.tracked, 100_000, 10_000),
        due=a.due,
        idle_reps=pick(a.idle_reps, 7, 3),
        due_reps=pick(a.due_reps, 5, 2),
        bare_reps=0 if a.bare_snapshots else pick(a.bare_reps, 2, 1),
        bare_snapshots=a.bare_snapshots,
        latency_tasks=pick(a.latency_tasks, 5, 3),
        heartbeat_timeout=a.heartbeat_timeout,
        check_interval=a.check_interval,
        latency_wait=a.latency_wait,
        skip_passes=a.skip_passes,
        skip_latency=a.skip_latency,
        breakdown=not a.no_breakdown,
        json_path=a.json_path,
    )
    needed = opts.due * (opts.due_reps + opts.bare_reps + (1 if opts.breakdown else 0))
    if not opts.skip_passes and needed > opts.tracked:
        parser.error(f"--tracked {opts.tracked} < {needed} runs needed for the due passes")
    if opts.due > 1000:
        parser.error("--due must be <= 1000 (run_pass handles at most 1000 due runs a pass)")
    if (
        min(opts.idle_reps, opts.due, opts.latency_tasks) < 1
        or min(opts.due_reps, opts.bare_reps) < 0
    ):
        parser.error("counts must be >= 1")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    install_signal_handlers()
    print(
        f"celery_watchdog monitor benchmark: {opts.tracked} tracked runs, {opts.due} due x "
        f"{opts.due_reps}; latency with {opts.latency_tasks} stuck runs  ({_load()})"
    )
    print(f"  logs in {opts.log_dir}")
    res: dict[str, Any] = {}
    started = time.monotonic()
    try:
        with PrivateRedis("monitor") as server:
            print(f"  private redis-server {server.binary} on {server.url}")
            if not opts.skip_passes:
                print("\nPasses (in this process; run_pass as the check task calls it)")
                res["passes"] = measure_passes(server, opts)
            if not opts.skip_latency:
                client = server.client()
                client.flushdb()  # a clean store and broker for the worker
                client.close()
                print("\nDetection latency (real prefork worker)")
                res["latency"] = measure_latency(server, opts)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        cleanup_all()
    ok = report(opts, res)
    print(f"\n  total {time.monotonic() - started:.0f} s  ({_load()})")
    if opts.json_path:
        Path(opts.json_path).write_text(json.dumps(res, indent=2, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

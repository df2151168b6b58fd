"""What does the watchdog cost a Celery worker? Plain Celery vs watchdog vs events (``-E``).

Method (DESIGN.md §3, "Measuring it honestly here"): wall-clock throughput of two identical
runs differs by up to ±15 % on a shared 2-core machine, so the headline number is worker CPU
per task, measured like this:

1. a private ``redis-server`` (never the system one) is the broker and the watchdog store;
2. every round starts one fresh ``celery worker -P prefork -c 2`` subprocess per
   configuration, IDLE (each consumes only its own idle queue), and warms it up there;
3. for each run, N no-op task messages are put on a fresh queue nobody consumes yet; the CPU
   time (user+system) of the worker's whole process tree is read from /proc; the worker is
   told to consume that queue (``add_consumer``); the benchmark waits until the queue is
   empty and the worker's own processed counter says N, then a fixed settle time (the same
   for every configuration, long enough for the watchdog's write-behind flush), and reads
   the CPU time again;
4. runs are interleaved A B C, C B A, A B C, ... so drift and "the second run is slower"
   effects hit every configuration alike.

CPU ratio = plain CPU per task / configuration CPU per task (what the throughput of a
CPU-bound worker fleet scales by); the wall-clock ratio is printed beside it, not instead.
A watchdog run counts only if the watchdog really recorded every task in Redis.

Also measured: ``WatchedTask.heartbeat()`` µs per call inside a real running task, and Redis
memory after 100k and 200k finished runs (``benchmarks.memory``).

Run ``python -m benchmarks.overhead --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery

from . import memory
from ._harness import PrivateRedis, Worker, cleanup_all, install_signal_handlers
from .benchapp import make_app

CONFIGS = ("plain", "watchdog", "events")
PREFIX = "wdbench"
TARGET_THROUGHPUT = 0.97
TARGET_HEARTBEAT_US = 5.0
IDLE_SAMPLE = 0.5  # seconds of idle worker CPU sampled before each run (reported only)


@dataclass
class RunResult:
    config: str
    index: int
    tasks: int
    cpu_s: float
    wall_s: float
    redis_cpu_s: float
    idle_cpu_rate: float  # worker tree CPU seconds per second while idle (after warm-up)
    recorded: int | None = None  # tasks the watchdog wrote to Redis during this run
    main_cpu_s: float = 0.0  # the part of cpu_s spent in the worker's main process
    start_delay_s: float = 0.0  # add_consumer -> first task taken (not in wall_s)
    load: float = 0.0  # 1-minute load average of the machine when the run ended
    side_cpu_s: float = 0.0  # the part of the pool's CPU in its non-main threads (a flusher)

    @property
    def cpu_us_per_task(self) -> float:
        return self.cpu_s / self.tasks * 1e6

    @property
    def tasks_per_s(self) -> float:
        return self.tasks / self.wall_s

    @property
    def main_us_per_task(self) -> float:
        return self.main_cpu_s / self.tasks * 1e6

    @property
    def redis_us_per_task(self) -> float:
        return self.redis_cpu_s / self.tasks * 1e6


@dataclass
class Options:
    tasks: int
    rounds: int
    configs: tuple[str, ...]
    concurrency: int
    warmup: int
    settle: float
    heartbeat_calls: int
    heartbeat_repeats: int
    memory_runs: int
    memory_path: str
    skip_memory: bool
    skip_heartbeat: bool
    json_path: str | None
    keep_workers: bool = False
    watchdog_conf: dict[str, Any] = field(default_factory=dict)
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="watchdog-bench-")))


def order(configs: tuple[str, ...], rounds: int) -> list[str]:
    """A B C, C B A, A B C, ...: every configuration sits at every position alike."""
    runs: list[str] = []
    for r in range(rounds):
        runs.extend(configs if r % 2 == 0 else tuple(reversed(configs)))
    return runs


# -- measuring one run -----------------------------------------------------------------------


def recorded_count(client: Any, prefix: str, name: str = "bench.noop") -> int:
    """Runs of ``name`` the watchdog counted as succeeded (its per-hour outcome counters)."""
    total = 0
    for key in client.scan_iter(match=f"{prefix}:s1h:{name}:*", count=1000):
        total += int(client.hget(key, "succeeded") or 0)
    return total


def publish(app: Celery, client: Any, queue: str, count: int) -> None:
    """Put ``count`` real ``bench.noop`` messages on ``queue``.

    One message is published by Celery itself (``apply_async`` with every publish hook of
    ``app``, to a staging queue nobody consumes); the ``count`` pushed to ``queue`` are that
    message with fresh task ids and delivery tags, in pipelines: ~1 ms per ``apply_async``
    here would otherwise cost more than a run.
    """
    staging = f"staging.{uuid.uuid4().hex[:8]}"
    template_id = str(uuid.uuid4())
    app.tasks["bench.noop"].apply_async(queue=staging, task_id=template_id)
    raw = client.lindex(staging, 0)
    client.delete(staging, f"_kombu.binding.{staging}", f"_kombu.binding_permanent.{staging}")
    template = json.loads(raw)
    if template["headers"]["id"] != template_id:
        raise RuntimeError(f"unexpected message layout: {raw!r}")
    template["properties"]["delivery_info"]["routing_key"] = queue
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        task_id = str(uuid.uuid4())
        template["headers"]["id"] = template["headers"]["root_id"] = task_id
        template["properties"]["correlation_id"] = task_id
        template["properties"]["delivery_tag"] = str(uuid.uuid4())
        pipe.lpush(queue, json.dumps(template))
        if i % 500 == 499:
            pipe.execute()
    pipe.execute()


def processed(app: Celery, nodename: str) -> int:
    stats = app.control.inspect(destination=[nodename], timeout=2.0).stats() or {}
    return int((stats.get(nodename) or {}).get("total", {}).get("bench.noop", 0))


def wait_drained(
    app: Celery, client: Any, queue: str, nodename: str, expected: int, timeout: float
) -> float:
    """Block until ``queue`` is empty and the worker has processed ``expected`` no-ops.

    The queue length is polled without touching the worker; its processed counter (one
    broadcast round trip) only once the queue is empty, so the poll costs the worker ~nothing.
    Returns the perf_counter time the condition was seen.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.llen(queue) == 0:
            if processed(app, nodename) >= expected:
                return time.perf_counter()
            time.sleep(0.02)
        else:
            time.sleep(0.05)
    raise RuntimeError(f"{nodename}: {queue} not drained ({expected} expected) in {timeout:.0f}s")


def wait_started(client: Any, queue: str, published: int, timeout: float = 10.0) -> float:
    """perf_counter time at which the worker took the first message of ``queue``."""
    deadline = time.monotonic() + timeout
    while client.llen(queue) >= published:
        if time.monotonic() > deadline:
            raise RuntimeError(f"nobody consumed {queue} within {timeout:.0f}s of add_consumer")
        time.sleep(0.002)
    return time.perf_counter()


def wait_recorded(client: Any, expected: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    count = recorded_count(client, PREFIX)
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.05)
        count = recorded_count(client, PREFIX)
    return count


@dataclass
class Subject:
    """The worker measured for one configuration, kept idle between its runs."""

    config: str
    worker: Worker
    idle_queue: str
    processed: int = 0  # no-ops this worker has run so far (its own stats counter)
    idle_cpu_rate: float = 0.0


def start_subjects(
    configs: tuple[str, ...], server: PrivateRedis, apps: dict[str, Celery], opts: Options
) -> dict[str, Subject]:
    """Start one worker per configuration, each consuming only its idle queue; warm them up.

    The workers boot in parallel (~2 s); every child runs a few tasks first (imports,
    tracers, the watchdog's threads and first flush), and idle CPU is sampled once for all.
    """
    subjects: dict[str, Subject] = {}
    for config in configs:
        tag = uuid.uuid4().hex[:6]
        worker = Worker(
            "watchdog" if config == "watchdog" else "plain",
            server.url,
            f"{config}-{tag}@bench",
            f"idle.{tag}",
            opts.log_dir,
            concurrency=opts.concurrency,
            events=config == "events",
            prefix=PREFIX,
            extra_env={"BENCH_WATCHDOG_CONF": json.dumps(opts.watchdog_conf)},
        )
        subjects[config] = Subject(config, worker.spawn(), f"idle.{tag}")
    client = server.client()
    try:
        for subject in subjects.values():
            subject.worker.wait_ready(apps["plain"])
        for config, subject in subjects.items():
            nodename = subject.worker.nodename
            before = recorded_count(client, PREFIX)
            publish(apps[_publisher(config)], client, subject.idle_queue, opts.warmup)
            wait_drained(apps["plain"], client, subject.idle_queue, nodename, opts.warmup, 60)
            subject.processed = opts.warmup
            if config == "watchdog" and wait_recorded(client, before + opts.warmup) < before + 1:
                raise RuntimeError(
                    f"{nodename}: the watchdog recorded nothing; see {subject.worker.log}"
                )
    finally:
        client.close()
    cpu0 = {c: s.worker.cpu() for c, s in subjects.items()}
    time.sleep(IDLE_SAMPLE)
    for config, subject in subjects.items():
        subject.idle_cpu_rate = (subject.worker.cpu() - cpu0[config]) / IDLE_SAMPLE
    return subjects


def stop_subjects(subjects: dict[str, Subject]) -> None:
    for subject in subjects.values():
        subject.worker.stop_soon()  # all at once, then wait for each
    for subject in subjects.values():
        subject.worker.stop()


def _publisher(config: str) -> str:
    # A project that installs the watchdog publishes with it installed too.
    return "watchdog" if config == "watchdog" else "plain"


def run_once(
    subject: Subject, index: int, server: PrivateRedis, apps: dict[str, Celery], opts: Options
) -> RunResult:
    client = server.client()
    control = apps["plain"]
    worker, nodename = subject.worker, subject.worker.nodename
    queue = f"bench.{index}.{uuid.uuid4().hex[:6]}"
    try:
        # Nobody consumes ``queue`` yet: the whole batch waits in Redis.
        publish(apps[_publisher(subject.config)], client, queue, opts.tasks)
        before = recorded_count(client, PREFIX)
        (main0, pool0), redis0 = worker.cpu_split(), server.cpu()
        side0 = worker.side_threads_cpu()
        asked = time.perf_counter()
        control.control.add_consumer(queue, destination=[nodename], reply=True, timeout=5.0)
        # Redis transport: the new queue joins the worker's BRPOP at its next cycle (up to
        # ~1 s later). Wall-clock throughput counts from the first task taken.
        t0 = wait_started(client, queue, opts.tasks)
        expected = subject.processed + opts.tasks
        t1 = wait_drained(
            control, client, queue, nodename, expected, timeout=max(120.0, opts.tasks / 20)
        )
        subject.processed = expected
        recorded = None
        if subject.config == "watchdog":
            # The write-behind flush must have written every run before the CPU is read, or
            # the benchmark would not charge the watchdog for its own writes.
            recorded = wait_recorded(client, before + opts.tasks) - before
        # The same settle time for every configuration (idle CPU counts alike).
        remaining = opts.settle - (time.perf_counter() - t1)
        if remaining > 0:
            time.sleep(remaining)
        (main1, pool1), redis1 = worker.cpu_split(), server.cpu()
        side1 = worker.side_threads_cpu()
        control.control.cancel_consumer(queue, destination=[nodename], reply=True, timeout=5.0)
    finally:
        client.delete(queue)
        client.close()
    return RunResult(
        subject.config,
        index,
        opts.tasks,
        (main1 + pool1) - (main0 + pool0),
        t1 - t0,
        redis1 - redis0,
        subject.idle_cpu_rate,
        recorded,
        main1 - main0,
        t0 - asked,
        os.getloadavg()[0],
        side1 - side0,
    )


# -- heartbeat() -----------------------------------------------------------------------------


def run_heartbeat(
    subject: Subject, server: PrivateRedis, apps: dict[str, Celery], opts: Options
) -> dict[str, Any]:
    """µs per ``heartbeat(processed=i, total=n)`` inside a real task on a watchdog worker."""
    task = apps["watchdog"].tasks["bench.heartbeat_loop"]
    client = server.client()
    results = []
    try:
        for _ in range(opts.heartbeat_repeats):
            res = task.apply_async((opts.heartbeat_calls,), queue=subject.idle_queue)
            results.append((res.id, res.get(timeout=300)))
        time.sleep(opts.settle)  # let the flusher write the last run's end
        stored = client.hgetall(f"{PREFIX}:task:{results[-1][0]}")
    finally:
        client.close()
    values = [r for _, r in results]

    def med(key: str) -> float:
        return statistics.median(v[key] for v in values)

    return {
        "calls": opts.heartbeat_calls,
        "repeats": opts.heartbeat_repeats,
        "heartbeat_us": med("heartbeat_us"),
        "empty_call_us": med("empty_call_us"),
        "bare_loop_us": med("bare_loop_us"),
        "all_heartbeat_us": [v["heartbeat_us"] for v in values],
        "stored_processed": stored.get("processed"),
        "stored_total": stored.get("total"),
        "stored_state": stored.get("state"),
    }


# -- report ----------------------------------------------------------------------------------


def summarize(runs: list[RunResult]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for config in dict.fromkeys(r.config for r in runs):
        mine = [r for r in runs if r.config == config]
        cpu = [r.cpu_us_per_task for r in mine]
        pool = [r.cpu_us_per_task - r.main_us_per_task for r in mine]
        tput = [r.tasks_per_s for r in mine]
        out[config] = {
            "runs": len(mine),
            "cpu_us_per_task": statistics.fmean(cpu),
            "cpu_us_best": min(cpu),
            "cpu_us_stdev": statistics.stdev(cpu) if len(cpu) > 1 else 0.0,
            "tasks_per_s": statistics.fmean(tput),
            "tasks_per_s_stdev": statistics.stdev(tput) if len(tput) > 1 else 0.0,
            "main_us_per_task": statistics.fmean(r.main_us_per_task for r in mine),
            "pool_us_per_task": statistics.fmean(pool),
            "pool_us_se": statistics.stdev(pool) / len(pool) ** 0.5 if len(pool) > 1 else 0.0,
            "side_us_per_task": statistics.fmean(r.side_cpu_s / r.tasks * 1e6 for r in mine),
            "redis_us_per_task": statistics.fmean(r.redis_us_per_task for r in mine),
            "idle_cpu_pct": statistics.fmean(r.idle_cpu_rate for r in mine) * 100,
        }
    return out


def paired_ratios(runs: list[RunResult], config: str) -> list[float]:
    """CPU ratio plain/config within each round (neighbouring runs): shows the noise."""
    ratios = []
    per_round = len({r.config for r in runs})
    for start in range(0, len(runs), per_round):
        chunk = {r.config: r for r in runs[start : start + per_round]}
        if "plain" in chunk and config in chunk:
            ratios.append(chunk["plain"].cpu_us_per_task / chunk[config].cpu_us_per_task)
    return ratios


def _spread(s: dict[str, Any]) -> str:
    return (
        f"(per-round median {s['round_median']:.3f}, s.e. {s['round_se']:.3f}; "
        f"best runs {s['best_ratio']:.3f})"
    )


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_runs(runs: list[RunResult]) -> None:
    print("\nPer run (in execution order):")
    print(
        f"  {'#':>3} {'config':<9} {'CPU µs/task':>12} {'main/pool':>11} {'tasks/s':>8} "
        f"{'wall s':>7} {'start s':>7} {'redis µs/task':>13} {'idle CPU %':>10} {'load':>5} "
        f"{'recorded':>9}"
    )
    for r in runs:
        rec = "" if r.recorded is None else str(r.recorded)
        split = f"{r.main_us_per_task:.0f}/{r.cpu_us_per_task - r.main_us_per_task:.0f}"
        print(
            f"  {r.index:>3} {r.config:<9} {r.cpu_us_per_task:>12.0f} {split:>11} "
            f"{r.tasks_per_s:>8.0f} {r.wall_s:>7.2f} {r.start_delay_s:>7.2f} "
            f"{r.redis_us_per_task:>13.0f} "
            f"{r.idle_cpu_rate * 100:>10.2f} {r.load:>5.2f} {rec:>9}"
        )


def report(
    opts: Options, runs: list[RunResult], hb: dict[str, Any] | None, mem: dict[str, Any] | None
) -> bool:
    summary = summarize(runs) if runs else {}
    print_runs(runs)
    print("\nPer configuration (mean ± stdev over runs):")
    print(
        f"  {'config':<9} {'runs':>4} {'CPU µs/task':>16} {'main/pool':>11} "
        f"{'tasks/s (wall)':>14} {'redis µs/task':>13} {'CPU ratio':>9} {'best-run':>8} "
        f"{'wall ratio':>10}  per-round CPU ratios"
    )
    plain = summary.get("plain")
    for config, s in summary.items():
        cpu_ratio = plain["cpu_us_per_task"] / s["cpu_us_per_task"] if plain else float("nan")
        wall_ratio = s["tasks_per_s"] / plain["tasks_per_s"] if plain else float("nan")
        s["cpu_ratio"], s["wall_ratio"] = cpu_ratio, wall_ratio
        # Contention only ever adds CPU time: the cheapest runs are a second, robust view.
        s["best_ratio"] = plain["cpu_us_best"] / s["cpu_us_best"] if plain else float("nan")
        per_round = paired_ratios(runs, config) if config != "plain" else []
        s["round_ratios"] = per_round
        s["round_median"] = statistics.median(per_round) if per_round else cpu_ratio
        s["round_se"] = (
            statistics.stdev(per_round) / len(per_round) ** 0.5 if len(per_round) > 1 else 0.0
        )
        rounds = " ".join(f"{x:.3f}" for x in per_round)
        split = f"{s['main_us_per_task']:.0f}/{s['cpu_us_per_task'] - s['main_us_per_task']:.0f}"
        print(
            f"  {config:<9} {s['runs']:>4} "
            f"{s['cpu_us_per_task']:>8.0f} ± {s['cpu_us_stdev']:>5.0f} {split:>11} "
            f"{s['tasks_per_s']:>6.0f} ± {s['tasks_per_s_stdev']:>5.0f} "
            f"{s['redis_us_per_task']:>13.0f} {cpu_ratio:>9.3f} {s['best_ratio']:>8.3f} "
            f"{wall_ratio:>10.3f}  {rounds}"
        )
    wd_runs = [r for r in runs if r.config == "watchdog"]
    if wd_runs:
        total = sum(r.tasks for r in wd_runs)
        rec = sum(r.recorded or 0 for r in wd_runs)
        print(
            f"\n  watchdog recorded {rec} of {total} bench tasks in Redis "
            f"(sum of {PREFIX}:s1h:bench.noop:* 'succeeded' deltas per run)"
        )
        if plain:
            # The watchdog's per-task work runs in the pool children; the main process (most
            # of a no-op task's CPU, and most of the spread) runs the same code in both.
            mine, base = summary["watchdog"], plain
            extra = mine["pool_us_per_task"] - base["pool_us_per_task"]
            se = (mine["pool_us_se"] ** 2 + base["pool_us_se"] ** 2) ** 0.5
            print(
                f"  pool children: plain {base['pool_us_per_task']:.0f} -> watchdog "
                f"{mine['pool_us_per_task']:.0f} µs/task ({extra:+.0f} µs, s.e. {se:.0f}); "
                f"in their other threads (the watchdog's flusher): {base['side_us_per_task']:.1f}"
                f" -> {mine['side_us_per_task']:.1f} µs/task"
            )

    checks: list[tuple[str, bool | None, str]] = []
    if plain and "watchdog" in summary:
        s = summary["watchdog"]
        all_recorded = all(r.recorded == r.tasks for r in wd_runs)
        checks.append(
            (
                f"throughput with watchdog >= {TARGET_THROUGHPUT} x plain (CPU per task)",
                s["cpu_ratio"] >= TARGET_THROUGHPUT and all_recorded,
                f"watchdog/plain CPU ratio {s['cpu_ratio']:.3f} {_spread(s)}, "
                f"wall {s['wall_ratio']:.3f}"
                + ("" if all_recorded else "  [NOT every task was recorded]"),
            )
        )
    if plain and "events" in summary:
        s = summary["events"]
        checks.append(
            (
                "(reference) Celery events -E, measured at ~0.7 x here",
                None,
                f"events/plain CPU ratio {s['cpu_ratio']:.3f} {_spread(s)}, "
                f"wall {s['wall_ratio']:.3f}",
            )
        )
    if hb:
        checks.append(
            (
                f"heartbeat() <= {TARGET_HEARTBEAT_US} µs per call (throttled)",
                hb["heartbeat_us"] <= TARGET_HEARTBEAT_US,
                f"{hb['heartbeat_us']:.2f} µs/call (empty call {hb['empty_call_us']:.2f}, "
                f"bare loop {hb['bare_loop_us']:.2f})",
            )
        )
    if mem:
        checks.extend(memory.checks(mem))

    print("\nSummary")
    if plain:
        parts = [
            f"{c}/plain CPU-per-task ratio {summary[c]['cpu_ratio']:.3f}, "
            f"wall {summary[c]['wall_ratio']:.3f}"
            for c in summary
            if c != "plain"
        ]
        print("  " + "; ".join(parts))
    ok = True
    for label, passed, detail in checks:
        mark = "INFO" if passed is None else verdict(passed)
        ok = ok and passed is not False
        print(f"  [{mark}] {label}: {detail}")

    if opts.json_path:
        doc = {
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
            "runs": [
                asdict(r) | {"cpu_us_per_task": r.cpu_us_per_task, "tasks_per_s": r.tasks_per_s}
                for r in runs
            ],
            "summary": summary,
            "heartbeat": hb,
            "memory": mem,
            "checks": [{"target": t, "pass": p, "detail": d} for t, p, d in checks],
        }
        Path(opts.json_path).write_text(json.dumps(doc, indent=2, default=str))
        print(f"\n  raw results written to {opts.json_path}")
    return ok


# -- command line ----------------------------------------------------------------------------


def parse(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.overhead",
        description=(
            "Worker CPU per no-op task for plain Celery, Celery with celery_watchdog and Celery "
            "with events (-E), on a real prefork worker and a private Redis; plus heartbeat() "
            "cost and Redis memory after 100k/200k finished runs. Defaults take ~4-5 minutes "
            "on 2 cores; --quick takes about one."
        ),
    )
    parser.add_argument(
        "--tasks",
        type=int,
        default=None,
        help="no-op tasks per run (default 1500; 500 with --quick)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="rounds; each runs every configuration once, alternately forward "
        "and reversed (default 8; 2 with --quick)",
    )
    parser.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help=f"comma-separated subset of {','.join(CONFIGS)} (default: all)",
    )
    parser.add_argument("--concurrency", type=int, default=2, help="prefork pool size (default 2)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=20,
        help="tasks each fresh worker runs on its idle queue first (default 20)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=1.0,
        help="seconds from the last task to the second CPU reading, in every configuration "
        "(>= 2x the watchdog flush interval; default 1.0)",
    )
    parser.add_argument(
        "--heartbeat-calls",
        type=int,
        default=None,
        help="heartbeat() calls per measuring task (default 200000; 50000 quick)",
    )
    parser.add_argument(
        "--heartbeat-repeats",
        type=int,
        default=3,
        help="measuring tasks run; the median is reported (default 3)",
    )
    parser.add_argument(
        "--memory-runs",
        type=int,
        default=None,
        help="finished runs per memory step; memory is read after 1x and 2x "
        "(default 100000; 20000 with --quick)",
    )
    parser.add_argument(
        "--memory-path",
        choices=("recorder", "worker"),
        default="recorder",
        help="recorder: real signal receivers + Recorder.flush + flush.lua in "
        "this process (~1 min); worker: through a prefork worker (slow)",
    )
    parser.add_argument("--skip-memory", action="store_true", help="do not measure memory")
    parser.add_argument("--skip-heartbeat", action="store_true", help="do not measure heartbeat()")
    parser.add_argument(
        "--keep-workers",
        action="store_true",
        help="keep one worker per configuration for all rounds (default: fresh workers "
        "every round, so no one process's luck favours a configuration throughout)",
    )
    parser.add_argument(
        "--watchdog-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a watchdog setting for the watchdog workers (VALUE parsed as JSON, else a "
        "string), e.g. watchdog_flush_interval=2; repeatable",
    )
    parser.add_argument("--quick", action="store_true", help="a ~1 minute smoke run")
    parser.add_argument(
        "--json", dest="json_path", default=None, help="also write raw results to this JSON file"
    )
    a = parser.parse_args(argv)
    configs = tuple(c.strip() for c in a.configs.split(",") if c.strip())
    bad = [c for c in configs if c not in CONFIGS]
    if bad or not configs:
        parser.error(f"--configs: unknown {bad}; choose from {CONFIGS}")
    if a.settle < 1.0:
        parser.error("--settle must be >= 1.0 (two watchdog flush intervals)")

    def pick(value: int | None, normal: int, quick: int) -> int:
        return value if value is not None else (quick if a.quick else normal)

    return Options(
        tasks=pick(a.tasks, 1500, 500),
        rounds=pick(a.rounds, 8, 2),
        configs=configs,
        concurrency=a.concurrency,
        warmup=a.warmup,
        settle=a.settle,
        heartbeat_calls=pick(a.heartbeat_calls, 200_000, 50_000),
        heartbeat_repeats=a.heartbeat_repeats,
        memory_runs=pick(a.memory_runs, 100_000, 20_000),
        memory_path=a.memory_path,
        skip_memory=a.skip_memory,
        skip_heartbeat=a.skip_heartbeat,
        json_path=a.json_path,
        keep_workers=a.keep_workers,
        watchdog_conf=dict(_setting(parser, text) for text in a.watchdog_setting),
    )


def _setting(parser: argparse.ArgumentParser, text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name.startswith("watchdog_"):
        parser.error(f"--watchdog-setting {text!r}: expected watchdog_NAME=VALUE")
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    install_signal_handlers()
    plan = order(opts.configs, opts.rounds)
    print(
        f"celery_watchdog overhead benchmark: {opts.tasks} no-op tasks per run, "
        f"prefork -c {opts.concurrency}, order {' '.join(plan)}"
    )
    print(f"  worker logs in {opts.log_dir}")
    if opts.watchdog_conf:
        print(f"  watchdog workers run with {opts.watchdog_conf}")
    runs: list[RunResult] = []
    hb = mem = None
    started = time.monotonic()
    try:
        with PrivateRedis() as server:
            print(f"  private redis-server {server.binary} on {server.url}")
            apps = {
                "plain": make_app("plain", server.url),
                "watchdog": make_app("watchdog", server.url, PREFIX),
            }
            subjects: dict[str, Subject] = {}
            per_round = len(opts.configs)
            for index, config in enumerate(plan, 1):
                if index == 1 or (not opts.keep_workers and index % per_round == 1 % per_round):
                    # Fresh worker processes every round: one process's luck (hash seed,
                    # memory layout) cannot favour one configuration in every round.
                    old = subjects
                    for subject in old.values():
                        subject.worker.stop_soon()  # they shut down while the new ones boot
                    subjects = start_subjects(opts.configs, server, apps, opts)
                    stop_subjects(old)
                r = run_once(subjects[config], index, server, apps, opts)
                runs.append(r)
                extra = "" if r.recorded is None else f", recorded {r.recorded}/{r.tasks}"
                print(
                    f"  run {index:>2}/{len(plan)} {config:<9} "
                    f"{r.cpu_us_per_task:7.0f} µs CPU/task "
                    f"{r.tasks_per_s:6.0f} tasks/s{extra}",
                    flush=True,
                )
            if not opts.skip_heartbeat:
                print("  measuring heartbeat() ...", flush=True)
                if "watchdog" not in subjects:
                    subjects.update(start_subjects(("watchdog",), server, apps, opts))
                hb = run_heartbeat(subjects["watchdog"], server, apps, opts)
                print(
                    f"  heartbeat(): {hb['heartbeat_us']:.2f} µs/call; stored processed="
                    f"{hb['stored_processed']} total={hb['stored_total']} "
                    f"state={hb['stored_state']}"
                )
            stop_subjects(subjects)
        if not opts.skip_memory:
            print(f"  measuring Redis memory ({opts.memory_path} path) ...", flush=True)
            mem = memory.measure(opts.memory_runs, path=opts.memory_path, log_dir=opts.log_dir)
            memory.print_table(mem)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping every process this benchmark started", file=sys.stderr)
        return 130
    finally:
        cleanup_all()
    ok = report(opts, runs, hb, mem)
    print(f"\n  total time {time.monotonic() - started:.0f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

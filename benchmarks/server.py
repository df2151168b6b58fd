"""How fast does the status server answer with a big store behind it? (issue 14, Performance)

Targets: the page's data (``GET /api/watchdog/page``) and ``GET /metrics`` each <= 150 ms,
``GET /api/tasks?limit=100`` <= 50 ms, with 100k finished runs, 1k running, 500 task names
and 50 queues (messages waiting in each) in the store. ``GET /api/watchdog/status`` is timed
beside them (no target).

Method (everything on a private ``redis-server``, never the system one):

1. **Fill** through the real write path, in this process, as ``benchmarks.memory`` does:
   - *finished runs*: for each run Celery's task tracer, built once per task and host as a
     worker builds it (so the real ``task_prerun``/``task_postrun``/``task_failure``
     receivers fire), and ``Recorder.flush`` -> ``store.runs.write_batch`` -> ``flush.lua``
     every 1000 runs. 500 task names, distinct ids, one run in 20 raises (a failure with its
     reason); ``watchdog_max_finished`` is raised so all of them stay listed (the default
     keeps 10k).
   - *running runs*: one ``RunHandle`` per run, ``Recorder.flush`` ("run" events, as
     ``benchmarks.monitor`` does), 2 per task name over 4 production-like worker names; one in
     ten has its progress moved 2 h back, so the judge finds stuck runs to show.
   - *worker snapshots*: ``store.workers.write_snapshot`` per host, listing its running runs
     in ``active`` as a real worker's does, its queues and per-name totals; rewritten before
     every round of requests (never during one) so the workers stay online.
   - *queues*: the 500 tasks are routed to 50 queues (``task_routes``); 20 messages are
     published to each with ``apply_async`` (so they carry the watchdog's publish stamp) and
     nobody consumes them.
   - one monitor pass (``run_pass``), so queue judgements, incidents and dead letters exist.
2. **Serve** ``celery_watchdog.http.app.create_app(app)`` with uvicorn in a thread of this
   process on a free loopback port (when ``create_app`` is not there yet, a Starlette app with
   the routes that exist is served instead, and said so).
3. **Time** each endpoint with an ``httpx`` client (keep-alive): warm-up requests, then
   rounds of one request per endpoint in turn; the median is judged, min and max shown. A
   missing endpoint (404) is skipped with a note. Every body is checked (status 200, and
   for ``/metrics`` the parsed families hold the 1k running runs), so a fast error cannot
   pass.

``python -m benchmarks.server --help`` for the options; ``--quick`` fills 10k finished runs
(targets not judged). Exit status 0 when every judged target passes.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ._harness import PrivateRedis, cleanup_all, install_signal_handlers

PREFIX = "wdsrv"
HOSTS = tuple(f"celery@reports-worker-5d8f7c9b6-{s}" for s in ("x2k4p", "q8w3m", "b7n2r", "t4z9c"))
CONCURRENCY = 8
CHUNK = 1000  # finished runs per recorder flush
FAIL_EVERY = 20  # one finished run in 20 raises
STUCK_EVERY = 10  # one running run in 10 has made no progress for 2 h
STALE = 7200.0
MESSAGES_PER_QUEUE = 20
SNAPSHOT_TTL = 60.0


@dataclass(frozen=True)
class Endpoint:
    label: str
    path: str
    target_ms: float | None


ENDPOINTS = (
    Endpoint("page data", "/api/watchdog/page", 150.0),
    Endpoint("metrics", "/metrics", 150.0),
    Endpoint("status", "/api/watchdog/status", None),
    Endpoint("tasks limit=100", "/api/tasks?limit=100", 50.0),
)


@dataclass(frozen=True)
class Size:
    finished: int
    running: int
    names: int
    queues: int

    def describe(self) -> str:
        return (
            f"{self.finished:,} finished runs, {self.running:,} running, {self.names} task "
            f"names, {self.queues} queues x {MESSAGES_PER_QUEUE} waiting messages"
        )


FULL = Size(finished=100_000, running=1000, names=500, queues=50)
QUICK = Size(finished=10_000, running=1000, names=500, queues=50)


# -- the app ---------------------------------------------------------------------------------


def task_name(i: int) -> str:
    return f"bench.srv.t{i:03d}"


def queue_name(j: int) -> str:
    return f"bench.q{j:02d}"


def make_app(url: str, size: Size) -> Any:
    from celery import Celery

    app = Celery("bench-server", set_as_current=False)
    routes = {task_name(i): {"queue": queue_name(i % size.queues)} for i in range(size.names)}
    app.conf.update(
        broker_url=url,
        result_backend=url,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        imports=["celery_watchdog"],
        watchdog_redis_url=url,
        watchdog_key_prefix=PREFIX,
        watchdog_max_finished=2 * size.finished,
        task_routes=routes,
    )
    for i in range(size.names):
        _register(app, task_name(i))
    return app


def _register(app: Any, name: str) -> None:
    @app.task(name=name, ignore_result=True, shared=False)
    def export(account_id: int, month: str, fail: bool = False) -> str:
        if fail:
            raise ValueError(f"account {account_id}: no invoice for {month}")
        return "ok"


# -- filling the store through the real write path --------------------------------------------


def fill_finished(app: Any, wd: Any, size: Size, progress: Any) -> float:
    """``size.finished`` runs through Celery's tracer, its receivers and ``Recorder.flush``."""
    from celery.app.trace import build_tracer

    tasks = [app.tasks[task_name(i)] for i in range(size.names)]
    hosts_tracers = {
        host: [build_tracer(t.name, t, hostname=host, app=app) for t in tasks] for host in HOSTS
    }
    recorder = wd.recorder
    started = time.perf_counter()
    for start in range(0, size.finished, CHUNK):
        for i in range(start, min(size.finished, start + CHUNK)):
            n = i % size.names
            host = HOSTS[i % len(HOSTS)]
            task, tracer = tasks[n], hosts_tracers[host][n]
            task_id = str(uuid.uuid4())
            # Every name fails one run in FAIL_EVERY (a failure rate, not failing names).
            args, kwargs = (
                (i, "2024-05"),
                {"fail": (i // size.names) % FAIL_EVERY == n % FAIL_EVERY},
            )
            delivery = {"exchange": "", "routing_key": queue_name(n % size.queues)}
            tracer(task_id, args, kwargs, {
                "id": task_id, "task": task.name, "args": args, "kwargs": kwargs,
                "hostname": host, "delivery_info": delivery, "root_id": task_id, "retries": 0,
            })  # fmt: skip
        if not recorder.flush():
            raise RuntimeError("the recorder could not write to Redis")
        progress(min(size.finished, start + CHUNK))
    return time.perf_counter() - started


class Running:
    """``size.running`` runs in progress, written as a worker's recorder writes them."""

    def __init__(self, app: Any, wd: Any, size: Size) -> None:
        self.app, self.wd, self.size = app, wd, size
        self.runs: list[tuple[str, str, str, int, float]] = []  # id, name, host, pid, started

    def fill(self) -> float:
        from celery_watchdog.recording.recorder import RunHandle, monotonic

        recorder = self.wd.recorder
        started = time.perf_counter()
        handles = []
        for i in range(self.size.running):
            n = i % self.size.names
            task = self.app.tasks[task_name(n)]
            task_id = str(uuid.uuid4())
            request = SimpleNamespace(
                args=(i, "2024-05"), kwargs={}, eta=None, expires=None, retries=0,
                delivery_info={"exchange": "", "routing_key": queue_name(n % self.size.queues)},
                root_id=task_id, parent_id=None,
            )  # fmt: skip
            host = HOSTS[i % len(HOSTS)]
            pid = 2000 + (i // len(HOSTS)) % CONCURRENCY
            handle = RunHandle(task_id, task.name, host, False, self.wd.policy(task), pid,
                               request, task)  # fmt: skip
            if i % STUCK_EVERY == 3:
                old = monotonic() - STALE
                handle.started = handle.last_progress = handle.last_heartbeat = old
            recorder.start_run(handle)
            handles.append(handle)
            self.runs.append((task_id, task.name, host, pid, handle.started))
        if not recorder.flush():
            raise RuntimeError("the recorder could not write to Redis")
        for handle in handles:
            recorder.forget(handle)  # written; the benchmark's recorder need not carry them
        return time.perf_counter() - started

    def snapshots(self, store: Any) -> None:
        """One snapshot per host, as its main process writes it (fresh: the hosts are online)."""
        from celery_watchdog.recording.recorder import monotonic

        now = monotonic()
        active: dict[str, list[dict[str, Any]]] = {h: [] for h in HOSTS}
        for task_id, name, host, pid, started in self.runs:
            active[host].append({
                "id": task_id, "name": name, "pid": pid, "started_age": now - started,
                "cpu": 12.5, "cpu_pct": 0.0, "args": "(1, '2024-05')", "kwargs": "{}",
            })  # fmt: skip
        per_host = self.size.queues // len(HOSTS) + 1
        for h, host in enumerate(HOSTS):
            # Workers consume some of the queues: the others are shown without consumers.
            queues = [queue_name(j) for j in range(h * per_host, (h + 1) * per_host)
                      if j < self.size.queues - 5]  # fmt: skip
            snapshot = {
                "pid": 4000 + h, "pool": "prefork", "concurrency": CONCURRENCY,
                "queues": queues, "processes": list(range(2000, 2000 + CONCURRENCY)),
                "active": active[host],
                "total": {task_name(i): 200 for i in range(self.size.names)},
                "registered": [task_name(i) for i in range(self.size.names)],
                "software": {"celery": "5.5.0", "python": "3.11"},
                "watchdog": {"dropped": 0, "errors": 0, "blind": None},
            }  # fmt: skip
            store.workers.write_snapshot(host, snapshot, SNAPSHOT_TTL, online=True)


def publish_waiting(app: Any, size: Size) -> None:
    """Messages nobody consumes, ``MESSAGES_PER_QUEUE`` in each of the queues."""
    with app.producer_or_acquire() as producer:
        for j in range(size.queues):
            task = app.tasks[task_name(j)]  # routed to queue j
            for k in range(MESSAGES_PER_QUEUE):
                task.apply_async((k, "2024-05"), producer=producer)


# -- serving ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def asgi_app(app: Any) -> tuple[Any, str]:
    """A's ``create_app``; until it exists, the routes of this package that do."""
    try:
        from celery_watchdog.http.app import create_app
    except ImportError:
        pass
    else:
        return create_app(app), "celery_watchdog.http.app.create_app(app)"
    from starlette.applications import Starlette

    from celery_watchdog.http.context import ServerContext
    from celery_watchdog.http.metrics import metrics_routes
    from celery_watchdog.runtime import for_app

    routes = list(metrics_routes())
    try:
        from celery_watchdog.http.page import page_routes
    except ImportError:
        pass
    else:
        routes += page_routes()
    starlette = Starlette(routes=routes)
    wd = for_app(app)
    assert wd is not None
    starlette.state.ctx = ServerContext(app=app, wd=wd)
    return starlette, "Starlette(metrics_routes() + page_routes()) [create_app missing]"


@contextmanager
def serving(asgi: Any) -> Iterator[str]:
    """uvicorn in a daemon thread on a free loopback port; yields the base URL."""
    import uvicorn

    port = _free_port()
    config = uvicorn.Config(asgi, host="127.0.0.1", port=port, log_level="warning",
                            access_log=False, lifespan="off")  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


# -- timing ----------------------------------------------------------------------------------


def _check(endpoint: Endpoint, body: bytes, size: Size) -> str | None:
    """What is wrong with an answer, or None: a fast error must not pass for a fast answer."""
    if endpoint.path == "/metrics":
        from prometheus_client.parser import text_string_to_metric_families

        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        runs = families.get("celery_watchdog_runs")
        running = sum(s.value for s in runs.samples) if runs else 0
        if running != size.running:
            return f"celery_watchdog_runs sums to {running:.0f}, not {size.running}"
        errors = families.get("celery_watchdog_scrape_errors")
        failed = [s.labels["part"] for s in errors.samples if s.value] if errors else ["?"]
        return f"scrape errors in {failed}" if failed else None
    doc = json.loads(body)
    if endpoint.path.startswith("/api/tasks") and len(doc) != 100:
        return f"{len(doc)} tasks, not 100"
    return None


def time_endpoints(
    base: str, running: Running, store: Any, size: Size, rounds: int, warmup: int
) -> dict[str, Any]:
    import httpx

    results: dict[str, Any] = {}
    with httpx.Client(base_url=base, timeout=60.0) as client:
        live = []
        for ep in ENDPOINTS:
            r = client.get(ep.path)
            if r.status_code == 404:
                results[ep.label] = {"skipped": f"{ep.path} answers 404 (not there yet)"}
                continue
            if r.status_code != 200:
                raise RuntimeError(f"{ep.path} answered {r.status_code}: {r.text[:300]}")
            problem = _check(ep, r.content, size)
            if problem:
                raise RuntimeError(f"{ep.path}: {problem}")
            live.append(ep)
            results[ep.label] = {"ms": [], "bytes": len(r.content)}
        for _ in range(warmup):
            for ep in live:
                client.get(ep.path)
        for _ in range(rounds):
            running.snapshots(store)  # keep the workers online; never inside a timed request
            for ep in live:
                t0 = time.perf_counter()
                r = client.get(ep.path)
                took = (time.perf_counter() - t0) * 1000
                if r.status_code != 200:
                    raise RuntimeError(f"{ep.path} answered {r.status_code}")
                results[ep.label]["ms"].append(took)
    for r in results.values():
        if "ms" in r:
            r["median"] = statistics.median(r["ms"])
            r["min"], r["max"] = min(r["ms"]), max(r["ms"])
    return results


def profile(app: Any, wd: Any, store: Any, out_dir: Path) -> dict[str, str]:
    """Where each endpoint's time goes: its document builder, called here (the request's
    thread is uvicorn's), three times under pyinstrument; one text report per endpoint."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise SystemExit("--profile needs pyinstrument: pip install pyinstrument") from None
    from celery_watchdog.http.context import ServerContext
    from celery_watchdog.http.metrics import gather
    from celery_watchdog.views.documents import tasks_doc
    from celery_watchdog.views.status import status_doc

    ctx = ServerContext(app=app, wd=wd)
    builders = {
        "metrics": lambda: gather(ctx),
        "status": lambda: status_doc(store, wd),
        "tasks limit=100": lambda: tasks_doc(store, wd, limit=100),
    }
    try:
        from celery_watchdog.views.page import page_doc
    except ImportError:
        pass
    else:
        builders["page data"] = lambda: page_doc(store, wd, store.now())
    out_dir.mkdir(parents=True, exist_ok=True)
    reports = {}
    for label, build in builders.items():
        build()  # warm
        profiler = Profiler(interval=0.0005)
        with profiler:
            for _ in range(3):
                build()
        path = out_dir / f"{label.split()[0]}.txt"
        path.write_text(profiler.output_text(unicode=False, color=False))
        reports[label] = str(path)
    return reports


def _ping_ms(store: Any) -> float:
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        store.r.ping()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


# -- the whole run ---------------------------------------------------------------------------


def measure(
    size: Size, rounds: int, warmup: int, profile_dir: Path | None = None
) -> dict[str, Any]:
    import celery_watchdog
    from celery_watchdog.monitor.check import run_pass

    # The monitor pass's alerts (the "log" channel) go to a file, as a deployment's would.
    log_dir = Path(tempfile.mkdtemp(prefix="watchdog-bench-server-"))
    watchdog_log = logging.getLogger("celery_watchdog")
    watchdog_log.addHandler(logging.FileHandler(log_dir / "watchdog.log"))
    watchdog_log.propagate = False
    with PrivateRedis("server") as server:
        app = make_app(server.url, size)
        wd = celery_watchdog.install(app)
        assert wd is not None
        store = wd.store()
        print(f"filling: {size.describe()}", flush=True)

        def progress(done: int) -> None:
            if done % 20_000 == 0 or done == size.finished:
                print(f"    {done:,} finished runs recorded", flush=True)

        fill_s = fill_finished(app, wd, size, progress)
        running = Running(app, wd, size)
        running_s = running.fill()
        running.snapshots(store)
        publish_waiting(app, size)
        run_pass(wd, store)  # queue judgements, incidents, dead letters, as in production
        client = server.client()
        counts = {
            "finished": int(client.zcard(f"{PREFIX}:finished")),
            "running": int(client.zcard(f"{PREFIX}:running")),
            "names": int(client.zcard(f"{PREFIX}:names")),
            "queues": size.queues,
            "waiting": sum(int(client.llen(queue_name(j))) for j in range(size.queues)),
            "dead_letters": store.dlq.count(),
            "incidents": store.incidents.active_count(),
            "used_memory_mb": int(client.info("memory")["used_memory"]) / 1e6,
        }
        client.close()
        print(
            f"  filled in {fill_s:.0f} s (+ {running_s:.1f} s running): {counts['finished']:,} "
            f"finished, {counts['running']:,} running, {counts['names']} names, "
            f"{counts['waiting']:,} messages waiting, {counts['dead_letters']} dead letters, "
            f"{counts['incidents']} open incidents, Redis {counts['used_memory_mb']:.0f} MB; "
            f"the watchdog's log: {log_dir / 'watchdog.log'}",
            flush=True,
        )
        asgi, served = asgi_app(app)
        print(f"  serving {served} with uvicorn", flush=True)
        with serving(asgi) as base:
            results = time_endpoints(base, running, store, size, rounds, warmup)
        ping = _ping_ms(store)
        profiles = {}
        if profile_dir is not None:
            running.snapshots(store)
            profiles = profile(app, wd, store, profile_dir)
        app.close()
    return {"size": size.__dict__, "counts": counts, "served": served, "ping_ms": ping,
            "rounds": rounds, "results": results, "profiles": profiles}  # fmt: skip


def checks(run: dict[str, Any], judged: bool) -> list[tuple[str, bool | None, str]]:
    out: list[tuple[str, bool | None, str]] = []
    for ep in ENDPOINTS:
        r = run["results"].get(ep.label, {})
        if "skipped" in r:
            out.append((f"GET {ep.path}", None, f"skipped: {r['skipped']}"))
            continue
        figures = (f"median {r['median']:.1f} ms (min {r['min']:.1f}, max {r['max']:.1f}), "
                   f"{r['bytes'] / 1000:.0f} kB")  # fmt: skip
        if ep.target_ms is None:
            out.append((f"GET {ep.path} (no target)", None, figures))
            continue
        ratio = r["median"] / ep.target_ms
        passed: bool | None = r["median"] <= ep.target_ms if judged else None
        label = f"GET {ep.path} <= {ep.target_ms:.0f} ms" + ("" if judged else " (not judged)")
        out.append((label, passed, f"{figures}; {ratio:.2f}x the target"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.server",
        description="Response times of the status server with a big store behind it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="10k finished runs instead of 100k (targets not judged)",
    )
    parser.add_argument("--rounds", type=int, default=9, help="timed requests per endpoint")
    parser.add_argument("--warmup", type=int, default=2, help="untimed requests per endpoint")
    parser.add_argument("--json", type=Path, help="also write every raw number here")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR",
        help="then profile each endpoint's document builder (pyinstrument), reports in DIR",
    )  # fmt: skip
    a = parser.parse_args(argv)
    install_signal_handlers()
    size = QUICK if a.quick else FULL
    try:
        run = measure(size, a.rounds, a.warmup, a.profile)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        cleanup_all()
    print(
        f"\nStatus server, {run['size']['finished']:,} finished runs ({run['rounds']} timed "
        f"requests each, warm; Redis PING {run['ping_ms']:.2f} ms)"
    )
    ok = True
    for label, passed, detail in checks(run, judged=not a.quick):
        ok = ok and passed is not False
        print(f"  [{'INFO' if passed is None else 'PASS' if passed else 'FAIL'}] {label}: {detail}")
    for label, path in run["profiles"].items():
        print(f"  profile of {label}: {path}")
    if a.json:
        a.json.write_text(json.dumps(run, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

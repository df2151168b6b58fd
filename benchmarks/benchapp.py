"""The Celery app that the benchmark's ``celery -A benchmarks.benchapp worker`` runs.

Configured only from the environment, so one module serves every configuration:

- ``BENCH_REDIS_URL``: broker, result backend and (watchdog mode) the watchdog's store;
- ``BENCH_MODE``: ``plain`` | ``events`` | ``watchdog``. Only ``watchdog`` lists
  ``celery_watchdog`` in ``imports``; the other modes never import it, in this module or
  anywhere the worker loads, so "plain" really is plain Celery. ``events`` is the plain app;
  the benchmark adds ``-E`` to the worker's command line.
- ``BENCH_PREFIX``: the watchdog key prefix (default ``watchdog``);
- ``BENCH_WATCHDOG_CONF``: extra ``watchdog_*`` settings as a JSON object (watchdog mode), to
  measure a tuning (``--watchdog-setting`` of ``benchmarks.overhead``);
- ``BENCH_PROFILE``: a directory; each worker process (main and every pool child) then runs
  under cProfile and writes ``<role>-<pid>.prof`` there when it exits. A diagnostic: the
  profiler's own overhead distorts the CPU figures, never combine it with a measurement.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from celery import Celery

MODES = ("plain", "watchdog", "events")
MODE = os.environ.get("BENCH_MODE", "plain")
if MODE not in MODES:
    raise RuntimeError(f"BENCH_MODE={MODE!r} is not one of {MODES}")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6399/0")
PREFIX = os.environ.get("BENCH_PREFIX", "watchdog")
# Twenty task names for the memory benchmark (records per name are bounded separately).
MEMORY_TASKS = tuple(f"bench.mem.t{i:02d}" for i in range(20))


def make_app(mode: str, redis_url: str, prefix: str = "watchdog", current: bool = False) -> Celery:
    """The benchmark app; the benchmark process builds publisher apps with it too."""
    app = Celery(f"bench-{mode}", set_as_current=current)
    app.conf.update(
        broker_url=redis_url,
        result_backend=redis_url,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        result_expires=600,
    )
    if mode == "watchdog":
        app.conf.update(
            imports=["celery_watchdog"],
            watchdog_redis_url=redis_url,
            watchdog_key_prefix=prefix,
        )
        app.conf.update(json.loads(os.environ.get("BENCH_WATCHDOG_CONF") or "{}"))
    register_tasks(app, with_watched=mode == "watchdog")
    return app


def _empty(processed: int | None = None, total: int | None = None) -> None:
    return None


def _register_memory_task(app: Celery, name: str) -> None:
    @app.task(name=name, ignore_result=True, shared=False)
    def mem_task(account_id: int, month: str, notify: bool = False) -> str:
        return "ok"


def register_tasks(app: Celery, with_watched: bool) -> None:
    @app.task(name="bench.noop", ignore_result=True, shared=False)
    def noop() -> None:
        return None

    for name in MEMORY_TASKS:
        _register_memory_task(app, name)

    if not with_watched:
        return

    from celery_watchdog import WatchedTask  # only ever imported in watchdog mode

    @app.task(name="bench.heartbeat_loop", base=WatchedTask, bind=True, shared=False)
    def heartbeat_loop(self: Any, calls: int) -> dict[str, float]:
        """µs per ``heartbeat()`` call inside a real run, beside an empty call and a bare loop."""
        perf = time.perf_counter
        t0 = perf()
        for i in range(calls):
            self.heartbeat(processed=i, total=calls)
        t1 = perf()
        for i in range(calls):
            _empty(processed=i, total=calls)
        t2 = perf()
        for _i in range(calls):
            pass
        t3 = perf()
        # A throttled heartbeat writes nothing itself; the flusher sends the latest state.
        return {
            "heartbeat_us": (t1 - t0) / calls * 1e6,
            "empty_call_us": (t2 - t1) / calls * 1e6,
            "bare_loop_us": (t3 - t2) / calls * 1e6,
            "calls": calls,
        }


def _profile_processes(directory: str) -> None:
    import cProfile

    from celery import signals

    profiler = cProfile.Profile()

    def start(**_: Any) -> None:
        profiler.enable()

    def dump(role: str) -> None:
        profiler.disable()
        profiler.dump_stats(os.path.join(directory, f"{role}-{os.getpid()}.prof"))

    signals.worker_ready.connect(start, weak=False)
    signals.worker_shutdown.connect(lambda **_: dump("main"), weak=False)
    signals.worker_process_init.connect(start, weak=False)
    signals.worker_process_shutdown.connect(lambda **_: dump("child"), weak=False)


if os.environ.get("BENCH_PROFILE"):
    _profile_processes(os.environ["BENCH_PROFILE"])

# The worker's app is the current app, as a project's ``app = Celery("proj")`` is.
app = make_app(MODE, REDIS_URL, PREFIX, current=True)

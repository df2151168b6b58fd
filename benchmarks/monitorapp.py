"""The Celery app of ``benchmarks.monitor``: ``celery -A benchmarks.monitorapp worker``.

Configured from the environment (so the benchmark process and its worker subprocess build
the same app):

- ``BENCH_REDIS_URL``: broker, result backend and the watchdog's store;
- ``BENCH_PREFIX``: the watchdog key prefix;
- ``BENCH_WATCHDOG_CONF``: ``watchdog_*`` settings as a JSON object.

Tasks: twenty ``WatchedTask`` names (the tracked runs of the pass benchmark are recorded
under them; they never run on a worker) and ``bench.mon.hang``, which makes progress once,
stamps that moment with the Redis server clock and then blocks without heartbeats.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis
from celery import Celery

from celery_watchdog import WatchedTask

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6399/0")
PREFIX = os.environ.get("BENCH_PREFIX", "wdmon")
TRACKED_TASKS = tuple(f"bench.mon.t{i:02d}" for i in range(20))
HANG_TASK = "bench.mon.hang"


def stamp_key(prefix: str, task_id: str) -> str:
    """Where ``bench.mon.hang`` writes the server time of its last heartbeat."""
    return f"bench:{prefix}:hb:{task_id}"


def make_app(
    redis_url: str, prefix: str, conf: dict[str, Any] | None = None, current: bool = False
) -> Celery:
    app = Celery("bench-monitor", set_as_current=current)
    app.conf.update(
        broker_url=redis_url,
        result_backend=redis_url,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        result_expires=600,
        imports=["celery_watchdog"],
        watchdog_redis_url=redis_url,
        watchdog_key_prefix=prefix,
    )
    app.conf.update(conf or {})
    _register(app, redis_url, prefix)
    return app


def _register_tracked(app: Celery, name: str) -> None:
    @app.task(name=name, base=WatchedTask, bind=True, shared=False, ignore_result=True)
    def tracked(self: Any, account_id: int, month: str) -> None:
        return None


def _register(app: Celery, redis_url: str, prefix: str) -> None:
    for name in TRACKED_TASKS:
        _register_tracked(app, name)

    @app.task(name=HANG_TASK, base=WatchedTask, bind=True, shared=False, ignore_result=True)
    def hang(self: Any, warmup: float = 0.3) -> None:
        """Progress once, then block with no heartbeat (a vendor call without a timeout)."""
        time.sleep(warmup)
        self.heartbeat(processed=1, total=2)
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        sec, usec = client.time()  # the one clock: the Redis server's
        client.set(stamp_key(prefix, self.request.id), f"{sec + usec / 1e6:.6f}", ex=3600)
        client.close()
        time.sleep(3600)


# The worker's app is the current app, as a project's ``app = Celery("proj")`` is.
app = make_app(
    REDIS_URL, PREFIX, json.loads(os.environ.get("BENCH_WATCHDOG_CONF") or "{}"), current=True
)

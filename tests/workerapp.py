"""The Celery app that ``celery -A tests.workerapp worker`` subprocesses run.

A subprocess worker reads its configuration from the environment (set by
``tests.helpers.PreforkWorker``):

- ``WATCHDOG_TEST_REDIS_URL``: broker, result backend and watchdog store;
- ``WATCHDOG_TEST_PREFIX``: the watchdog key prefix, unique per worker;
- ``WATCHDOG_TEST_CONF``: any further settings, as a JSON object.

The test process builds a *client* app with the same tasks via ``create_app`` so that a test
can write ``worker.task("add").delay(2, 3)`` against the worker's Redis.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from collections.abc import Mapping
from typing import Any

import redis
from celery import Celery, Task

from celery_watchdog import WatchedTask

TASK_PREFIX = "tests.workerapp."


def create_app(redis_url: str, prefix: str, conf: Mapping[str, Any] | None = None) -> Celery:
    """An app on ``redis_url`` with every test task registered under ``tests.workerapp.*``."""
    app = Celery("workerapp", set_as_current=False)
    app.conf.update(
        broker_url=redis_url,
        result_backend=redis_url,
        watchdog_redis_url=redis_url,
        watchdog_key_prefix=prefix,
        imports=["celery_watchdog"],
        # Tests wait on results and on state; keep retries from hiding a dead Redis for minutes.
        broker_connection_retry_on_startup=True,
        result_expires=600,
    )
    app.conf.update(dict(conf or {}))
    _register_tasks(app)
    return app


def _register_tasks(app: Celery) -> None:
    # Explicit names: the tasks are defined inside a function, and the client app and the
    # worker app must agree on names whatever module path imported this file.
    # shared=False: otherwise Celery adds every task defined here to *all* apps finalized
    # later in the process (make_app ones included), under names that then clash.
    def name(short: str) -> str:
        return TASK_PREFIX + short

    @app.task(name=name("add"), shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name=name("noop"), shared=False)
    def noop() -> None:
        return None

    @app.task(name=name("sleep"), shared=False)
    def sleep(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    @app.task(name=name("hang_forever"), shared=False)
    def hang_forever() -> None:
        # Short sleeps in a loop, so a SIGTERM/revoke lands between them like in real code.
        while True:
            time.sleep(0.1)

    @app.task(name=name("crash_child"), shared=False)
    def crash_child() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    @app.task(name=name("fail"), shared=False)
    def fail(msg: str) -> None:
        raise ValueError(msg)

    @app.task(name=name("progress"), shared=False, base=WatchedTask, bind=True)
    def progress(self: WatchedTask, n: int, delay: float = 0.0) -> int:
        with self.step("work"):
            for i in range(1, n + 1):
                if delay:
                    time.sleep(delay)
                self.heartbeat(processed=i, total=n)
        return n

    @app.task(name=name("hard_limited"), shared=False, time_limit=1)
    def hard_limited() -> None:
        time.sleep(5)

    @app.task(name=name("how_recorded"), shared=False, bind=True)
    def how_recorded(self: Task, queue_note: str = "") -> dict[str, bool]:
        """How this child records runs: through its wrapped tracer, or Celery's signals."""
        from celery import signals

        from celery_watchdog.recording import signals as ours

        prerun = [r for _, r in signals.task_prerun.receivers]
        return {
            "wrapped": bool(getattr(self.__trace__, "_celery_watchdog", False)),
            "receiver": ours.on_task_prerun in prerun,
        }

    @app.task(name=name("with_secret"), shared=False)
    def with_secret(password: str, account_id: int) -> int:
        return account_id

    # -- for the monitor: runs that get stuck in different ways (heartbeat_timeout 2 s) ----

    watched = {"base": WatchedTask, "bind": True, "shared": False, "heartbeat_timeout": 2}

    @app.task(name=name("vendor_read"), **watched)
    def vendor_read(self: WatchedTask, port: int, account_id: int = 0) -> bytes:
        self.heartbeat()
        sock = socket.create_connection(("127.0.0.1", port))
        return sock.recv(1024)  # the server never answers, and there is no timeout

    @app.task(name=name("spin"), **watched)
    def spin(self: WatchedTask) -> None:
        self.heartbeat()
        n = 0
        while True:
            n += 1

    @app.task(name=name("stall"), **watched)
    def stall(self: WatchedTask) -> None:
        while True:  # heartbeats keep coming, the counter never moves
            self.heartbeat(processed=1, total=10)
            time.sleep(0.1)

    @app.task(name=name("regex"), **watched)
    def regex(self: WatchedTask) -> None:
        self.heartbeat()
        # Catastrophic backtracking: C code holding the GIL for a very long time.
        re.match(r"(a+)+$", "a" * 64 + "b")

    @app.task(name=name("crash_once"), shared=False, idempotent=True)
    def crash_once(key: str) -> str:
        client = redis.Redis.from_url(app.conf.broker_url)
        if client.set(key, "1", nx=True):
            os.kill(os.getpid(), signal.SIGKILL)
        return "second time lucky"


    # -- a bad day: hostile values a task controls, heartbeats through an outage -------------

    @app.task(name=name("beat_for"), base=WatchedTask, bind=True, shared=False,
              heartbeat_timeout=3)  # fmt: skip
    def beat_for(self: WatchedTask, seconds: float) -> int:
        """Healthy: moves its counter every 0.2 s for ``seconds``."""
        n = int(seconds / 0.2)
        for i in range(1, n + 1):
            time.sleep(0.2)
            self.heartbeat(processed=i, total=n)
        return n

    @app.task(name=name("sleep_watched"), base=WatchedTask, bind=True, shared=False,
              heartbeat_timeout=2)  # fmt: skip
    def sleep_watched(self: WatchedTask) -> None:
        """Stuck: one heartbeat, then nothing, forever."""
        self.heartbeat()
        while True:
            time.sleep(0.1)

    @app.task(name=name("hostile_numbers"), base=WatchedTask, bind=True, shared=False,
              heartbeat_timeout=30)  # fmt: skip
    def hostile_numbers(self: WatchedTask, seconds: float) -> str:
        values = [float("nan"), float("inf"), -float("inf"), 10**400, -5, "7", True, 2.5]
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline:
            value = values[i % len(values)]
            self.heartbeat(processed=value, total=values[(i + 1) % len(values)], rate=value)
            i += 1
            time.sleep(0.05)
        return "done"

    @app.task(name=name("hostile_text"), base=WatchedTask, bind=True, shared=False,
              heartbeat_timeout=2)  # fmt: skip
    def hostile_text(self: WatchedTask, dsn: str, seconds: float, fail: bool = True) -> None:
        """Surrogates, terminal escapes and secrets in a step, a detail and its error."""
        self.heartbeat(step="parse r\udce9sum\u00e9 \x1b[2J\x1b]0;pwned\x07\r", processed=1,
                       total=2, note="\udcff\x1b[31m")  # fmt: skip
        with self.step(f"connect {dsn} token sk_live_abcdefghijklmnopqrstuvwx"):
            time.sleep(seconds)
        if fail:
            raise ValueError(f"cannot connect to {dsn}: bad r\udce9ply \x1b[2J\r"
                             "Authorization: Bearer abcdefghijklmnop0123456789")

    @app.task(name=name("str_raises"), shared=False)
    def str_raises() -> None:
        class Odd(Exception):
            def __str__(self) -> str:
                raise RuntimeError("no text for you")

        raise Odd()

    @app.task(name=name("idem_sleep"), shared=False, idempotent=True)
    def idem_sleep(key: str, seconds: float) -> str:
        """Idempotent: the first run sleeps (and is killed with its worker); the next returns."""
        client = redis.Redis.from_url(app.conf.broker_url)
        if client.set(key, "1", nx=True):
            time.sleep(seconds)
            return "first run"
        return "ran again"


    # -- poison: messages that come back (delivery caps) ------------------------------------

    @app.task(name=name("crash_loop"), shared=False)
    def crash_loop(key: str, how: str = "exit") -> None:
        """Counts its runs in ``key``, then takes its child down (a native crash, the OOM
        killer): under acks_late + reject_on_worker_lost the message comes straight back."""
        redis.Redis.from_url(app.conf.broker_url).incr(key)
        if how == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(1)

    @app.task(name=name("count_and_sleep"), shared=False)
    def count_and_sleep(key: str, seconds: float) -> float:
        """Counts its runs in ``key``, then outlives a short visibility timeout."""
        redis.Redis.from_url(app.conf.broker_url).incr(key)
        time.sleep(seconds)
        return seconds


def _app_from_env() -> Celery:
    redis_url = os.environ.get("WATCHDOG_TEST_REDIS_URL")
    if not redis_url:
        raise RuntimeError(
            "tests.workerapp needs WATCHDOG_TEST_REDIS_URL (and WATCHDOG_TEST_PREFIX); "
            "start it through tests.helpers.PreforkWorker, or use create_app() in-process."
        )
    prefix = os.environ.get("WATCHDOG_TEST_PREFIX", "watchdog")
    conf = json.loads(os.environ.get("WATCHDOG_TEST_CONF") or "{}")
    return create_app(redis_url, prefix, conf)


_app: Celery | None = None


def __getattr__(attr: str) -> Celery:
    # `celery -A tests.workerapp` looks up `app` on this module. Building it lazily lets the
    # test process import create_app() without the worker's environment variables.
    global _app
    if attr == "app":
        if _app is None:
            _app = _app_from_env()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def task(app: Celery, short_name: str) -> Task:
    """The task ``tests.workerapp.<short_name>`` as registered on ``app``."""
    return app.tasks[TASK_PREFIX + short_name]

"""What every request handler of the status server is handed: :class:`ServerContext`.

The server keeps no state of its own (every answer is read from Redis, so replicas behind a
load balancer agree); the context only holds the app, its watchdog runtime, whether changes
are refused, and the one reader store this process reuses. Handlers reach it as
``request.app.state.ctx``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from celery import Celery
from starlette.requests import HTTPConnection

from ..runtime import Watchdog
from ..store import Store


@dataclass
class ServerContext:
    app: Celery
    wd: Watchdog
    read_only: bool = False
    _store: tuple[int, Store] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def store(self) -> Store:
        """One reader store per process (its connection pool is thread-safe): a forked
        server worker (gunicorn --preload) gets its own instead of sharing sockets."""
        pid = os.getpid()
        with self._lock:
            if self._store is None or self._store[0] != pid:
                self._store = (pid, self.wd.store())
            return self._store[1]


def context_of(conn: HTTPConnection) -> ServerContext:
    """The context :func:`..http.app.create_app` put on the Starlette app."""
    ctx: ServerContext = conn.app.state.ctx
    return ctx

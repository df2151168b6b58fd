"""The watchdog's own errors, counted per process and kind, so a broken watchdog is visible.

Before this, receivers, the flusher and the reporter swallowed their errors at DEBUG: a
watchdog that recorded nothing looked like a quiet system. Now every swallowed error is
counted here (memory only; never raises), the first of each kind per minute is logged at
WARNING with its exception, and the recorder's flusher ships the counts to Redis, where
``workers``, ``status`` and their ``--json`` read them per worker and kind.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .model import storable
from .model.redact import scrub

logger = logging.getLogger("celery_watchdog")

#: What failed: a signal receiver, a task's tracer wrap, a flush to Redis, a worker snapshot,
#: a monitor pass (or one of its actions), an alert channel, a record nobody could read, and
#: events lost: dropped from a full buffer or rejected by the store.
KINDS = ("receiver", "tracer", "flush", "snapshot", "monitor", "channel", "record", "dropped",
         "rejected")  # fmt: skip
LOG_EVERY = 60.0  # seconds between two log lines of one kind
TEXT = 300  # characters kept of the last error's text


class Faults:
    """Counts not yet written to Redis, and when each kind was last logged."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self.pending: dict[str, int] = {}
        self.last: dict[str, tuple[float, str]] = {}  # kind -> (epoch, text), for the store
        self.total: dict[str, int] = {}  # since this process started
        self._logged: dict[str, float] = {}

    def report(
        self, kind: str, exc: BaseException | None = None, what: str = "", n: int = 1
    ) -> None:
        """Count ``n`` errors of ``kind``; log the first of the minute. Never raises."""
        try:
            # Error texts can quote what a task passed (a DSN in a connection error).
            text = storable.text(scrub(what or describe(exc), TEXT), TEXT)
            with self._lock:
                self.pending[kind] = self.pending.get(kind, 0) + n
                self.total[kind] = self.total.get(kind, 0) + n
                self.last[kind] = (time.time(), text)
                now = time.monotonic()
                log = now - self._logged.get(kind, -LOG_EVERY) >= LOG_EVERY
                if log:
                    self._logged[kind] = now
            if log:
                logger.warning(
                    "celery_watchdog: %s error (%d in this process so far; tasks are not "
                    "affected): %s", kind, self.total[kind], text,
                    exc_info=exc if isinstance(exc, Exception) else None,
                )  # fmt: skip
        except Exception:  # counting an error must never become one
            pass

    def take(self) -> dict[str, Any] | None:
        """The counts since the last successful write, as one flush event (or None)."""
        with self._lock:
            if not self.pending:
                return None
            counts, self.pending = self.pending, {}
            now = time.time()  # ages, not epochs: the store stamps them with the Redis clock
            last = {k: {"age": max(0.0, now - at), "text": text}
                    for k, (at, text) in self.last.items() if k in counts}  # fmt: skip
        return {"kind": "faults", "pid": os.getpid(), "counts": counts, "last": last}

    def give_back(self, event: dict[str, Any]) -> None:
        """A write failed: its counts are written with the next one."""
        with self._lock:
            for kind, n in event.get("counts", {}).items():
                self.pending[kind] = self.pending.get(kind, 0) + n


def describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    try:
        return f"{type(exc).__name__}: {exc}"
    except Exception:
        return type(exc).__name__


FAULTS = Faults()
report = FAULTS.report


F = TypeVar("F", bound=Callable[..., None])


def guarded(kind: str) -> Callable[[F], F]:
    """A receiver or hook that reports its own error as ``kind`` instead of raising it: a
    watchdog bug must never reach the work it watches."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> None:
            try:
                fn(*args, **kwargs)
            except Exception as exc:
                report(kind, exc, f"{fn.__name__}: {describe(exc)}")

        return wrapper  # type: ignore[return-value]

    return wrap

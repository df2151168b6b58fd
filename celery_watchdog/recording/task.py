"""``WatchedTask``: progress, steps and cooperative cancellation for a task's own code.

Every method here runs on the task's hot path, so each only touches the in-memory
:class:`~.recorder.RunHandle` of the current run; the recorder's flusher writes the latest
state at most once per ``watchdog_flush_interval`` (that is the throttle: calling
``heartbeat()`` per item costs attribute writes, never a Redis round trip).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Task

from ..config import validate_timeout
from ..model import storable
from . import cursors
from .handle import monotonic
from .signals import current_handle

_UNSET: Any = cursors.UNSET


class TaskCancelled(Exception):
    """Raised by ``heartbeat()`` once the watchdog has decided to stop this run."""


class WatchedTask(Task):
    """Base class for tasks that report progress (``@app.task(base=WatchedTask, bind=True)``).

    The watchdog options below may be given as decorator kwargs or class attributes; None
    means "not set here": the ``watchdog_task_policies`` entry or the setting applies.
    """

    _watchdog_watched = True  # read by the prerun receiver (cheaper than isinstance + import)
    heartbeat_timeout: float | None = None
    soft_timeout: float | None = None
    hard_timeout: float | None = None
    on_stuck: str | None = None
    max_deliveries: int | None = None
    idempotent: bool | None = None
    owner: str | None = None
    runbook: str | None = None
    alert_context: tuple[str, ...] | None = None
    alert_severity: str | dict[str, str] | None = None
    fail_alert_after: int | None = None
    fingerprint_args: tuple[str, ...] | None = None
    quarantine_after: int | None = None
    max_silence: float | None = None

    def heartbeat(
        self,
        step: str | None = None,
        processed: int | None = None,
        total: int | None = None,
        *,
        cursor: Any = _UNSET,
        **details: Any,
    ) -> None:
        """Record progress; raises :class:`TaskCancelled` if this run is to stop.

        ``cursor`` (any JSON-able value, e.g. the last row done) is kept with the run: a retry,
        a requeue or a dead-letter replay of it starts with it as :attr:`resume_from`.
        """
        handle = current_handle()
        if handle is None:  # called outside a worker run (a direct call, a unit test)
            return
        now = monotonic()
        if cursor is not _UNSET:
            handle.cursor = cursors.dumps(cursor, self.name)
            cursors.carry(self, handle.cursor)
        handle.last_heartbeat = now
        # A counter a task computes is hostile input: NaN never equals itself (endless
        # "progress"), inf or a float breaks readers. Plain ints pass at the cost of one check.
        if processed is not None and type(processed) is not int:
            processed = storable.count(processed)
        if total is not None and type(total) is not int:
            total = storable.count(total)
        if processed is not None and processed != handle.processed:
            handle.processed = processed
            handle.last_progress = now
        if step is not None and step != handle.step:
            handle.step = step
            handle.step_started = now
            handle.step_timeout = None
            handle.last_progress = now
        if total is not None:
            handle.total = total
        if details:
            handle.details = details
        handle.dirty = True
        if handle.cancelled:
            raise TaskCancelled(f"the watchdog stopped run {handle.task_id}")

    @contextmanager
    def step(self, name: str, timeout: float | None = None) -> Iterator[None]:
        """Mark a named phase; ``timeout`` is this step's own budget (seconds)."""
        if timeout is not None:  # a bad budget is the task's bug: say so where it is given
            timeout = validate_timeout(f"{self.name}: step({name!r}, timeout=)", timeout)
        handle = current_handle()
        if handle is None:
            yield
            return
        previous = (handle.step, handle.step_started, handle.step_timeout)
        now = monotonic()
        handle.step, handle.step_started, handle.step_timeout = name, now, timeout
        handle.last_heartbeat = handle.last_progress = now
        handle.dirty = True
        if handle.cancelled:
            raise TaskCancelled(f"the watchdog stopped run {handle.task_id}")
        try:
            yield
        finally:
            handle.step, handle.step_started, handle.step_timeout = previous
            handle.last_progress = monotonic()
            handle.dirty = True

    @property
    def resume_from(self) -> Any:
        """Where an earlier attempt of this work got to (its last ``heartbeat(cursor=...)``),
        or None on a first run: a retry, a requeue or a replay continues from there."""
        return cursors.resume_from(self)

    @property
    def cancelled(self) -> bool:
        """True once the watchdog asked this run to stop (check it in long loops)."""
        handle = current_handle()
        return bool(handle and handle.cancelled)

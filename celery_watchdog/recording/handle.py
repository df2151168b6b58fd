"""A run in progress in this process, and how its events look on the wire.

``WatchedTask`` and the signal receivers mutate a :class:`RunHandle` in place (heartbeats
coalesce); the recorder's flusher turns it into "run" and "end" events for ``flush.lua``.
"""

from __future__ import annotations

import json
import threading
import time
from threading import get_ident
from typing import Any

from ..model import rules
from ..model.policy import TaskPolicy
from ..model.redact import Redactor

monotonic = time.monotonic


class RunHandle:
    """A run in progress in this process; ``WatchedTask`` mutates it, the flusher reads it."""

    __slots__ = (
        "cancelled",
        "cursor",
        "details",
        "dirty",
        "end",
        "error",
        "last_heartbeat",
        "last_progress",
        "name",
        "new",
        "pid",
        "policy",
        "processed",
        "request",
        "seen",
        "slot",
        "stack",
        "stack_at",
        "started",
        "step",
        "step_started",
        "step_timeout",
        "task",
        "task_id",
        "thread_id",
        "total",
        "watched",
        "worker",
    )  # fmt: skip

    def __init__(
        self,
        task_id: str,
        name: str,
        worker: str,
        watched: bool,
        policy: TaskPolicy,
        pid: int,
        request: Any = None,
        task: Any = None,
        thread_id: int | None = None,
    ) -> None:
        self.task_id = task_id
        self.name = name
        self.worker = worker
        self.pid = pid
        self.thread_id = get_ident() if thread_id is None else thread_id
        # Runs are keyed by (task id, host, slot): a threads pool runs several in one process.
        self.slot = str(pid) if self.thread_id == _main_ident() else f"{pid}.{self.thread_id}"
        self.watched = watched
        self.policy = policy
        self.request = request  # the task's Context: queue, eta, args… read at flush time
        self.task = task
        self.end: tuple[float, str, str, dict[str, str] | None, Any] | None = None
        self.stack: str | None = None  # JSON frames of the task's thread once it went quiet
        self.stack_at: float | None = None
        self.started = monotonic()
        self.last_heartbeat: float | None = None
        self.last_progress = self.started
        self.step: str | None = None
        self.step_started: float | None = None
        self.step_timeout: float | None = None
        self.processed: int | None = None
        self.total: int | None = None
        self.details: dict[str, Any] | None = None
        self.dirty = True
        self.new = True  # not written to Redis yet
        self.seen = False  # taken by a flush (so its end must be written, never only counted)
        self.cancelled = False
        self.error: dict[str, Any] | None = None  # set by task_failure/task_retry, read at end
        self.cursor: str | None = None  # JSON of where the work got to (heartbeat(cursor=))

    def message_fields(self, params: list[str], redactor: Redactor) -> dict[str, Any]:
        """What the first event of a run says about its message (previews redacted)."""
        r = self.request
        if r is None:
            return {}
        delivery = getattr(r, "delivery_info", None) or {}
        args = getattr(r, "args", None) or ()
        kwargs = getattr(r, "kwargs", None) or {}
        fields = {
            "queue": delivery.get("routing_key") or delivery.get("exchange"),
            "eta": _iso(getattr(r, "eta", None)),
            "expires": _iso(getattr(r, "expires", None)),
            "retries": getattr(r, "retries", None) or 0,
            "root_id": getattr(r, "root_id", None),
            "parent_id": getattr(r, "parent_id", None),
            "args": redactor.args(args, params),
            "kwargs": redactor.kwargs(kwargs),
        }
        if self.policy.alert_context:  # who the run is for, shown in its alerts
            fields["context"] = json.dumps(
                redactor.mapping(named(self.policy.alert_context, args, kwargs, params))
            )
        return fields

    def as_event(self, now: float, redactor: Redactor) -> dict[str, Any]:
        return {
            "kind": "run",
            "id": self.task_id,
            "name": self.name,
            "worker": self.worker,
            "pid": self.pid,
            "slot": self.slot,
            "watched": self.watched,
            "new": self.new,
            "deadline_in": self.deadline() - now,
            "started_age": now - self.started,
            "hb_age": None if self.last_heartbeat is None else now - self.last_heartbeat,
            "progress_age": now - self.last_progress,
            "step": self.step,
            "step_age": None if self.step_started is None else now - self.step_started,
            "step_timeout": self.step_timeout,
            "processed": self.processed,
            "total": self.total,
            "details": _json_details(self.details, redactor),
            "stack": self.stack,
            "stack_age": None if self.stack_at is None else now - self.stack_at,
            "cursor": self.cursor,
        }

    def deadline(self) -> float:
        """When this run next becomes suspect, on this process's monotonic clock."""
        return rules.deadline(
            self.policy,
            started=self.started,
            last_progress=self.last_progress,
            step_started=self.step_started,
            step_timeout=self.step_timeout,
            watched=self.watched,
        )


class MessageRequest:
    """The request dict a prefork child's tracer gets, read like Celery's task Context."""

    __slots__ = ("_doc",)

    def __init__(self, doc: dict[str, Any]) -> None:
        self._doc = doc

    def __getattr__(self, name: str) -> Any:
        return self._doc.get(name)


_main: list[int] = []


def _main_ident() -> int:
    if not _main:
        _main.append(threading.main_thread().ident or 0)
    return _main[0]


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def _tail(text: str, limit: int) -> str:
    """Keep the end of a traceback (where the error is), the start of a message."""
    if len(text) <= limit:
        return text
    return "…" + text[-limit:] if "\n" in text else text[:limit] + "…"


def trim(event: dict[str, Any]) -> dict[str, Any]:
    for key in ("exception", "traceback"):
        if event.get(key) is not None:
            event[key] = _tail(str(event[key]), 500 if key == "exception" else 4000)
    return event


def named(names: tuple[str, ...], args: Any, kwargs: Any, params: list[str]) -> dict[str, Any]:
    """The values of the named parameters, passed by keyword or by position."""
    by_name = dict(kwargs) if isinstance(kwargs, dict) else {}
    if isinstance(args, (list, tuple)):
        for name, value in zip(params, args, strict=False):
            by_name.setdefault(name, value)
    return {name: by_name[name] for name in names if name in by_name}


def _json_details(details: dict[str, Any] | None, redactor: Redactor) -> str | None:
    if not details:
        return None
    return json.dumps(redactor.mapping(details))

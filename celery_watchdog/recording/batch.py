"""What a flush sends: ``flush.lua`` events built from what the recorder buffered.

All of it runs on the flusher thread, never on a task's: results and arguments are redacted
and cut here, a quiet run's stack is taken here, and short successes arrive already counted
(a :class:`Tally` per task name and flush window).
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from ..model import diagnosis, storable
from ..model.redact import Redactor
from .handle import RunHandle, trim

SAMPLE = 10  # short successful runs written in full per task name and flush
RUNTIMES = 200  # runtimes kept per tally (the percentiles' sample)
# Free text a task controls, where a secret can sit by value (a DSN in an error message).
SCRUBBED = ("exception", "traceback", "step")


class Tally:
    """Short successful runs of one task name in one flush window, past its written sample."""

    __slots__ = ("last", "n", "name", "runtimes", "written")

    def __init__(self, name: str) -> None:
        self.name = name
        self.written = 0  # runs of this name written in full in this window
        self.n = 0
        self.last = 0.0  # monotonic end of the latest counted run
        self.runtimes: list[float] = []

    def count(self, started: float, ended: float) -> None:
        self.n += 1
        self.last = ended
        if len(self.runtimes) < RUNTIMES:
            self.runtimes.append(ended - started)

    def merge(self, other: Tally) -> None:
        """Take back counts a failed write did not deliver."""
        self.n += other.n
        self.last = max(self.last, other.last)
        self.runtimes = (other.runtimes + self.runtimes)[:RUNTIMES]

    def as_event(self, now: float) -> dict[str, Any]:
        return {"kind": "agg", "name": self.name, "n": self.n, "age": now - self.last,
                "runtimes": [round(r, 4) for r in self.runtimes]}  # fmt: skip


class Batcher:
    """Turns buffered items into events; knows each task's parameter names (cached)."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self._params: dict[str, list[str]] = {}

    def payload(
        self, events: list[Any], dirty: list[RunHandle], now: float
    ) -> tuple[list[dict[str, Any]], list[Any]]:
        """Events for flush.lua, and for each the buffered item it stands for."""
        payload: list[dict[str, Any]] = []
        sources: list[Any] = []
        for e in events:
            if isinstance(e, RunHandle):
                payload.append(self.end_event(e, now))
            elif isinstance(e, Tally):
                payload.append(e.as_event(now))
            else:
                payload.append(self.scrubbed(prepare(e, now)))
            sources.append(e)
        for h in dirty:
            event = h.as_event(now, self.redactor)
            if h.new:
                event.update(h.message_fields(self.param_names(h.task), self.redactor))
            payload.append(self.scrubbed(event))
            sources.append(h)
        return [storable.event(e) for e in payload], sources

    def scrubbed(self, event: dict[str, Any]) -> dict[str, Any]:
        """Secrets by value out of the free text a task controls, before anything is stored."""
        text = self.redactor.text
        for key in SCRUBBED:
            value = event.get(key)
            if value is not None:
                event[key] = text(value, storable.LIMITS.get(key))
        if event.get("stack") is not None:  # JSON read back whole: scrubbed, never cut
            event["stack"] = self.redactor.scrub(event["stack"])
        if isinstance(event.get("context"), dict):  # a publish record's alert_context values
            event["context"] = json.dumps(self.redactor.mapping(event["context"]))[:500]
        return event

    def end_event(self, h: RunHandle, now: float) -> dict[str, Any]:
        assert h.end is not None
        at, state, outcome, error, result = h.end
        event: dict[str, Any] = {
            "kind": "end", "id": h.task_id, "name": h.name, "worker": h.worker, "pid": h.pid,
            "slot": h.slot, "age": now - at, "runtime": at - h.started, "state": state,
            "outcome": outcome, "retries": getattr(h.request, "retries", None) or 0,
        }  # fmt: skip
        if error:
            event.update(error)
        if result is not None:
            event["result"] = self.redactor.value(result)
        if h.new:  # never flushed: the end carries everything the run would have
            event["started_age"] = now - h.started
            event["first"] = True
            event.update(h.message_fields(self.param_names(h.task), self.redactor))
        if h.watched:
            event.update(step=h.step, processed=h.processed, total=h.total)
        if h.cursor is not None:
            event["cursor"] = h.cursor
        return self.scrubbed(trim(event))

    def param_names(self, task: Any) -> list[str]:
        name = getattr(task, "name", None)
        if name is None:
            return []
        if name not in self._params:
            try:
                params = list(inspect.signature(task.run).parameters)
            except (TypeError, ValueError):
                params = []
            # A bound task's signature starts with ``self``, which is not in the message args.
            if getattr(task, "bind", False) or getattr(task.run, "__self__", None) is not None:
                params = params[1:] if params and params[0] == "self" else params
            self._params[name] = params
        return self._params[name]


def prepare(event: dict[str, Any], now: float) -> dict[str, Any]:
    out = {k: v for k, v in event.items() if v is not None and k != "at"}
    out["age"] = now - event["at"]
    return trim(out)


def take_stack_if_quiet(h: RunHandle, now: float) -> None:
    """Where is a quiet run waiting? Its thread's stack, once quiet for half its timeout.

    Taken here, in the process that runs the task, by this thread; refreshed every half
    timeout while the run stays quiet. (A child spinning in C with the GIL held never lets
    this thread run: the monitor then judges it from the main process's CPU readings.)
    """
    half = h.policy.heartbeat_timeout / 2
    if now - h.last_progress < half:
        return
    if h.stack_at is not None and now - h.stack_at < half and h.stack_at >= h.last_progress:
        return
    frames = diagnosis.capture(h.thread_id)
    if frames is not None:
        h.stack = json.dumps(diagnosis.frames_to_json(frames))
        h.stack_at = now
        h.dirty = True

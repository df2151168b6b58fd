"""Write-behind recording: nothing on a task's hot path waits for Redis.

Signal receivers and ``WatchedTask.heartbeat`` only touch memory: a :class:`RunHandle` per
run in progress (mutated in place, so heartbeats coalesce) and a bounded list of events. One
daemon thread per process flushes both every ``flush_interval`` in a single script call. A run
that starts and ends between two flushes is written once, as its end.

Redis down: events stay buffered up to ``buffer_size`` (older ones are dropped and counted),
handles are re-sent on recovery with their real times, and the failure is logged once per
minute. Tasks never notice.
"""

from __future__ import annotations

import atexit
import inspect
import json
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from . import diagnosis
from .handle import RunHandle, monotonic, trim
from .redact import Redactor
from .store import Limits, Store

logger = logging.getLogger("celery_watchdog")
CHUNK = 500  # events per script call
SAMPLE = 10  # short successful runs written in full per task name and flush


class Recorder:
    """The per-process buffer and its flusher thread (recreated in forked children)."""

    def __init__(self, store_factory: Callable[[], Store], limits: Limits, redactor: Redactor,
                 flush_interval: float, buffer_size: int) -> None:  # fmt: skip
        self._store_factory = store_factory
        self.limits = limits
        self.redactor = redactor
        self.flush_interval = flush_interval
        self.buffer_size = buffer_size
        self.hostname: str | None = None  # set by the worker bootstep in a main process
        self._params: dict[str, list[str]] = {}
        self._reset()
        os.register_at_fork(after_in_child=self._reset)
        atexit.register(self.flush)

    def _reset(self) -> None:
        # After fork the flusher thread, the lock holder and the Redis socket belong to the
        # parent: start from scratch (the parent flushes what it had buffered).
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._events: list[dict[str, Any]] = []
        self._live: dict[int, RunHandle] = {}
        self._thread: threading.Thread | None = None
        self._store: Store | None = None
        self._last_error_log = 0.0
        self.dropped = 0
        self.flushes = 0
        self.errors = 0

    # -- hot path: memory only -----------------------------------------------------------

    def start_run(self, handle: RunHandle) -> RunHandle:
        with self._lock:
            self._live[id(handle)] = handle
        if self._thread is None:
            self._ensure_thread()
        return handle

    def forget(self, handle: RunHandle) -> None:
        with self._lock:
            self._live.pop(id(handle), None)

    def end_run(
        self,
        handle: RunHandle,
        state: str,
        outcome: str,
        error: dict[str, str] | None = None,
        result: Any = None,
    ) -> None:
        """The run ended: the handle itself waits in the buffer; the flusher builds the event."""
        handle.end = (monotonic(), state, outcome, error, result)
        with self._lock:
            self._live.pop(id(handle), None)
            if len(self._events) >= self.buffer_size:
                del self._events[0]
                self.dropped += 1
            self._events.append(handle)  # type: ignore[arg-type]
        if self._thread is None:
            self._ensure_thread()

    def _end_event(self, h: RunHandle, now: float) -> dict[str, Any]:
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
        return trim(event)

    def add(self, event: dict[str, Any]) -> None:
        """Queue an event; ``at`` is a monotonic stamp turned into an age at flush time."""
        event.setdefault("at", monotonic())
        with self._lock:
            if len(self._events) >= self.buffer_size:
                del self._events[0]
                self.dropped += 1
            self._events.append(event)
        self._ensure_thread()

    def flush_soon(self) -> None:
        self._wake.set()

    def live_handles(self) -> list[RunHandle]:
        with self._lock:
            return list(self._live.values())

    # -- flusher -------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="celery-watchdog-flusher", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> bool:
        """Write everything buffered now; False when Redis could not be reached.

        Flushes run one at a time, so a caller's flush (at shutdown, in a test) returns only
        once what the flusher thread had already taken is written too.
        """
        with self._flushing:
            return self._flush()

    def _flush(self) -> bool:
        with self._lock:
            events, self._events = self._events, []
            handles = list(self._live.values())
        now = monotonic()
        for h in handles:
            self._maybe_take_stack(h, now)
        dirty = [h for h in handles if h.dirty]
        if not events and not dirty:
            return True
        try:
            payload, sources = self._payload(events, dirty, now)
            for h in dirty:
                h.dirty = False
            live = [h.task_id for h in handles if h.watched]
        except Exception as exc:
            self._on_error(exc, events, dirty)
            return False
        # Chunks keep each script short (it blocks Redis while it runs) and make a timeout
        # cost one chunk: what was written is not re-sent (counted twice), the rest is kept.
        cancelled: set[str] = set()
        for start in range(0, len(payload), CHUNK):
            try:
                chunk = payload[start : start + CHUNK]
                cancelled.update(
                    self.store.write_batch(chunk, live if start == 0 else [], self.limits)
                )
            except Exception as exc:
                unsent = [x for src in sources[start:] for x in src]
                still = {id(h) for h in dirty}
                events_left = [x for x in unsent if id(x) not in still]
                self._on_error(exc, events_left, [x for x in unsent if id(x) in still])
                return False
        for h in dirty:
            h.new = False
        if cancelled:
            for h in handles:
                if h.task_id in cancelled:
                    h.cancelled = True
        self.flushes += 1
        return True

    def _payload(
        self, events: list[Any], dirty: list[RunHandle], now: float
    ) -> tuple[list[dict[str, Any]], list[list[Any]]]:
        """Events for flush.lua, and for each the buffered items it stands for.

        A short successful run (started and ended between two flushes) past the first
        SAMPLE of its task name in this flush costs only an aggregate: a count and its
        runtime. The sample keeps "recently finished" lists meaningful; failures, retries,
        revokes and watched runs are always written in full.
        """
        payload: list[dict[str, Any]] = []
        sources: list[list[Any]] = []
        written: dict[str, int] = {}
        agg: dict[str, dict[str, Any]] = {}
        agg_src: dict[str, list[Any]] = {}
        for e in events:
            if not isinstance(e, RunHandle):
                payload.append(self._prepare(e, now))
                sources.append([e])
                continue
            assert e.end is not None
            if e.new and not e.watched and e.end[2] == "succeeded" and e.end[3] is None:
                if written.get(e.name, 0) >= SAMPLE:
                    a = agg.get(e.name)
                    if a is None:
                        age = now - e.end[0]
                        a = agg[e.name] = {"kind": "agg", "name": e.name, "n": 0, "age": age,
                                           "runtimes": []}  # fmt: skip
                        agg_src[e.name] = []
                    a["n"] += 1
                    a["age"] = min(a["age"], now - e.end[0])
                    if len(a["runtimes"]) < 200:
                        a["runtimes"].append(round(e.end[0] - e.started, 4))
                    agg_src[e.name].append(e)
                    continue
                written[e.name] = written.get(e.name, 0) + 1
            payload.append(self._end_event(e, now))
            sources.append([e])
        for name, a in agg.items():
            payload.append(a)
            sources.append(agg_src[name])
        for h in dirty:
            event = h.as_event(now, self.redactor)
            if h.new:
                event.update(h.message_fields(self.param_names(h.task), self.redactor))
            payload.append(event)
            sources.append([h])
        return payload, sources

    @staticmethod
    def _maybe_take_stack(h: RunHandle, now: float) -> None:
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

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = self._store_factory()
        return self._store

    def _on_error(
        self, exc: Exception, events: list[dict[str, Any]], dirty: list[RunHandle]
    ) -> None:
        self.errors += 1
        for h in dirty:
            h.dirty = True
        with self._lock:
            keep = events + self._events
            overflow = len(keep) - self.buffer_size
            if overflow > 0:
                self.dropped += overflow
                keep = keep[overflow:]
            self._events = keep
        if monotonic() - self._last_error_log > 60:
            self._last_error_log = monotonic()
            logger.warning(
                "celery_watchdog: cannot write to Redis (%s); tasks keep running, %d events "
                "buffered, %d dropped so far",
                exc, len(keep), self.dropped,
            )  # fmt: skip

    def _prepare(self, event: dict[str, Any], now: float) -> dict[str, Any]:
        out = {k: v for k, v in event.items() if v is not None and k != "at"}
        out["age"] = now - event["at"]
        return trim(out)

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

"""Write-behind recording: nothing on a task's hot path waits for Redis.

Signal receivers and ``WatchedTask.heartbeat`` only touch memory: a :class:`RunHandle` per
run in progress (mutated in place, so heartbeats coalesce) and a bounded list of events. One
daemon thread per process flushes both every ``flush_interval`` in a single script call. A run
that starts and ends between two flushes is written once, as its end; past the first
``SAMPLE`` of its task name in a flush, a short success is only counted (a :class:`Tally`).

In a prefork child the task's tracer calls :meth:`Recorder.begin`/:meth:`Recorder.finish`
instead: a run starts as one tuple (the child runs one task at a time) and gets a handle only
when someone looks at it (a heartbeat, a failure, the flusher seeing it still running). A short
success nobody looked at costs a tuple and a count: no object of it outlives the task.

Redis down: events stay buffered up to ``buffer_size`` (older ones are dropped and counted),
handles are re-sent on recovery with their real times, and the failure is logged once per
minute. Tasks never notice.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from threading import get_ident
from typing import Any

from .. import faults
from ..model.redact import Redactor
from ..store import Limits, Store
from .batch import SAMPLE, Batcher, Tally, take_stack_if_quiet
from .handle import MessageRequest, RunHandle, monotonic

logger = logging.getLogger("celery_watchdog")
CHUNK = 500  # events per script call
OUTCOMES = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried"}
# A prefork child's run before it has a handle: (task id, request, started, thread, task, info)
# where info is the signals module's (recorder, name, watched, policy) of the task.
Light = tuple[str, Any, float, int, Any, tuple[Any, str, bool, Any]]


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
        self.batcher = Batcher(redactor)
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
        self._events: list[Any] = []  # event dicts and ended RunHandles, oldest first
        self._tallies: dict[str, Tally] = {}
        self._live: dict[int, RunHandle] = {}
        self.light: Light | None = None  # a prefork child's run in progress, no handle yet
        self.light_handle: RunHandle | None = None  # its handle, once someone needed one
        self._thread: threading.Thread | None = None
        self._store: Store | None = None
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

    def end_run(self, handle: RunHandle, state: str, retval: Any = None) -> None:
        """The run ended in ``state``: the handle waits in the buffer; the flusher builds the event.

        Its error is what ``task_failure``/``task_retry`` attached; its result is kept (to be
        previewed off this thread) only for a clean success. A short success past its name's
        sample in this window is only counted. "Short": no flush has taken the run yet
        (``seen``), so Redis holds nothing of it to close.
        """
        outcome = OUTCOMES.get(state, state.lower())
        error = handle.error
        result = retval if state == "SUCCESS" and not error else None
        ended = monotonic()
        handle.end = (ended, state, outcome, error, result)
        with self._lock:
            self._live.pop(id(handle), None)
            short = not (handle.seen or handle.watched) and outcome == "succeeded" and not error
            if not (short and self._tallied(handle.name, handle.started, ended)):
                self._buffer(handle)
        if self._thread is None:
            self._ensure_thread()
        if error:
            # A failure is written now, not within the flush interval: the next message this
            # process takes may crash it (a native crash, the OOM killer) and take the buffer.
            self._wake.set()

    def _tallied(self, name: str, started: float, ended: float) -> bool:
        """Count a short success (True), or let it be written in full (False). Under the lock."""
        tally = self._tallies.get(name)
        if tally is None:
            tally = self._tallies[name] = Tally(name)
        if tally.written < SAMPLE:
            tally.written += 1
            return False
        tally.count(started, ended)
        return True

    def _buffer(self, item: Any) -> None:
        """Append to the bounded buffer (the oldest item goes first). Under the lock."""
        if len(self._events) >= self.buffer_size:
            del self._events[0]
            self.dropped += 1
            faults.report("dropped", what=f"event buffer full ({self.buffer_size} events)")
        self._events.append(item)

    # -- a prefork child's runs: the task's tracer calls these -----------------------------

    def begin(self, task_id: str, request: Any, task: Any, info: Any) -> None:
        """A run starts: one tuple, no lock (the child's tracer runs one task at a time)."""
        self.light = (task_id, request, monotonic(), get_ident(), task, info)
        if self._thread is None:  # the flusher must find this run if it goes on for long
            self._ensure_thread()

    def finish(self, result: Any) -> None:
        """The run ended with the tracer's ``(retval, failed, ...)``: count it or close it."""
        try:
            ended = monotonic()
            with self._lock:  # cleared first: whatever happens next, the next run starts clean
                light, handle = self.light, self.light_handle
                self.light = self.light_handle = None
                if light is None:
                    return
                _, _, started, _, _, (_, name, watched, _) = light
                failed = result[1]
                if handle is None and failed is None and not watched:
                    tally = self._tallies.get(name)
                    if tally is not None and tally.written >= SAMPLE:
                        tally.count(started, ended)
                        return
            if handle is None:
                handle = self._handle_of(light)
            state = "SUCCESS" if failed is None else str(getattr(failed, "state", "FAILURE"))
            self.end_run(handle, state, result[0])
        except Exception as exc:  # a watchdog bug must never reach the watched task
            faults.report("tracer", exc)

    def abandon(self) -> None:
        """The run was interrupted (a SIGTERM, a hard time limit): the main process reports it."""
        with self._lock:
            handle, self.light, self.light_handle = self.light_handle, None, None
            if handle is not None:
                self._live.pop(id(handle), None)

    def light_handle_now(self) -> RunHandle | None:
        """The handle of the run in progress, made on first need (from any thread)."""
        handle = self.light_handle
        if handle is not None or self.light is None:
            return handle
        with self._lock:
            light = self.light
            if light is None:
                return None
            if self.light_handle is None:
                handle = self.light_handle = self._handle_of(light)
                self._live[id(handle)] = handle
            return self.light_handle

    def _handle_of(self, light: Light) -> RunHandle:
        task_id, request, started, thread_id, task, (_, name, watched, policy) = light
        doc = request if isinstance(request, dict) else {}
        worker = self.hostname or doc.get("hostname") or "unknown"
        handle = RunHandle(task_id, name, worker, watched, policy, self.pid, MessageRequest(doc),
                           task, thread_id=thread_id)  # fmt: skip
        handle.started = handle.last_progress = started
        return handle

    def add(self, event: Mapping[str, Any]) -> None:
        """Queue an event (:mod:`..model.events`); ``at``, a monotonic stamp, becomes an age
        at flush time."""
        item = dict(event)
        item.setdefault("at", monotonic())
        with self._lock:
            self._buffer(item)
        self._ensure_thread()

    def flush_soon(self) -> None:
        self._wake.set()

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
        if self.light is not None:
            self.light_handle_now()  # a run still going when we look is written as running
        with self._lock:
            events, self._events = self._events, []
            tallies, self._tallies = self._tallies, {}
            handles = list(self._live.values())
            for h in handles:
                h.seen = True
        now = monotonic()
        for h in handles:
            take_stack_if_quiet(h, now)
        dirty = [h for h in handles if h.dirty]
        events += [t for t in tallies.values() if t.n]
        if not events and not dirty:
            return self._flush_faults()
        try:
            payload, sources = self.batcher.payload(events, dirty, now)
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
                written = self.store.runs.write_batch(
                    chunk, live if start == 0 else [], self.limits
                )
                cancelled.update(written.cancelled)
                if written.rejected:
                    self._on_rejected(written.rejected, chunk)
            except Exception as exc:
                unsent = sources[start:]
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
        return self._flush_faults()

    def _flush_faults(self) -> bool:
        """The watchdog's own error counts of this process, when there are new ones."""
        event = faults.FAULTS.take()
        if event is None:
            return True
        event["worker"] = self.hostname or socket.gethostname()
        try:
            self.store.runs.write_batch([event], [], self.limits)
        except Exception:
            faults.FAULTS.give_back(event)
            return False
        return True

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = self._store_factory()
        return self._store

    def _on_error(self, exc: Exception, events: list[Any], dirty: list[RunHandle]) -> None:
        self.errors += 1
        for h in dirty:
            h.dirty = True
        with self._lock:
            for tally in events:  # counts a failed write did not deliver
                if isinstance(tally, Tally):
                    current = self._tallies.setdefault(tally.name, tally)
                    if current is not tally:
                        current.merge(tally)
            keep = [e for e in events if not isinstance(e, Tally)] + self._events
            overflow = len(keep) - self.buffer_size
            if overflow > 0:
                self.dropped += overflow
                keep = keep[overflow:]
            self._events = keep
        faults.report("flush", exc, f"cannot write to Redis ({faults.describe(exc)}); "
                      f"{len(keep)} events buffered, {self.dropped} dropped so far")  # fmt: skip
        if overflow > 0:
            faults.report("dropped", what="event buffer full while Redis was unreachable",
                          n=overflow)  # fmt: skip

    def _on_rejected(self, rejected: list[str], chunk: list[dict[str, Any]]) -> None:
        """Events flush.lua could not apply: retrying cannot help, so they count as dropped."""
        self.dropped += len(rejected)
        index, _, error = rejected[0].partition(": ")
        event = chunk[int(index) - 1] if index.isdigit() and int(index) <= len(chunk) else {}
        faults.report(
            "rejected", n=len(rejected),
            what=f"{len(rejected)} event(s) could not be written and were dropped; the first, "
                 f"a {event.get('kind')!r} event of {event.get('name')!r}: {error}",
        )  # fmt: skip

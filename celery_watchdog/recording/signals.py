"""Celery signal receivers: thin, memory-only, and never allowed to break the task.

Where each fires (prefork; DESIGN §4): ``task_received``, ``task_revoked`` and the
hard-time-limit / WorkerLostError ``task_failure`` fire in the worker's main process;
``task_prerun``/``task_postrun`` and task-raised ``task_failure``/``task_retry`` in the child.
A failure that arrives with no run of that id open in this thread comes from a main process
and is recorded with pid ``*`` ("whichever child of this host ran it").

In a prefork child the two per-run receivers give way to a wrapper around each watched task's
tracer (:func:`on_process_init`), which records the run through the recorder's
``begin``/``finish``; the failure and retry receivers still attach errors to it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from celery import signals
from celery.exceptions import WorkerLostError

from .. import faults
from ..model import events
from ..model.policy import TaskPolicy
from . import failures, publishing
from .handle import RunHandle
from .recorder import Recorder

if TYPE_CHECKING:  # the runtime is above this layer: connect() is handed its lookups
    from ..runtime import Watchdog

logger = logging.getLogger("celery_watchdog")

_local = threading.local()


def _unwatched(app: Any) -> Watchdog | None:
    return None


def _nobody() -> Iterable[Watchdog | None]:
    return ()


# The runtime's lookups (``runtime.for_app``, ``runtime.runtimes``), handed over by connect():
# receivers find the sender's app's runtime through them without importing the layer above.
_for_app: Callable[[Any], Watchdog | None] = _unwatched
_runtimes: Callable[[], Iterable[Watchdog | None]] = _nobody
_connected = False
_tracing: list[Recorder] = []  # recorders this prefork child records through task tracers


def watchdog_of(task: Any) -> Watchdog | None:
    """The runtime of a task's app (None: not watched)."""
    return _for_app(getattr(task, "app", None))


def current_handle() -> RunHandle | None:
    """The run this thread is executing (innermost when tasks are applied inside tasks).

    In a prefork child recording through tracers, the child's one run, given its handle now.
    """
    stack: list[RunHandle] | None = getattr(_local, "stack", None)
    if stack:
        return stack[-1]
    for recorder in _tracing:
        if recorder.light is not None:
            return recorder.light_handle_now()
    return None


_guarded = faults.guarded("receiver")  # a watchdog bug must never reach the watched task


def _ours(name: str | None) -> bool:
    """The watchdog's own check task is not a run to watch (its passes are recorded apart)."""
    return name is not None and name.startswith("celery_watchdog.")


# Per task object: (recorder, name, watched, policy), or None when it is not watched, kept on
# the task itself (the prerun receiver runs once per task: one attribute read). Not a dict
# keyed by id(task): a task object of a closed app can die and its id be reused.
_INFO = "_celery_watchdog_info"
Info = tuple[Recorder, str, bool, TaskPolicy]


def _watching_of(task: Any) -> Info | None:
    cached: Info | bool | None = getattr(task, _INFO, False)
    if cached is not False:
        return cached  # type: ignore[return-value]
    wd = _for_app(task.app)
    name = task.name
    info = None
    if wd is not None and not _ours(name):
        info = (wd.recorder, name, bool(getattr(task, "_watchdog_watched", False)), wd.policy(task))
    with contextlib.suppress(Exception):  # an odd task object: resolved each time instead
        setattr(task, _INFO, info)
    return info


@_guarded
def on_task_prerun(sender: Any = None, task_id: str = "", task: Any = None, **_: Any) -> None:
    info = _watching_of(task)
    if info is None:
        return
    recorder, name, watched, policy = info
    request = task.request
    worker = recorder.hostname or request.hostname or "unknown"
    handle = RunHandle(task_id, name, worker, watched, policy, recorder.pid, request, task)
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    stack.append(handle)
    recorder.start_run(handle)


@_guarded
def on_task_postrun(
    sender: Any = None, task_id: str = "", task: Any = None, retval: Any = None,
    state: str | None = None, **_: Any,
) -> None:  # fmt: skip
    stack: list[RunHandle] | None = getattr(_local, "stack", None)
    if not stack or stack[-1].task_id != task_id:
        return
    handle = stack.pop()
    info = _watching_of(task)
    if info is None:
        return
    recorder = info[0]
    if state is None:
        # The task was interrupted by SystemExit/KeyboardInterrupt (a SIGTERM from a revoke
        # or a hard time limit): the worker's main process reports how this run ended.
        recorder.forget(handle)
        return
    recorder.end_run(handle, state, retval)


def _traced(trace: Callable[..., Any], task: Any, info: Info) -> Callable[..., Any]:
    """``trace`` (a task's ``__trace__``) recording the run itself, as the two receivers do.

    The recorder's ``begin``/``finish`` keep a short success down to a tuple and a count; a
    failure, a retry or a heartbeat makes the run a handle as the receivers would.
    """
    recorder = info[0]
    begin, finish, abandon = recorder.begin, recorder.finish, recorder.abandon

    def traced(uuid: str, args: Any, kwargs: Any, request: Any = None, *a: Any, **kw: Any) -> Any:
        begin(uuid, request, task, info)
        try:
            result = trace(uuid, args, kwargs, request, *a, **kw)
        except BaseException:
            # Interrupted (SystemExit from a SIGTERM, a hard time limit): the worker's main
            # process reports how this run ended.
            abandon()
            raise
        finish(result)
        return result

    traced._celery_watchdog = True  # type: ignore[attr-defined]
    return traced


def on_process_init(**_: Any) -> None:
    """In a prefork child: record runs from each task's tracer, not through two signals.

    Celery builds every task's tracer (``task.__trace__``) in the child just before this
    signal. Wrapping the watched ones and disconnecting our ``task_prerun``/``task_postrun``
    receivers in this child only lets Celery skip its signal dispatch (a lock and a scan of
    the receivers, twice per task) when nobody else listens. Elsewhere (solo, threads, an
    eager ``apply``) and whenever a tracer is missing, the receivers stay and do the work.
    """
    try:
        from celery import current_app
        from celery.concurrency import prefork

        if getattr(prefork, "_process_hostname", None) is None:
            return  # not a prefork child (solo sends this signal too, before its tracers)
        tasks = list(current_app.tasks.values())
        plan = [(t, info) for t in tasks if (info := _watching_of(t)) is not None]
        if not plan or any(getattr(t, "__trace__", None) is None for t, _ in plan):
            return
        for task, info in plan:
            if not getattr(task.__trace__, "_celery_watchdog", False):
                task.__trace__ = _traced(task.__trace__, task, info)
            if info[0] not in _tracing:
                _tracing.append(info[0])
        for signal, receiver in ((signals.task_prerun, on_task_prerun),
                                 (signals.task_postrun, on_task_postrun)):  # fmt: skip
            signal.disconnect(receiver, dispatch_uid=f"celery_watchdog.{receiver.__name__}")
    except Exception as exc:
        faults.report("tracer", exc, f"tracers not wrapped, signals record runs: {exc}")


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    try:
        message = str(exc)
    except Exception:  # an exception whose __str__ raises is still an exception to record
        message = "<str() of the exception failed>"
    return f"{type(exc).__name__}: {message}"


@_guarded
def on_task_failure(
    sender: Any = None, task_id: str = "", exception: BaseException | None = None,
    einfo: Any = None, **_: Any,
) -> None:  # fmt: skip
    handle = current_handle()
    traceback = getattr(einfo, "traceback", None)
    wd = _for_app(getattr(sender, "app", None))
    if handle is not None and handle.task_id == task_id:
        handle.error = {"exception": _describe(exception), "traceback": traceback or ""}
        if wd is not None:
            handle.error.update(failures.facts(wd, sender, exception, final=True))
        return
    if wd is None or _ours(getattr(sender, "name", None)):
        return
    lost = isinstance(exception, WorkerLostError)
    end = events.main_process_end(
        task_id, sender.name, _main_hostname(wd, sender), "FAILURE",
        "lost" if lost else "failed", _describe(exception), traceback,
    )  # fmt: skip
    end.update(failures.facts(wd, sender, exception, final=True))  # type: ignore[typeddict-item]
    wd.recorder.add(end)


@_guarded
def on_task_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    handle = current_handle()
    if handle is not None:
        handle.error = {"exception": f"Retry: {reason}"}
        wd = _for_app(getattr(sender, "app", None))
        cause = reason if isinstance(reason, BaseException) else None
        if wd is not None and cause is not None:
            handle.error.update(failures.facts(wd, sender, cause, final=False))


@_guarded
def on_task_revoked(
    sender: Any = None, request: Any = None, terminated: bool = False, signum: Any = None,
    expired: bool = False, **_: Any,
) -> None:  # fmt: skip
    wd = _for_app(getattr(sender, "app", None) or getattr(request, "_app", None))
    name = getattr(sender, "name", None) or str(getattr(request, "task", ""))
    if wd is None or request is None or _ours(name):
        return  # an expired or revoked check of our own leaves no row in `tasks`
    refused = wd.refused.pop(request.id, None)
    if refused is not None:  # the delivery gate kept it aside: it never ran
        wd.recorder.add(events.main_process_end(
            request.id, name, getattr(request, "hostname", None) or _main_hostname(wd, sender),
            "REVOKED", "revoked", f"Refused: {refused}; not run, kept for the dead-letter queue",
        ))  # fmt: skip
        return
    if expired:
        why = "expired before it ran"
    elif terminated:
        why = f"terminated by signal {signum}"
    else:
        why = "revoked"
    # ``request`` is a Request or (terminate) the task's Context: both have id and hostname.
    worker = getattr(request, "hostname", None) or _main_hostname(wd, sender)
    wd.recorder.add(
        events.main_process_end(request.id, name, worker, "REVOKED", "revoked", f"Revoked: {why}")
    )


def _main_hostname(wd: Any, sender: Any) -> str:
    hostname = getattr(getattr(sender, "request", None), "hostname", None)
    return hostname or wd.recorder.hostname or "unknown"


@_guarded
def on_process_shutdown(**_: Any) -> None:
    for runtime in _runtimes():
        if runtime is not None:
            runtime.recorder.flush()


def connect(
    for_app: Callable[[Any], Watchdog | None], runtimes: Callable[[], Iterable[Watchdog | None]]
) -> None:
    """Connect every receiver once per process (Celery signals are global, not per app).

    ``for_app`` finds an app's runtime (or None: not watched), ``runtimes`` lists them all.
    """
    global _connected, _for_app, _runtimes
    _for_app, _runtimes = for_app, runtimes
    publishing.connect(runtimes)
    if _connected:
        return
    _connected = True
    receivers: list[tuple[Any, Callable[..., None]]] = [
        (signals.before_task_publish, publishing.on_before_publish),
        (signals.task_prerun, on_task_prerun),
        (signals.task_postrun, on_task_postrun),
        (signals.task_failure, on_task_failure),
        (signals.task_retry, on_task_retry),
        (signals.task_revoked, on_task_revoked),
        (signals.worker_process_shutdown, on_process_shutdown),
        (signals.worker_process_init, on_process_init),
    ]
    for signal, receiver in receivers:
        signal.connect(receiver, weak=False, dispatch_uid=f"celery_watchdog.{receiver.__name__}")

"""The one place that hooks the watchdog into Celery: once per app, and loudly on bad config.

:func:`install` makes the app's runtime (:mod:`.runtime`), connects the signal receivers, adds
the worker bootstep and puts the check task in beat's schedule. Importing the package calls
:func:`hook_current_app`, so an app whose settings list ``celery_watchdog`` is hooked too.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, _state
from celery import signals as celery_signals

from .monitor.check import run_pass
from .recording import signals
from .runtime import Watchdog, create, for_app, lists_us, runtimes, set_installer
from .worker import bootstep as worker

CHECK_TASK = "celery_watchdog.check"


def install(app: Celery) -> Watchdog | None:
    """Watch ``app``: idempotent; returns None when ``watchdog_enabled`` is False."""
    runtime, made = create(app)
    if runtime is not None and made:
        signals.connect(for_app, runtimes)
        worker.add_bootstep(app)
        _schedule_check(app, runtime)
        if app.finalized:
            runtime.validate_tasks()
        else:
            app.on_after_finalize.connect(lambda sender, **kw: runtime.validate_tasks(), weak=False)
    return runtime


def _schedule_check(app: Celery, wd: Watchdog) -> None:
    """Register ``celery_watchdog.check`` and put it in beat's schedule (unless the user did)."""
    interval = wd.settings.check_interval

    @app.task(name=CHECK_TASK, shared=False, ignore_result=True)
    def check() -> dict[str, Any]:
        store = wd.monitor_store()
        # Checks queued behind busy slots, or sent by two beats, arrive in bursts: the first
        # runs the pass, the others (within half an interval, on the Redis clock) are no-ops.
        if not store.monitor.begin_pass(min_gap=interval / 2, ttl=max(60.0, 3 * interval)):
            return {"skipped": "another pass ran or is running"}
        try:
            return run_pass(wd, store).as_dict()
        finally:
            store.monitor.end_pass()

    # No ``expires``: Celery compares it with the receiving worker's own clock, so one worker
    # whose clock runs ahead of beat's would discard every check (and nobody would watch).
    options: dict[str, Any] = {}
    if wd.settings.queue:
        options["queue"] = wd.settings.queue
    schedule = dict(app.conf.beat_schedule or {})
    schedule.setdefault(CHECK_TASK, {"task": CHECK_TASK, "schedule": interval, "options": options})
    app.conf.beat_schedule = schedule


def on_import_modules(sender: Any = None, **_: Any) -> None:
    """``import_modules`` fires on worker/beat start-up, before ``imports`` are imported."""
    if sender is not None and lists_us(sender):
        install(sender)


def hook_current_app() -> None:
    """Called when the package is imported: hook the app whose settings import us."""
    celery_signals.import_modules.connect(
        on_import_modules, weak=False, dispatch_uid="celery_watchdog"
    )
    app = _state.get_current_app()
    # The CLI plugin imports this package before ``-A`` is parsed; then the current app is
    # Celery's default one, which lists nothing, so nothing happens here.
    if lists_us(app):
        install(app)


set_installer(install)

"""Hooking the watchdog into an app: once, reversibly in effect, and loudly on bad config.

An app is watched when ``install(app)`` was called or when its ``imports``/``include`` lists
``celery_watchdog``. Signal receivers are global in Celery, so they are connected once per
process and look up the sender's app here; an app that is not watched costs them one dict
lookup.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery import Celery

from .config import ConfigError, Settings, TaskPolicy
from .model.redact import Redactor
from .recording.recorder import Recorder
from .store import Limits, Store, connect

logger = logging.getLogger("celery_watchdog")

CHECK_TASK = "celery_watchdog.check"
_lock = threading.RLock()
_runtimes: dict[int, Watchdog | None] = {}
PACKAGE = "celery_watchdog"


class Watchdog:
    """Everything the watchdog keeps per app: settings, recorder, policy cache."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        if settings.redis_url is None:
            raise ConfigError(
                "watchdog_redis_url",
                None,
                "a redis:// URL (required because broker_url is not a Redis URL)",
            )
        self.app = app
        self.settings = settings
        self.redactor = Redactor(
            settings.redact_keys, settings.preview_chars, patterns=settings.redact_patterns
        )
        url, prefix = settings.redis_url, settings.key_prefix
        self.recorder = Recorder(
            store_factory=lambda: Store(connect(url), prefix),
            limits=Limits(settings.retention, settings.max_finished),
            redactor=self.redactor,
            flush_interval=settings.flush_interval,
            buffer_size=settings.buffer_size,
        )
        self._policies: dict[str, TaskPolicy] = {}
        self._monitor_store: tuple[int, Store] | None = None
        self.budgets_checked: dict[str, float] = {}  # task name -> when the monitor learned
        self.alert_router: Any = None  # built on first use by notify.router_of()

    def store(self) -> Store:
        """A store for readers (CLI, views): its own connection, not the flusher's."""
        assert self.settings.redis_url is not None
        return Store(connect(self.settings.redis_url), self.settings.key_prefix)

    def monitor_store(self) -> Store:
        """The store the check task reuses pass after pass (one per process)."""
        pid = os.getpid()
        if self._monitor_store is None or self._monitor_store[0] != pid:
            self._monitor_store = (pid, self.store())
        return self._monitor_store[1]

    def policy(self, task: Any) -> TaskPolicy:
        """Options for a task object (or a bare name): task option -> policy -> setting."""
        name = task if isinstance(task, str) else task.name
        policy = self._policies.get(name)
        if policy is None:
            options = {} if isinstance(task, str) else task_options(task)
            policy = self._policies[name] = self.settings.policy_for(name, options)
        return policy

    def validate_tasks(self) -> None:
        """Resolve every registered task's options now, so a bad one stops start-up."""
        for name, task in list(self.app.tasks.items()):
            if not name.startswith("celery."):
                self.policy(task)


def task_options(task: Any) -> dict[str, Any]:
    """The watchdog options a task sets itself (decorator kwargs become class attributes)."""
    from .config import TASK_OPTION_VALIDATORS

    return {
        key: value
        for key in TASK_OPTION_VALIDATORS
        if (value := getattr(task, key, None)) is not None
    }


def install(app: Celery) -> Watchdog | None:
    """Watch ``app``: idempotent; returns None when ``watchdog_enabled`` is False."""
    with _lock:
        if id(app) in _runtimes:
            return _runtimes[id(app)]
        settings = Settings.from_conf(app.conf)
        runtime = Watchdog(app, settings) if settings.enabled else None
        _runtimes[id(app)] = runtime
    if runtime is not None:
        from .recording import signals
        from .worker import bootstep as worker

        signals.connect()
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
        from .monitor.check import run_pass

        store = wd.monitor_store()
        # Checks queued behind busy slots, or sent by two beats, arrive in bursts: the first
        # runs the pass, the others (within half an interval, on the Redis clock) are no-ops.
        if not store.begin_pass(min_gap=interval / 2, ttl=max(60.0, 3 * interval)):
            return {"skipped": "another pass ran or is running"}
        try:
            return run_pass(wd, store).as_dict()
        finally:
            store.end_pass()

    # No ``expires``: Celery compares it with the receiving worker's own clock, so one worker
    # whose clock runs ahead of beat's would discard every check (and nobody would watch).
    options: dict[str, Any] = {}
    if wd.settings.queue:
        options["queue"] = wd.settings.queue
    schedule = dict(app.conf.beat_schedule or {})
    schedule.setdefault(CHECK_TASK, {"task": CHECK_TASK, "schedule": interval, "options": options})
    app.conf.beat_schedule = schedule


def _lists_us(app: Celery) -> bool:
    conf = app.conf
    modules = [*(conf.get("imports") or ()), *(conf.get("include") or ())]
    return any(m == PACKAGE or m.startswith(PACKAGE + ".") for m in modules)


def for_app(app: Any) -> Watchdog | None:
    """The runtime of a watched app, installing it lazily when its settings ask for us."""
    if app is None:
        return None
    runtime = _runtimes.get(id(app), False)
    if runtime is not False:
        return runtime  # type: ignore[return-value]
    if _lists_us(app):
        return install(app)
    return None


def on_import_modules(sender: Any = None, **_: Any) -> None:
    """``import_modules`` fires on worker/beat start-up, before ``imports`` are imported."""
    if sender is not None and _lists_us(sender):
        install(sender)


def hook_current_app() -> None:
    """Called when the package is imported: hook the app whose settings import us."""
    from celery import _state, signals

    signals.import_modules.connect(on_import_modules, weak=False, dispatch_uid="celery_watchdog")
    app = _state.get_current_app()
    # The CLI plugin imports this package before ``-A`` is parsed; then the current app is
    # Celery's default one, which lists nothing, so nothing happens here.
    if _lists_us(app):
        install(app)

"""The per-app state every part is handed: :class:`Watchdog` (settings, recorder, stores).

An app is watched when ``install(app)`` was called or when its ``imports``/``include`` lists
``celery_watchdog``. Signal receivers are global in Celery, so they are connected once per
process and look up the sender's app here; an app that is not watched costs them one dict
lookup. Hooking an app into Celery is :mod:`.wiring`'s job: it registers its ``install`` here
(:func:`set_installer`), so :func:`for_app` installs an app whose settings list us without
this module importing the layers above it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from celery import Celery

from .config import TASK_OPTION_VALIDATORS, ConfigError, Settings
from .model.policy import TaskPolicy
from .model.redact import Redactor
from .recording.recorder import Recorder
from .store import Limits, Store, connect

_lock = threading.RLock()
_runtimes: dict[int, Watchdog | None] = {}
_installer: Callable[[Celery], Watchdog | None] | None = None
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
            limits=Limits(settings.retention, settings.max_finished, settings.delivery_window),
            redactor=self.redactor,
            flush_interval=settings.flush_interval,
            buffer_size=settings.buffer_size,
        )
        self._policies: dict[str, TaskPolicy] = {}
        self._monitor_store: tuple[int, Store] | None = None
        self.budgets_checked: dict[str, float] = {}  # task name -> when the monitor learned
        self.alert_router: Any = None  # built on first use by notify.router_of()
        # Task id -> why, for messages the delivery gate refused in this worker's main process
        # (Celery then revokes them unrun: the revoke is recorded with this reason).
        self.refused: dict[str, str] = {}

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
    return {
        key: value
        for key in TASK_OPTION_VALIDATORS
        if (value := getattr(task, key, None)) is not None
    }


def lists_us(app: Celery) -> bool:
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
    if lists_us(app) and _installer is not None:
        return _installer(app)
    return None


def set_installer(install: Callable[[Celery], Watchdog | None]) -> None:
    """What :func:`for_app` calls for an app that lists us but is not installed yet."""
    global _installer
    _installer = install


def create(app: Celery) -> tuple[Watchdog | None, bool]:
    """The app's runtime (None when ``watchdog_enabled`` is False), made now if it has none;
    True when it was made by this call (the caller then hooks it into Celery)."""
    with _lock:
        if id(app) in _runtimes:
            return _runtimes[id(app)], False
        settings = Settings.from_conf(app.conf)
        runtime = Watchdog(app, settings) if settings.enabled else None
        _runtimes[id(app)] = runtime
        return runtime, True


def runtimes() -> list[Watchdog | None]:
    """Every app's runtime in this process (None for an app with the watchdog disabled)."""
    return list(_runtimes.values())

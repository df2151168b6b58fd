"""Opening an app for the status commands and the status server: the watchdog's runtime,
the app's task modules imported and every task's options checked, so a bad setting or task
option stops start-up with its name instead of failing on first use."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from celery import Celery

from ..runtime import Watchdog
from ..wiring import install


@contextlib.contextmanager
def _quiet_signal_errors() -> Iterator[None]:
    # Celery logs (with a traceback) and swallows errors raised by signal receivers. While the
    # app imports and finalizes, our receivers may raise ConfigError for a bad task option;
    # the caller reports it once and cleanly, via validate_tasks() below.
    signal_logger = logging.getLogger("celery.utils.dispatch.signal")
    was = signal_logger.disabled
    signal_logger.disabled = True
    try:
        yield
    finally:
        signal_logger.disabled = was


def open_runtime(app: Celery) -> Watchdog | None:
    """The app's watchdog runtime, ready to read (None when ``watchdog_enabled`` is False).
    Raises ConfigError for a bad setting or task option, ImportError for a task module."""
    wd = install(app)
    if wd is None:
        return None
    with _quiet_signal_errors():
        app.loader.import_default_modules()
        app.finalize(auto=True)
    wd.validate_tasks()
    return wd

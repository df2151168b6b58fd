"""celery_watchdog: see whether a Celery task is slow, failed or stuck, and what to do next.

Activate with ``imports = ["celery_watchdog"]`` in the Celery settings, or ``install(app)``.
"""

from __future__ import annotations

from .config import ConfigError
from .recording.task import TaskCancelled, WatchedTask
from .wiring import hook_current_app, install

__all__ = ["ConfigError", "TaskCancelled", "WatchedTask", "install"]
__version__ = "0.1.0"

hook_current_app()

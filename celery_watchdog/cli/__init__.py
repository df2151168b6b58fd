"""The ``celery watchdog`` command group (entry point ``celery_watchdog.cli:watchdog``).

:mod:`.base` holds the group, the session and the commands that only read; each other command
module adds its commands to the group when imported, which is all this file does.
"""

from . import dlq, incidents, monitor, quarantine, queues, report, schedules  # noqa: F401  (importing them registers their commands)
from .base import watchdog

__all__ = ["watchdog"]

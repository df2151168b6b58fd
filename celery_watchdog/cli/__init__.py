"""The ``celery watchdog`` command group (entry point ``celery_watchdog.cli:watchdog``).

:mod:`.base` holds the group, the session and the commands that only read; each other command
module adds its commands to the group when imported, which is all this file does.
"""

from . import (  # noqa: F401  (importing them registers their commands)
    dlq,
    incidents,
    monitor,
    pauses,
    quarantine,
    queues,
    report,
    revoke,
    schedules,
    serve,
)  # fmt: skip
from .base import watchdog

__all__ = ["watchdog"]

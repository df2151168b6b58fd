"""The only package that knows Redis key names and Lua scripts.

Every key lives under ``watchdog_key_prefix`` and has a TTL or a cap. :class:`Store` is one
object for callers, assembled from one small class per concern.
"""

from __future__ import annotations

from .dlq import DeadLetterStore
from .incidents import IncidentDoc, IncidentStore, Opening, new_incident_id
from .monitor import MonitorStore
from .runs import NAMES_MAX, RUNNING_TTL, Limits, connect


class Store(MonitorStore, DeadLetterStore, IncidentStore):
    """Runs, workers and statistics; dead letters; what the monitor claims; incidents."""


__all__ = [
    "NAMES_MAX", "RUNNING_TTL", "IncidentDoc", "Limits", "Opening", "Store", "connect",
    "new_incident_id",
]  # fmt: skip

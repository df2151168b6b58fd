"""The only package that knows Redis key names and Lua scripts.

Every key lives under ``watchdog_key_prefix`` and has a TTL or a cap. :class:`Store` is a small
facade: one client, one prefix, and one object per key family, each in its own module with the
keys it owns listed at its top (the Lua scripts that write them are in ``lua/``):

  store.runs       runs and task documents        runs.py      lua/flush.lua, lua/reschedule.lua
  store.workers    snapshots, liveness, pulse,    workers.py   lua/snapshot.lua
                   CPU, the watchdog's own errors
  store.names      per task name: counts,         names.py
                   runtimes, learned budgets
  store.monitor    claims, stops, lost runs,      monitor.py
                   passes
  store.messages   original messages of long runs messages.py
  store.deliveries redeliveries counted, messages deliveries.py
                   refused for it
  store.dlq        the dead-letter queue          dlq.py
  store.quarantine inputs that fail the same way, quarantine.py
                   parked until released
  store.queues     completions per queue, head    queues.py
                   first seen, last judgements
  store.pauses     task names and queues paused,  pauses.py
                   messages held, the audit
  store.beat       beat's dispatches, entries     beat.py
                   first seen, last judgements
  store.incidents  incidents                      incidents.py lua/incidents.lua
  store.channels   alert delivery status          channels.py
"""

from __future__ import annotations

from typing import Any

import redis

from .base import RUNNING_TTL, connect
from .beat import Beat
from .channels import Channels
from .deliveries import Deliveries
from .dlq import DeadLetters
from .incidents import IncidentDoc, Incidents, Opening, new_incident_id
from .messages import Messages
from .monitor import MonitorKeys
from .names import Names
from .pauses import Pauses
from .quarantine import Quarantine
from .queues import Queues
from .runs import NAMES_MAX, Limits, Runs, Written
from .workers import Workers


class Store:
    """One Redis client and prefix, and the key families that use them."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.r: Any = client
        self.p = prefix
        self.runs = Runs(client, prefix)
        self.workers = Workers(client, prefix)
        self.names = Names(client, prefix)
        self.monitor = MonitorKeys(client, prefix)
        self.messages = Messages(client, prefix)
        self.deliveries = Deliveries(client, prefix)
        self.dlq = DeadLetters(client, prefix)
        self.quarantine = Quarantine(client, prefix)
        self.queues = Queues(client, prefix)
        self.beat = Beat(client, prefix)
        self.pauses = Pauses(client, prefix)
        self.incidents = Incidents(client, prefix)
        self.channels = Channels(client, prefix)

    def now(self) -> float:
        """The one clock: the Redis server's."""
        sec, usec = self.r.time()
        return float(sec + usec / 1e6)


__all__ = [
    "NAMES_MAX", "RUNNING_TTL", "IncidentDoc", "Limits", "Opening", "Store", "Written",
    "connect", "new_incident_id",
]  # fmt: skip

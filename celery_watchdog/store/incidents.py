"""Incidents: the keys are described in ``lua/incidents.lua``, which changes them."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import Keys, lua

RESOLVED_TTL = 7 * 86400


@dataclass(frozen=True)
class Opening:
    """One incident to open, or to join when one is already open for its key."""

    key: str
    group_key: str
    id: str
    kind: str
    name: str
    subject: str
    severity: str
    alert: dict[str, Any]
    members: tuple[str, ...] = ()  # a grouped incident: the subjects it stands for


@dataclass(frozen=True)
class IncidentDoc:
    id: str
    key: str
    kind: str
    name: str
    subject: str
    state: str  # open | acknowledged | snoozed | resolved
    severity: str
    opened_at: float
    notified_at: float | None = None
    notifications: int = 0
    count: int = 1
    group: bool = False
    snooze_until: float | None = None
    note: str = ""
    by: str = ""
    resolved_at: float | None = None
    resolution: str = ""
    acked_at: float | None = None  # when a person first acknowledged it
    alert: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.state != "resolved"

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> IncidentDoc:
        def num(key: str) -> float | None:
            try:
                return float(h[key]) if h.get(key) else None
            except ValueError:
                return None

        try:
            alert = json.loads(h.get("alert") or "{}")
        except ValueError:
            alert = {}
        return cls(
            id=h["id"], key=h.get("key", ""), kind=h.get("kind", ""), name=h.get("name", ""),
            subject=h.get("subject", ""), state=h.get("state", "open"),
            severity=h.get("severity", "P2"), opened_at=num("opened_at") or 0.0,
            notified_at=num("notified_at"), notifications=int(num("notifications") or 0),
            count=int(num("count") or 1), group=h.get("group") == "1",
            snooze_until=num("snooze_until"), note=h.get("note", ""), by=h.get("by", ""),
            resolved_at=num("resolved_at"), resolution=h.get("resolution", ""),
            acked_at=num("acked_at"),
            alert=alert if isinstance(alert, dict) else {},
        )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "task_name": self.name, "subject": self.subject,
            "state": self.state, "severity": self.severity, "opened_at": self.opened_at,
            "notified_at": self.notified_at, "notifications": self.notifications,
            "count": self.count, "group": self.group, "snooze_until": self.snooze_until,
            "note": self.note, "by": self.by, "resolved_at": self.resolved_at,
            "resolution": self.resolution, "summary": self.alert.get("summary", ""),
            "task_id": self.alert.get("task_id", ""),
        }  # fmt: skip


class Incidents(Keys):
    def __init__(self, client: Any, prefix: str) -> None:
        super().__init__(client, prefix)
        self._script = client.register_script(lua("incidents.lua"))

    def _incidents(self, *args: Any) -> Any:
        return self._script(keys=[], args=[str(a) for a in args])

    def open(self, now: float, openings: Sequence[Opening]) -> list[tuple[str, str]]:
        """(id, "opened" | "joined" | "existing") per opening, atomically for all of them."""
        if not openings:
            return []
        args: list[Any] = ["open", self.p, repr(now)]
        for o in openings:
            args += [o.key, o.group_key, o.id, o.kind, o.name, o.subject, o.severity,
                     json.dumps(o.alert, default=str), json.dumps(list(o.members))]  # fmt: skip
        return [(str(i), str(how)) for i, how in self._incidents(*args)]

    def remind(
        self, now: float, every: float, kinds: Sequence[str] = (), limit: int = 1000
    ) -> list[str]:
        """Claim the reminders that are due: each id is returned to one caller only."""
        return list(self._incidents("remind", self.p, repr(now), every, limit, json.dumps(kinds)))

    def resolve(
        self, now: float, items: Sequence[tuple[str, str, str]], ttl: int = RESOLVED_TTL
    ) -> list[str]:
        """(id, resolution, by): the ids this call resolved (each once, whoever asks)."""
        if not items:
            return []
        args: list[Any] = ["resolve", self.p, repr(now), ttl]
        for item in items:
            args += list(item)
        return list(self._incidents(*args))

    def set_state(
        self, incident_id: str, state: str, now: float, *, until: float | None = None,
        note: str = "", by: str = "",
    ) -> int:  # fmt: skip
        """1 when set, 0 when there is no such incident, -1 when it is already resolved."""
        until_arg = "" if until is None else repr(until)
        return int(
            self._incidents("set", self.p, incident_id, state, repr(now), until_arg, note, by)
        )

    def get(self, incident_id: str) -> IncidentDoc | None:
        h = self.r.hgetall(f"{self.p}:inc:{incident_id}")
        return IncidentDoc.from_hash(h) if h.get("id") else None

    def many(self, ids: Sequence[str]) -> list[IncidentDoc]:
        pipe = self.r.pipeline(transaction=False)
        for i in ids:
            pipe.hgetall(f"{self.p}:inc:{i}")
        return [IncidentDoc.from_hash(h) for h in pipe.execute() if h.get("id")]

    def active(self, limit: int = 1000) -> list[IncidentDoc]:
        return self.many(self.r.zrange(f"{self.p}:inc:active", 0, limit - 1))

    def active_count(self) -> int:
        return int(self.r.zcard(f"{self.p}:inc:active"))

    def recent(self, limit: int = 100) -> list[IncidentDoc]:
        """Newest first, resolved ones included while they are kept."""
        return self.many(self.r.zrevrange(f"{self.p}:incidents", 0, limit - 1))

    def members(self, incident_id: str) -> list[str]:
        return sorted(self.r.smembers(f"{self.p}:inc:{incident_id}:m"))

    def samples(self, incident_ids: Sequence[str], n: int) -> list[list[str]]:
        """Up to ``n`` random subjects of each grouped incident (one round trip)."""
        pipe = self.r.pipeline(transaction=False)
        for i in incident_ids:
            pipe.srandmember(f"{self.p}:inc:{i}:m", n)
        return [list(found) for found in pipe.execute()] if incident_ids else []

    def find(self, prefix: str, limit: int = 10) -> list[str]:
        """Ids starting with ``prefix`` (as with git hashes, a unique prefix is enough)."""
        ids = self.r.zrevrange(f"{self.p}:incidents", 0, -1)
        return [i for i in ids if i.startswith(prefix)][:limit]


def new_incident_id() -> str:
    """Random, short enough to type; like a git hash, a unique prefix of it is enough."""
    return secrets.token_hex(5)

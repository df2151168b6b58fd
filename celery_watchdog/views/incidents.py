"""The incidents document (``incidents --json``, ``GET /api/watchdog/incidents``) and finding
one incident by a unique prefix of its id, as with git hashes. Pure reads of the store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..model.humanize import finite
from ..model.ids import TaskLookupError, unique_id

if TYPE_CHECKING:
    from ..store import IncidentDoc, Store

SCAN = 1000  # incidents read at most (newest first); resolved ones are kept 7 days


def incidents_doc(store: Store, now: float, *, show_all: bool = False) -> dict[str, Any]:
    """Open incidents (acknowledged and snoozed too), most recent first; ``show_all`` adds
    the resolved ones."""
    found = store.incidents.recent(SCAN)
    shown = found if show_all else [i for i in found if i.active]
    return finite({"incidents": [i.as_dict() for i in shown], "timestamp": now})


def find_incident(store: Store, wanted: str) -> IncidentDoc:
    """The incident an id or unique prefix names, or :class:`TaskLookupError` saying why."""
    wanted = wanted.strip()
    if not wanted:
        raise TaskLookupError("an incident id (or a unique prefix of one) is required")
    incident_id = unique_id(wanted, store.incidents.find(wanted), "incident")
    incident = store.incidents.get(incident_id)
    if incident is None:
        raise TaskLookupError(f"incident {incident_id} has expired")
    return incident

"""A person acknowledges, snoozes or resolves an incident: who and why are kept with it (its
``by`` and ``note``, or its resolution), which is the incident's audit."""

from __future__ import annotations

from dataclasses import dataclass

from ..alerts.incidents import Alerter
from ..alerts.notify import Notice
from ..model.humanize import parse_duration
from ..runtime import Watchdog
from ..store import IncidentDoc, Store
from ..views.incidents import find_incident
from . import INVALID, Refused

STATES = ("acknowledged", "snoozed")


@dataclass(frozen=True)
class Change:
    incident: IncidentDoc  # as it was before the change
    state: str
    until: float | None
    now: float


def change(
    store: Store, wanted: str, state: str, *, by: str, note: str = "",
    for_: str | None = None,
) -> Change:  # fmt: skip
    """Acknowledge (reminders stop) or snooze for ``for_`` (``30m``); :class:`Refused` when
    it is already resolved or expired, or the duration is not one."""
    assert state in STATES
    seconds = None
    if state == "snoozed":
        try:
            seconds = parse_duration(for_ or "")
        except ValueError as exc:  # one line: the duration, and what is accepted
            raise Refused(f"cannot snooze: {exc}", INVALID) from None
    incident = find_incident(store, wanted)
    now = store.now()
    until = None if seconds is None else now + seconds
    done = store.incidents.set_state(incident.id, state, now, until=until, note=note, by=by)
    if done == -1:
        raise Refused(f"incident {incident.id} is already resolved")
    if done == 0:
        raise Refused(f"incident {incident.id} has expired")
    return Change(incident, state, until, now)


def resolve(
    wd: Watchdog, store: Store, wanted: str, *, by: str, note: str = ""
) -> tuple[IncidentDoc, list[Notice]]:
    """Close an incident by hand and say so through its channels (the notices sent)."""
    incident = find_incident(store, wanted)
    if not incident.active:
        raise Refused(f"incident {incident.id} is already resolved")
    notices = Alerter(wd, store, store.now()).resolve_by_hand(incident, note, by)
    return incident, notices

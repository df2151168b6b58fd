"""Human output of ``celery watchdog incidents | ack | snooze | resolve | test-alert``.

Summaries, notes and channel errors are printed with terminal controls escaped (``printable``).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..alerts.notify import Notice
from ..model.humanize import NONE, ago, cut, printable, table
from ..store import IncidentDoc

COLUMNS = ("ID", "STATE", "SEV", "KIND", "TASK", "OPENED", "SENT", "SUMMARY")


def _state(i: IncidentDoc, now: float) -> str:
    if i.state == "snoozed" and i.snooze_until:
        return f"snoozed until {ago(i.snooze_until, now)}"
    if i.state == "acknowledged" and i.by:
        return f"acked by {cut(i.by, 24)}"
    return i.state


def list_text(found: Sequence[IncidentDoc], now: float, *, show_all: bool = False) -> str:
    if not found:
        return "No incidents." if show_all else "No open incidents."
    active = sum(i.active for i in found)
    head = f"{active} open incident(s)" + (f", {len(found) - active} resolved" if show_all else "")
    rows = [
        [i.id, _state(i, now), i.severity, i.kind, cut(i.name, 36), ago(i.opened_at, now),
         i.notifications, cut(i.alert.get("summary") or NONE, 80)]
        for i in found
    ]  # fmt: skip
    lines = [head, "", table(COLUMNS, rows)]
    notes = [f"  {i.id}: {cut(i.note, 200)}" for i in found if i.note]
    return printable("\n".join(lines + (["", "Notes:", *notes] if notes else [])))


def changed(i: IncidentDoc, state: str, until: float | None, now: float) -> str:
    if state == "snoozed" and until is not None:
        return printable(f"incident {i.id} snoozed: no reminders until {ago(until, now)}")
    return printable(f"incident {i.id} {state}: no more reminders")


def deliveries(notices: Sequence[Notice]) -> list[str]:
    lines = []
    for n in notices:
        for d in n.deliveries:
            outcome = "delivered" if d.ok else f"FAILED: {cut(d.error, 300)}"
            lines.append(printable(
                f"{d.channel:<40} {outcome} ({d.attempts} attempt(s), {d.elapsed_ms:.0f} ms)"
            ))  # fmt: skip
        if not n.deliveries:
            lines.append("no channel is configured for this severity")
    return lines

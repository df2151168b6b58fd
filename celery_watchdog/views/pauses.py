"""What is paused (``pause --list --json``, ``GET /api/watchdog/pauses``): each pause with who
set it, until when, and how many messages it holds; and the pause audit. Pure reads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..model.humanize import finite

if TYPE_CHECKING:
    from ..store import Store

AUDIT_SHOWN = 20


def paused(store: Store) -> list[dict[str, Any]]:
    """What is paused, by whom, until when, and how many messages each pause holds."""
    current = store.pauses.all()
    held = store.pauses.held_counts(sorted(current))
    return [{**doc, "held": held.get(t, 0)} for t, doc in sorted(current.items())]


def pauses_doc(store: Store, now: float, *, audit: int = AUDIT_SHOWN) -> dict[str, Any]:
    """The pauses and the last ``audit`` changes (pause, resume, expiry: who, what, when)."""
    return finite({"paused": paused(store), "audit": store.pauses.log(audit), "timestamp": now})

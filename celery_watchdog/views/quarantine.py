"""Quarantined inputs (``quarantine list|show --json``, ``GET /api/watchdog/quarantine``) and
resolving a fingerprint from a unique prefix, as with git hashes. Pure reads of the store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..model.humanize import finite
from ..model.ids import TaskLookupError, unique_id

if TYPE_CHECKING:
    from ..store import Store


def quarantine_doc(store: Store, now: float) -> dict[str, Any]:
    """Every quarantined input, newest first."""
    return finite({"quarantined": list(store.quarantine.all().values()), "timestamp": now})


def resolve_fingerprint(store: Store, wanted: str) -> str:
    """The full fingerprint an id or unique prefix names, or :class:`TaskLookupError`."""
    wanted = wanted.strip()
    if not wanted:
        raise TaskLookupError("a fingerprint (or a unique prefix of one) is required")
    return unique_id(wanted, store.quarantine.find(wanted), "quarantined input")


def quarantined_doc(store: Store, wanted: str) -> dict[str, Any]:
    """One quarantined input: what failed, how, and how many copies are parked."""
    fp = resolve_fingerprint(store, wanted)
    doc = store.quarantine.get(fp)
    if doc is None:
        raise TaskLookupError(f"{fp} is no longer quarantined")
    return finite(doc)

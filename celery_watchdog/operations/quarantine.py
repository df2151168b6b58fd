"""A person releases a quarantined input: it runs again (the store records who and when)."""

from __future__ import annotations

from ..store import Store
from ..views.quarantine import resolve_fingerprint
from . import Refused


def release(store: Store, wanted: str, *, by: str) -> str:
    """Release the input a fingerprint (or unique prefix) names; returns its fingerprint."""
    fp = resolve_fingerprint(store, wanted)
    if not store.quarantine.release([fp], by, "released", store.now()):
        raise Refused(f"{fp} is no longer quarantined")
    return fp

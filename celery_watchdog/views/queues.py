"""The queues document: Flower's ``/api/queues/length`` shape plus our health per queue."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..monitor import queues

if TYPE_CHECKING:
    from ..runtime import Watchdog
    from ..store import Store


def queues_doc(store: Store, wd: Watchdog, *, now: float | None = None) -> dict[str, Any]:
    """``{"active_queues": [{"name", "messages", "oldest_age", …, "health", "action",
    "affected"}]}``, read now from the broker (not from the last monitor pass)."""
    now = store.now() if now is None else now
    docs = queues.read(wd, store, now, store.workers.all())
    return {"active_queues": docs, "timestamp": now}

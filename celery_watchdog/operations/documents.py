"""Documents that read the broker or the dead letters (so they need Celery or kombu): queues,
schedules, dead-letter entries. The CLI's ``--json`` and the API serve these same builders."""

from __future__ import annotations

from typing import Any

from .. import dlq as deadletters
from ..dlq import DeadLetter
from ..model.humanize import finite
from ..model.ids import TaskLookupError
from ..monitor import queues, schedules
from ..runtime import Watchdog
from ..store import Store


def queues_doc(wd: Watchdog, store: Store, now: float) -> dict[str, Any]:
    """Flower's ``/api/queues/length`` shape plus ours, read from the broker now."""
    docs = queues.read(wd, store, now, store.workers.all())
    return finite({"active_queues": docs, "timestamp": now})


def schedules_doc(wd: Watchdog, store: Store, now: float) -> dict[str, Any]:
    """Every beat entry and ``max_silence`` task: last sent, last success, next due, health."""
    docs = schedules.read(wd, store, now)
    docs += list(schedules.silences(wd, store, now).values())
    return finite({"schedules": docs, "timestamp": now})


def dlq_doc(
    wd: Watchdog, store: Store, *, task: str | None = None, limit: int | None = None
) -> dict[str, Any]:
    """Dead-letter entries newest first, ``{task_id: entry}``, arguments redacted."""
    found = deadletters.entries(store, task=task, limit=limit, with_message=False)
    return finite({e.task_id: e.to_doc(wd.redactor) for e in found})


def dead_letter(store: Store, wanted: str) -> DeadLetter:
    """The entry an id or unique prefix names, or :class:`TaskLookupError`."""
    task_id = deadletters.resolve(store, wanted)
    entry = deadletters.get(store, task_id)
    if entry is None:  # expired between the lookup and the read
        raise TaskLookupError(f"dead-letter entry {task_id!r} is no longer stored")
    return entry

"""Pause and resume without touching code: a task name (its messages are held, not run, not
lost) or a queue (no worker consumes it). Resume publishes every held message again under its
own task id, each once; a pause with an end is resumed by the first monitor pass after it.

Workers learn of a pause within a snapshot interval (:class:`..worker.deliveries.DeliveryGate`
holds what arrives meanwhile); a paused queue is also cancelled on every worker at once.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import dlq, faults
from ..runtime import Watchdog
from ..store import Store

logger = logging.getLogger("celery_watchdog")
HELD_MARKER = dlq.HELD_HEADER  # the header naming the pause a released message waited for


def pause(wd: Watchdog, store: Store, target: str, *, by: str, until: float | None,
          note: str = "") -> None:  # fmt: skip
    store.pauses.pause(target, by, store.now(), until, note)
    if target.startswith("queue:"):
        _safely(wd.app.control.cancel_consumer, target.removeprefix("queue:"), reply=False)


def resume(
    wd: Watchdog, store: Store, target: str, *, by: str, how: str = "resume"
) -> dict[str, Any]:
    """End a pause and publish what it held, oldest first: {resumed, released, failed}."""
    resumed = store.pauses.resume(target, by, store.now(), how)
    if target.startswith("queue:"):
        _safely(wd.app.control.add_consumer, target.removeprefix("queue:"), reply=False)
    released, failed = release(wd, store, target)
    return {"resumed": resumed, "released": released, "failed": failed}


def release(wd: Watchdog, store: Store, target: str, limit: int = 100_000) -> tuple[int, str]:
    """Publish the held messages again, each once: taken one at a time, put back first in line
    when its publish fails (then it stops: the broker is likely down)."""
    released = 0
    for _ in range(limit):
        message = store.pauses.take(target)
        if message is None:
            return released, ""
        task_id = str(message.get("id") or "")
        try:
            dlq.publish_original(
                wd.app, task_id, message, new_id=task_id, marker=HELD_MARKER, keep_schedule=True
            )
        except Exception as exc:
            store.pauses.put_back(target, message)
            faults.report("pauses", exc, f"cannot release {task_id}: {faults.describe(exc)}")
            return released, f"{type(exc).__name__}: {exc}"
        store.pauses.released(target, task_id)
        released += 1
    return released, ""


def expire(wd: Watchdog, store: Store, now: float) -> list[str]:
    """Resume the pauses whose end has come (the first pass after it does), and release what
    a pause no longer in force still holds (a resume that could not publish everything)."""
    done = []
    paused = store.pauses.all()
    for target, doc in paused.items():
        until = doc.get("until")
        if isinstance(until, (int, float)) and until <= now:
            resume(wd, store, target, by=str(doc.get("by") or "someone"), how="expired")
            done.append(target)
    for target in store.pauses.holding():
        if target not in paused:
            release(wd, store, target)
    return done


def _safely(fn: Any, *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # the store holds the pause: workers apply it at their next look
        logger.warning("celery_watchdog: %s failed: %s", getattr(fn, "__name__", fn), exc)

"""Side effects of a verdict, one per function: cancel, terminate, announce. (Requeue is
:func:`celery_watchdog.dlq.publish_original`; dead-lettering is ``store.dlq.add``.) The monitor
claims a (run, verdict) before calling any of them, so each happens once.
"""

from __future__ import annotations

import logging

from celery import Celery

from ..model.records import Run, Verdict

logger = logging.getLogger("celery_watchdog")
CANCEL_TTL = 3600


def terminate(app: Celery, task_ids: list[str], worker: str | None, signal: str) -> None:
    """Ask one worker to signal the children running these ids (prefork; others log, go on).

    The revoke goes to that worker only, so other workers keep no record of the ids; a
    requeue publishes under a new id anyway. One broadcast for the whole list.
    """
    destination = [worker] if worker else None
    app.control.revoke(task_ids, terminate=True, signal=signal, destination=destination)


def announce(app: Celery, run: Run, verdict: Verdict) -> None:
    """Send ``task-<kind>`` as the run's own worker, so Flower shows STUCK/LOST, not STARTED."""
    with app.connection_for_write() as conn:
        dispatcher = app.events.Dispatcher(conn, hostname=run.worker or None, enabled=True)
        try:
            dispatcher.send(
                f"task-{verdict.health}", uuid=run.task_id, reason=verdict.reason,
                name=run.name, watchdog=True,
            )  # fmt: skip
        finally:
            dispatcher.close()

"""Side effects of a verdict, one per function: cancel, terminate, kill, requeue, dead-letter,
announce. The monitor claims a (run, verdict) before calling any of them, so each happens once.
"""

from __future__ import annotations

import base64
import logging
import uuid
from typing import Any

from celery import Celery
from kombu.serialization import loads

from .records import Run, Verdict
from .store import Store

logger = logging.getLogger("celery_watchdog")
CANCEL_TTL = 3600


def cancel(store: Store, run: Run) -> None:
    """The cooperative stop: the run's next ``heartbeat()`` raises TaskCancelled (every pool)."""
    store.request_cancel(run.task_id, ttl=CANCEL_TTL)


def terminate(app: Celery, run: Run, signal: str = "SIGTERM") -> None:
    """Ask the run's worker to signal the child running it (prefork; others log and go on).

    The revoke goes to that worker only, so other workers keep no record of the id; a requeue
    publishes under a new id anyway.
    """
    destination = [run.worker] if run.worker else None
    app.control.revoke(run.task_id, terminate=True, signal=signal, destination=destination)


def decode_message(message: dict[str, Any]) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """(args, kwargs, embed) of an original message saved by a worker (protocol 2)."""
    body = base64.b64decode(message["body"])
    args, kwargs, embed = loads(
        body, message.get("content_type") or "application/json",
        message.get("content_encoding") or "utf-8",
    )  # fmt: skip
    return list(args), dict(kwargs), dict(embed or {})


def publish(
    app: Celery,
    message: dict[str, Any],
    *,
    queue: str | None = None,
    headers: dict[str, Any] | None = None,
    task_id: str | None = None,
) -> str:
    """Publish the task of an original message again, with its original arguments.

    A new task id: the old one may sit in workers' revoked lists. Callbacks, errbacks and the
    chain of the original travel along. Raises whatever the broker raises; nothing is retried.
    """
    args, kwargs, embed = decode_message(message)
    new_id = task_id or str(uuid.uuid4())
    original = message.get("headers") or {}
    options: dict[str, Any] = {
        "task_id": new_id,
        "headers": {**(headers or {})},
        "link": embed.get("callbacks"),
        "link_error": embed.get("errbacks"),
        "chain": embed.get("chain"),
        "chord": embed.get("chord"),
        "root_id": original.get("root_id"),
        "retries": 0,
        "retry": False,  # a broker that is down is reported, not waited for
    }
    target = queue or message.get("routing_key")
    if target:
        options["queue"] = target
    if message.get("priority") is not None:
        options["priority"] = message["priority"]
    app.send_task(message["task"], args=args, kwargs=kwargs, **options)
    return new_id


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

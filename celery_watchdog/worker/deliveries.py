"""Delivery caps: a message delivered more than ``max_deliveries`` times is not run again.

Celery counts no deliveries (celery#8610), so a message that kills its child under
``acks_late`` + ``task_reject_on_worker_lost`` (``os._exit``, SIGKILL, the OOM killer) comes
back at once, forever; so does a long ``acks_late`` task past the Redis transport's
``visibility_timeout`` (celery#5935). ``task_received`` fires in the worker's main process once
per delivery, before the message is handed to the pool: the count is kept there.

Cost: a first delivery costs one dict lookup (most messages are delivered once). Only a
message that came back (``redelivered``, which kombu's Redis transport sets on restore and
RabbitMQ on requeue) is counted, with one Redis round trip on a client that gives up within
half a second; while Redis fails, counting pauses and every message runs.

A refused message is kept first (its original message and the facts, in Redis); only then
does its id join the worker's revoked set, so Celery acknowledges it without running it (its
result becomes REVOKED). A message that cannot be kept is run rather than lost. The monitor
dead-letters it as ``poison`` and alerts once (:meth:`..monitor.handling.Handler.settle_refused`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from celery import signals
from celery.worker import state as worker_state

from .. import faults, runtime
from ..dlq.replay import HELD_HEADER, REPLAY_HEADER
from ..model import events
from ..model.fingerprint import fingerprint
from ..store import RUNNING_TTL, Store, connect
from .message import original_message

logger = logging.getLogger("celery_watchdog")
TIMEOUT = 0.5  # seconds a count may take before the message just runs
PAUSE = 10.0  # seconds without counting after Redis failed


class DeliveryGate:
    """Counts the deliveries of one app's messages in this worker; refuses poison."""

    def __init__(self, wd: runtime.Watchdog, hostname: str) -> None:
        self.wd = wd
        self.hostname = hostname
        url = wd.settings.redis_url
        assert url is not None
        self.store = Store(connect(url, timeout=TIMEOUT), wd.settings.key_prefix)
        self._paused_until = 0.0
        self._quarantined: dict[str, dict[str, dict[str, Any]]] = {}  # name -> fp -> doc
        self.last_received: dict[str, float] = {}  # routing key -> monotonic time
        self._paused: set[str] = set()  # "task:NAME" | "queue:Q"
        self._pauses_version: str | None = None
        self._version: str | None = None

    def connect(self) -> None:
        signals.task_received.connect(
            self.on_received, weak=False, dispatch_uid=f"celery_watchdog.gate.{id(self.wd.app)}"
        )

    def disconnect(self) -> None:
        signals.task_received.disconnect(dispatch_uid=f"celery_watchdog.gate.{id(self.wd.app)}")

    def on_received(self, sender: Any = None, request: Any = None, **_: Any) -> None:
        try:
            delivery = request.delivery_info or {}
            # When this worker last took a message from each queue: a worker that stays alive
            # but stopped consuming (celery#8030) shows as a queue whose consumer went quiet.
            self.last_received[delivery.get("routing_key") or ""] = time.monotonic()
            paused = self._paused
            if paused:
                queue = delivery.get("routing_key") or ""
                target = f"task:{request.name}" if f"task:{request.name}" in paused else (
                    f"queue:{queue}" if f"queue:{queue}" in paused else None)  # fmt: skip
                if target and self._app_of(sender) and self.hold(request, sender, target):
                    return
            names = self._quarantined
            if (
                names
                and request.name in names
                and self._app_of(sender)
                and self.quarantined(request)
            ):
                return
            if not delivery.get("redelivered"):
                return
            if not self._app_of(sender) or _ours(request.name):
                return
            self.redelivered(request)
        except Exception as exc:  # a watchdog bug must never stop a message
            faults.report("deliveries", exc, f"delivery gate: {faults.describe(exc)}")

    def _app_of(self, sender: Any) -> bool:
        return getattr(sender, "app", self.wd.app) is self.wd.app

    def hold(self, request: Any, consumer: Any, target: str) -> bool:
        """A paused task name's (or queue's) message is kept aside and acknowledged unrun; its
        result stays PENDING, and ``resume`` publishes it again under its own id. A message
        that cannot be kept runs instead of being lost. False: it runs."""
        if HELD_HEADER in (getattr(request, "request_dict", None) or {}):
            return False  # released by a resume: it runs, even where the pause is not yet known
        message = original_message(request)
        if message is None or not message.get("body") or _ours(request.name):
            return False
        try:
            # Still paused? (this worker learns of a resume at its next look; a message of a
            # pause that just ended must run, not wait for a resume that already happened)
            if not self.store.pauses.hold(target, request.id, message):
                self._paused.discard(target)
                return False
        except Exception as exc:
            self._pause(exc, f"cannot hold {request.id} for {target}; it runs")
            return False
        request.acknowledge()
        # Celery's own mark for "skip this request": acknowledged above, never executed, no
        # result written and no task_revoked sent (Request.revoked() returns True).
        request._already_revoked = True
        if target.startswith("queue:") and hasattr(consumer, "cancel_task_queue"):
            with contextlib.suppress(Exception):  # this is the consumer's own thread
                consumer.cancel_task_queue(target.removeprefix("queue:"))
        logger.info("celery_watchdog: holding %s[%s] (%s is paused)", request.name, request.id,
                    target)  # fmt: skip
        return True

    def refresh(self) -> None:
        """Reload pauses and quarantined inputs when they changed (the reporter calls this)."""
        pauses = self.store.pauses.version()
        if pauses != self._pauses_version:
            self._paused = set(self.store.pauses.all())
            self._pauses_version = pauses
        version = self.store.quarantine.version()
        if version == self._version:
            return
        by_name: dict[str, dict[str, dict[str, Any]]] = {}
        for fp, doc in self.store.quarantine.all().items():
            by_name.setdefault(str(doc.get("name") or ""), {})[fp] = doc
        self._quarantined, self._version = by_name, version

    def quarantined(self, request: Any) -> bool:
        """A message whose input is quarantined is parked unrun. Costs a fingerprint only for
        the task names that have a quarantined input."""
        if REPLAY_HEADER in (getattr(request, "request_dict", None) or {}):
            return False  # a person replayed it from the dead-letter queue: it runs
        task = request.task
        policy = self.wd.policy(task)
        params = self.wd.recorder.batcher.param_names(task)
        fp = fingerprint(request.name, request.args, request.kwargs,
                         only=policy.fingerprint_args, param_names=params)  # fmt: skip
        doc = self._quarantined.get(request.name, {}).get(fp)
        if doc is None:
            return False
        label = doc.get("label") or fp
        why = (f"its input {label} is quarantined ({fp}): it failed "
               f"{doc.get('failures', '?')} times the same way")  # fmt: skip
        return self.refuse(request, why, kind="quarantine", fp=fp, label=label)

    def redelivered(self, request: Any) -> None:
        self.wd.recorder.add(events.redelivery(request.id, request.name, self.hostname))
        if time.monotonic() < self._paused_until:
            return
        try:
            deliveries = 1 + self.store.deliveries.count(
                request.id, self.wd.settings.delivery_window
            )
        except Exception as exc:  # Redis out or frozen: this message runs, uncounted
            self._pause(exc, f"cannot count the deliveries of {request.id}")
            return
        limit = self.wd.policy(request.task).max_deliveries
        if deliveries > limit:
            why = f"delivered {deliveries} times (max_deliveries={limit})"
            self.refuse(request, why, deliveries=deliveries, kind="deliveries")

    def refuse(self, request: Any, why: str, **facts: Any) -> bool:
        """Keep the message, then make Celery acknowledge it unrun. False: it runs after all."""
        message = original_message(request)
        if message is None or not message.get("body"):
            return False  # nothing to replay from: better run than lose it
        try:
            self.store.messages.save({request.id: message}, ttl=RUNNING_TTL)
            info = {"name": request.name, "worker": self.hostname, "why": why, **facts}
            self.store.deliveries.refuse(request.id, info)
            if facts.get("kind") == "quarantine":
                self.store.quarantine.note_parked(str(facts.get("fp")))
        except Exception as exc:
            self._pause(exc, f"cannot keep refused message {request.id}; it runs")
            return False
        self.wd.refused[request.id] = why
        worker_state.revoked.add(request.id)
        logger.warning("celery_watchdog: not running %s[%s]: %s", request.name, request.id, why)
        return True

    def _pause(self, exc: Exception, what: str) -> None:
        self._paused_until = time.monotonic() + PAUSE
        faults.report("deliveries", exc, f"{what}: {faults.describe(exc)}")


def _ours(name: str | None) -> bool:
    return name is not None and name.startswith("celery_watchdog.")

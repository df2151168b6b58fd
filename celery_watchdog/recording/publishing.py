"""The producer's side: every message a process with the watchdog publishes is stamped with
when (memory only: a web request never waits for Redis); beat's own sends are recorded (the
dead-man's switch of its entries); on a broker whose waiting messages cannot be read
(RabbitMQ) each publish is recorded, written behind, with who it is for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from time import time
from typing import TYPE_CHECKING, Any

from .. import faults
from ..model import events
from ..model.events import PUBLISHED_AT
from .handle import named

if TYPE_CHECKING:
    from ..runtime import Watchdog

_guarded = faults.guarded("receiver")


def _nobody() -> Iterable[Watchdog | None]:
    return ()


_runtimes: Callable[[], Iterable[Watchdog | None]] = _nobody  # set by connect()
# Runtimes whose broker keeps its messages out of sight (AMQP): their producers record each
# publish (set by connect(); re-read when an app is installed).
_recording_publishes: list[Watchdog] = []


def connect(runtimes: Callable[[], Iterable[Watchdog | None]]) -> None:
    """Learn the runtimes (called by :func:`.signals.connect` whenever an app is installed)."""
    global _runtimes
    _runtimes = runtimes
    _recording_publishes[:] = [
        wd for wd in runtimes() if wd is not None and _amqp(wd.app.conf.broker_url)
    ]


def _amqp(url: Any) -> bool:
    return isinstance(url, str) and url.startswith(("amqp://", "amqps://", "pyamqp://"))


def on_before_publish(
    sender: Any = None, headers: Any = None, routing_key: Any = None, body: Any = None, **_: Any
) -> None:
    """Stamp when a message was published, for its queue's oldest age (memory only: a
    producer's web request never waits for Redis). A stamp already given is kept (a replay
    drops the original's: see ``dlq.publish_original``). A broker whose waiting messages
    cannot be read (RabbitMQ) gets a publish record instead, written behind."""
    if type(headers) is dict:
        if PUBLISHED_AT not in headers:
            headers[PUBLISHED_AT] = time()
        if headers.get("celery_beat_task"):  # beat's own process, sending a scheduled task
            _beat_sent(str(sender or headers.get("task") or ""), headers.get("id"))
        if _recording_publishes:
            _published(headers.get("id"), routing_key, sender, body)


@_guarded
def _published(task_id: Any, queue: Any, name: Any, body: Any) -> None:
    if isinstance(task_id, str) and isinstance(queue, str) and queue:
        for wd in _recording_publishes:
            wd.recorder.add(events.published(task_id, queue, _waiting_for(wd, name, body)))


def _waiting_for(wd: Watchdog, name: Any, body: Any) -> dict[str, Any] | None:
    """Who a published message is for (its ``alert_context`` values, redacted when flushed):
    on RabbitMQ the only way to count the accounts behind a queue's waiting messages."""
    if not isinstance(name, str):
        return None
    task = wd.app.tasks.get(name)
    wanted = wd.policy(task if task is not None else name).alert_context
    if not wanted or not (isinstance(body, tuple) and len(body) == 3):  # protocol 2
        return None
    params = wd.recorder.batcher.param_names(task) if task is not None else []
    return named(wanted, body[0], body[1], params) or None


@_guarded
def _beat_sent(name: str, task_id: Any) -> None:
    for wd in _runtimes():
        if wd is not None and isinstance(task_id, str):
            wd.recorder.add(events.sent(task_id, name))

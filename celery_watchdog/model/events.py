"""The events ``flush.lua`` applies, built in one place with their fields typed. No I/O.

Three ends come from outside the run's own process (the run and the child's end are built
from a ``RunHandle`` in :mod:`..recording`): the worker's main process for a hard time limit,
a WorkerLostError or a revoke (``pid="*"``, authoritative: every open run of the id on that
host); the main process guessing that a dead child's run was lost (``guess``); and the monitor
ending the runs of a worker that stopped reporting. ``age`` is seconds before the flush on the
sender's monotonic clock (the recorder fills it in), so hosts never compare their clocks.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

#: The header a producer with the watchdog stamps into every message it publishes (when,
#: epoch seconds): the age of the oldest waiting message of a queue.
PUBLISHED_AT = "watchdog_published_at"

Outcome = Literal["succeeded", "failed", "retried", "revoked", "lost"]


class Redelivery(TypedDict):
    """A message came back (a child or worker died, a visibility timeout): one more delivery."""

    kind: Literal["redeliv"]
    id: str
    name: str
    worker: str | None


class End(TypedDict, total=False):
    kind: Literal["end"]
    id: str
    name: str
    worker: str
    pid: int | str | None  # the child's pid, or "*": whichever child of this host ran it
    slot: str
    state: str  # the Celery state it ended in
    outcome: Outcome
    exception: str | None
    traceback: str | None
    authoritative: bool
    guess: bool
    age: float
    # What the failure says beyond its text (recording.failures): its reason bucket, whether a
    # retry chain gave up, and a deterministic failure's input fingerprint.
    reason: str
    exhausted: bool
    fp: str
    fp_label: str
    q_after: int


class Sent(TypedDict):
    """Beat sent a scheduled task: when its entries last ran is judged from this."""

    kind: Literal["sent"]
    id: str
    name: str


class _Published(TypedDict):
    """A producer published a message to a broker whose waiting messages cannot be read."""

    kind: Literal["pub"]
    id: str
    queue: str


class Published(_Published, total=False):
    context: dict[str, Any]  # its alert_context values (redacted when flushed)


def published(task_id: str, queue: str, context: dict[str, Any] | None = None) -> Published:
    event: Published = {"kind": "pub", "id": task_id, "queue": queue}
    if context:
        event["context"] = context
    return event


def sent(task_id: str, name: str) -> Sent:
    return {"kind": "sent", "id": task_id, "name": name}


def redelivery(task_id: str, name: str, worker: str | None) -> Redelivery:
    return {"kind": "redeliv", "id": task_id, "name": name, "worker": worker}


def main_process_end(
    task_id: str, name: str, worker: str, state: str, outcome: Outcome, exception: str,
    traceback: str | None = None,
) -> End:  # fmt: skip
    """Ended as the worker's main process saw it (time limit, WorkerLostError, revoke)."""
    return {"kind": "end", "id": task_id, "name": name, "worker": worker, "pid": "*",
            "authoritative": True, "state": state, "outcome": outcome, "exception": exception,
            "traceback": traceback}  # fmt: skip


def guessed_end(
    task_id: str, name: str, worker: str, pid: int | None, state: str, outcome: Outcome,
    exception: str | None, *, slot: str | None = None, age: float | None = None,
) -> End:  # fmt: skip
    """Ended, as far as someone else can tell: its child died (or its worker), or the result
    backend says how. Adds nothing when the child recorded its own end."""
    end: End = {"kind": "end", "id": task_id, "name": name, "worker": worker,
                "pid": pid, "guess": True, "state": state,
                "outcome": outcome, "exception": exception}  # fmt: skip
    if slot is not None:
        end["slot"] = slot
    if age is not None:
        end["age"] = age
    return end

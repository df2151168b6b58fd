"""Dead-letter entries: building one from a run, reading them back, purging, exporting.

Fields are described in :mod:`celery_watchdog.dlq`.
"""

from __future__ import annotations

import base64
import fnmatch
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace
from typing import IO, TYPE_CHECKING, Any

from ..model.humanize import finite
from ..model.ids import TaskLookupError, unique_id
from ..model.records import Run, Verdict
from ..store.dlq import DLQ_MAX

if TYPE_CHECKING:
    from ..model.redact import Redactor
    from ..store import Store

# Request-dict keys that are Celery's own (protocol 2 headers, delivery details, the body):
# a replay sets these afresh; any other header is the publisher's own and travels along.
CELERY_KEYS = frozenset({
    "lang", "task", "id", "shadow", "eta", "expires", "group", "group_index", "retries",
    "timelimit", "root_id", "parent_id", "argsrepr", "kwargsrepr", "origin", "ignore_result",
    "replaced_task_nesting", "stamped_headers", "stamps", "properties", "reply_to",
    "correlation_id", "hostname", "delivery_info", "args", "kwargs", "is_eager", "callbacks",
    "errbacks", "chain", "chord", "compression",
})  # fmt: skip


def make_entry(
    run: Run, verdict: Verdict, message: dict[str, Any] | None, now: float, *,
    idempotent: bool, first_error: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The entry for ``store.dlq.add`` (fields in :mod:`celery_watchdog.dlq`)."""
    return {
        "id": run.task_id, "name": run.name, "queue": run.queue, "message": message,
        "verdict": verdict.health, "reason": verdict.reason,
        "args": run.args, "kwargs": run.kwargs,
        "first_error": first_error or run.first_error or run.exception,
        "last_error": run.exception, "failure_reason": run.reason, "cursor": run.cursor,
        "traceback": run.traceback, "deliveries": run.deliveries, "worker": run.worker,
        "pid": run.pid, "step": run.step, "processed": run.processed, "total": run.total,
        "started": run.started, "last_heartbeat": run.last_heartbeat, "dead_lettered_at": now,
        "idempotent": idempotent, "state": "dead", "audit": [],
    }  # fmt: skip


_INTS = frozenset({"deliveries", "pid", "processed", "total", "message_size"})
# The text an entry holds that a task (or an older version that stored it unscrubbed) wrote.
_TEXTS = ("name", "verdict", "reason", "diagnosis", "queue", "args", "kwargs", "first_error",
          "last_error", "traceback", "worker", "step")  # fmt: skip
_FLOATS = frozenset({"started", "last_heartbeat", "dead_lettered_at"})


def _field(name: str, raw: Any) -> Any:
    """One hash field back to its type (the store keeps strings, and JSON for message/audit)."""
    if name == "message":
        return raw if isinstance(raw, dict) else None
    if name == "audit":
        return tuple(a for a in raw if isinstance(a, dict)) if isinstance(raw, list) else ()
    if name == "idempotent":
        return str(raw).lower() in ("true", "1")
    if name in _INTS or name in _FLOATS:
        try:
            return int(float(raw)) if name in _INTS else float(raw)
        except (TypeError, ValueError):
            return None
    return str(raw)


@dataclass(frozen=True)
class DeadLetter:
    """One entry as read back from the store (fields in the module docstring)."""

    task_id: str
    name: str = ""
    state: str = "dead"
    verdict: str = ""
    reason: str = ""
    diagnosis: str | None = None
    queue: str | None = None
    message: dict[str, Any] | None = None
    args: str = ""
    kwargs: str = ""
    first_error: str | None = None
    last_error: str | None = None
    failure_reason: str | None = None  # the last error's bucket (model.reasons)
    cursor: str | None = None  # JSON of where its work got to: a replay resumes from it
    fingerprint: str | None = None  # parked because this input is quarantined
    traceback: str | None = None
    deliveries: int = 0
    worker: str | None = None
    pid: int | None = None
    step: str | None = None
    processed: int | None = None
    total: int | None = None
    started: float | None = None
    last_heartbeat: float | None = None
    dead_lettered_at: float | None = None
    idempotent: bool = False
    audit: tuple[dict[str, Any], ...] = ()
    message_size: int | None = None  # read without its message (a list): how big it is

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> DeadLetter:
        values: dict[str, Any] = {"task_id": str(doc.get("id", ""))}
        for f in fields(cls)[1:]:
            if doc.get(f.name) not in (None, ""):
                values[f.name] = _field(f.name, doc[f.name])
        if values.get("deliveries") is None:
            values.pop("deliveries", None)
        return cls(**values)

    @property
    def replayable(self) -> bool:
        if self.message is None and self.message_size is not None:
            return self.message_size > 2  # a JSON message, not "null" (read without it)
        return bool(self.message and self.message.get("body"))

    @property
    def replayed(self) -> bool:
        return self.state == "replayed"

    @property
    def last_replay(self) -> dict[str, Any] | None:
        return next((a for a in reversed(self.audit) if a.get("action") == "replayed"), None)

    def scrubbed(self, redactor: Redactor) -> DeadLetter:
        """The same entry with secret values out of every text it holds (what is shown)."""
        changes: dict[str, Any] = {
            name: redactor.text(value)
            for name in _TEXTS
            if isinstance(value := getattr(self, name), str) and value
        }
        changes["audit"] = tuple(
            {k: redactor.text(v) if isinstance(v, str) else v for k, v in a.items()}
            for a in self.audit
        )
        return replace(self, **changes)

    def to_doc(self, redactor: Redactor) -> dict[str, Any]:
        """The shown document: redacted previews only, never the original arguments; secret
        values scrubbed from its texts and no NaN or infinity (JSON has neither)."""
        shown = self.scrubbed(redactor)
        doc = {"id": self.task_id, **asdict(shown)}
        del doc["task_id"]
        doc["audit"] = list(shown.audit)
        doc["replayable"] = self.replayable
        doc["message"] = None if self.message is None else _shown_message(self.message, redactor)
        return finite(doc)


def _shown_message(message: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    """Where the message went and what travels with it; never its arguments in any form."""
    headers = message.get("headers") or {}
    custom = {k: v for k, v in headers.items() if k not in CELERY_KEYS}
    keep = ("task", "id", "content_type", "content_encoding", "exchange", "routing_key", "priority")
    return {
        **{k: message.get(k) for k in keep},
        **{k: headers.get(k) for k in ("root_id", "parent_id", "retries", "origin")},
        "body_bytes": len(base64.b64decode(message["body"])) if message.get("body") else 0,
        "headers": redactor.mapping(custom),  # the publisher's own headers, redacted by name
        "links": {
            k: [redactor.text(n) for n in _task_names(headers.get(k))]
            for k in ("callbacks", "errbacks", "chain")
        },
    }


def _task_names(signatures: Any) -> list[str]:
    return [str(s.get("task")) for s in signatures or () if isinstance(s, dict)]


def entries(
    store: Store, *, task: str | None = None, limit: int | None = None,
    with_message: bool = True,
) -> list[DeadLetter]:  # fmt: skip
    """Entries newest first; ``task`` is a name or a glob such as ``reports.*``.

    ``with_message=False`` for listings: a message can be megabytes, and a list needs only
    whether it was kept.
    """
    ids = store.dlq.ids(0, DLQ_MAX)
    docs = store.dlq.get_many(ids, with_message=with_message)
    found = [DeadLetter.from_doc(d) for d in docs if d]
    if task:
        found = [e for e in found if fnmatch.fnmatchcase(e.name, task)]
    return found[:limit]


def get(store: Store, task_id: str) -> DeadLetter | None:
    doc = store.dlq.get(task_id)
    return DeadLetter.from_doc(doc) if doc else None


def purge(store: Store, ids: Iterable[str] | None = None, by: str = "") -> int:
    """Delete the given entries, or every entry; returns how many were deleted. Who purged
    them is kept a while: their incidents resolve as "purged by …"."""
    targets = list(ids) if ids is not None else store.dlq.ids(0, DLQ_MAX)
    store.dlq.mark_gone(targets, "purged", by, store.now())
    return store.dlq.delete(*targets)


def export(
    store: Store, out: IO[str], redactor: Redactor, *, task: str | None = None,
    include_messages: bool = False,
) -> int:  # fmt: skip
    """JSON lines, one entry each. Redacted unless ``include_messages`` (then the originals,
    base64 body and full headers, are written too: treat such a file as a secret)."""
    count = 0
    for entry in entries(store, task=task):
        doc = entry.to_doc(redactor)
        if include_messages:
            doc["message"] = finite(entry.message)
        out.write(json.dumps(doc, default=str, separators=(",", ":"), allow_nan=False) + "\n")
        count += 1
    return count


def resolve(store: Store, id_or_prefix: str) -> str:
    """The full id of an entry from its id or a unique prefix, or :class:`TaskLookupError`."""
    wanted = id_or_prefix.strip()
    if not wanted:
        raise TaskLookupError("a dead-letter entry id (or a unique prefix of one) is required")
    missing = f"no dead-letter entry with id or prefix {wanted!r}"
    return unique_id(wanted, store.dlq.find(wanted, limit=10), "dead-letter", missing)

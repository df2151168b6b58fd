"""Replay: publish an entry's original task again, safely (see :mod:`celery_watchdog.dlq`)."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from kombu.exceptions import OperationalError
from kombu.serialization import loads, prepare_accept_content, registry

from ..model.events import PUBLISHED_AT
from .entry import CELERY_KEYS, DeadLetter, get

if TYPE_CHECKING:
    from celery import Celery

    from ..store import Store

REPLAY_HEADER = "watchdog_replay_of"
RESUME_HEADER = "watchdog_resume_from"  # the cursor the next attempt starts from (JSON text)
HELD_HEADER = "watchdog_held_by"  # a message a pause held, released: it runs, never held again


@dataclass(frozen=True)
class ReplayResult:
    """What a replay did with one entry: replayed, dry_run, refused or failed."""

    id: str
    name: str
    outcome: str
    reason: str = ""
    new_task_id: str | None = None
    queue: str | None = None
    args: str = ""
    kwargs: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome in ("replayed", "dry_run")

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)


def replay_candidates(found: Sequence[DeadLetter], *, force: bool = False) -> list[DeadLetter]:
    """What ``replay --all`` replays: replayable entries, not yet replayed unless ``force``."""
    return [e for e in found if e.replayable and (force or not e.replayed)]


def replay(
    app: Celery, store: Store, ids: Sequence[str], *, queue: str | None = None,
    dry_run: bool = False, force: bool = False, batch_size: int = 100,
    rate: float | None = None, now: float,
) -> list[ReplayResult]:  # fmt: skip
    """Publish each entry's original task again under a new id (see :mod:`celery_watchdog.dlq`).

    ``now`` is the Redis server's clock at the start; audit times advance from it. After
    every ``batch_size`` publishes it sleeps as needed to keep to ``rate`` per second.
    """
    results: list[ReplayResult] = []
    started = time.monotonic()
    published = 0
    for i, task_id in enumerate(ids):
        if published and rate and published % batch_size == 0:
            time.sleep(max(0.0, published / rate - (time.monotonic() - started)))
        at = now + time.monotonic() - started
        try:
            result = _replay_one(app, store, task_id, queue, dry_run, force, at)
        except _Unreachable as stop:
            # Each further attempt would wait for the same dead broker: report, do not try.
            why = f"not attempted: {stop.result.reason}"
            results.append(stop.result)
            results.extend(ReplayResult(other, "", "failed", why) for other in ids[i + 1 :])
            break
        published += result.outcome == "replayed"
        results.append(result)
    return results


class _Unreachable(Exception):
    def __init__(self, result: ReplayResult) -> None:
        super().__init__(result.reason)
        self.result = result


def _replay_one(
    app: Celery, store: Store, task_id: str, queue: str | None, dry_run: bool, force: bool,
    at: float,
) -> ReplayResult:  # fmt: skip
    if not dry_run and not store.dlq.lock(task_id):
        return ReplayResult(task_id, "", "refused", "another replay of it is in progress")
    try:
        entry = get(store, task_id)
        if entry is None:
            return ReplayResult(task_id, "", "refused", "no such dead-letter entry")
        refused = _refusal(entry, force)
        if refused:
            return ReplayResult(task_id, entry.name, "refused", refused)
        assert entry.message is not None  # replayable
        target = queue or _original_queue(entry)

        def result(outcome: str, reason: str, new_id: str | None = None) -> ReplayResult:
            return ReplayResult(task_id, entry.name, outcome, reason, new_id, target,
                                entry.args, entry.kwargs)  # fmt: skip

        try:
            args, kwargs, embed = _decode(app, entry.message)
        except Exception as exc:
            return result("refused", f"the original message cannot be decoded: {_error(exc)}")
        if dry_run:
            return result("dry_run", "nothing published")
        new_id = str(uuid.uuid4())
        try:
            publish_original(
                app, entry.task_id, entry.message, new_id=new_id, queue=queue,
                fallback_queue=entry.queue, name=entry.name or None,
                decoded=(args, kwargs, embed), resume_from=entry.cursor,
            )  # fmt: skip
        except Exception as exc:  # broker down, bad route…: the entry stays as it was
            failed = result("failed", f"publish failed, entry left unchanged: {_error(exc)}")
            if isinstance(exc, (OperationalError, OSError)):
                raise _Unreachable(failed) from exc
            return failed
        record = {"at": at, "action": "replayed", "new_task_id": new_id, "queue": target,
                  "forced": bool(force and entry.replayed)}  # fmt: skip
        try:
            store.dlq.update(task_id, state="replayed", audit=[*entry.audit, record])
            if entry.fingerprint:  # replayed after the fix: its input may run again
                store.quarantine.release([entry.fingerprint], f"a replay of {task_id[:8]}…",
                                         "released", at)  # fmt: skip
        except Exception as exc:  # published already: say so rather than hide the new id
            why = f"published, but the entry could not be marked replayed: {_error(exc)}"
            return result("replayed", why, new_id)
        return result("replayed", "", new_id)
    finally:
        if not dry_run:
            store.dlq.unlock(task_id)


def _refusal(entry: DeadLetter, force: bool) -> str:
    if not entry.replayable:
        return "not replayable: the run was removed before its worker saved its message"
    if entry.replayed and not force:
        last = entry.last_replay or {}
        return f"already replayed as {last.get('new_task_id', '?')}; use --force to replay again"
    return ""


def _error(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _original_queue(entry: DeadLetter) -> str | None:
    message = entry.message or {}
    return message.get("routing_key") or entry.queue


def _decode(app: Celery, message: dict[str, Any]) -> tuple[list[Any], dict[str, Any], dict]:
    """The original (args, kwargs, embed); only content types the app accepts are decoded."""
    accept = prepare_accept_content(app.conf.accept_content)
    body = loads(
        base64.b64decode(message["body"]), message.get("content_type"),
        message.get("content_encoding") or "utf-8", accept=accept,
    )  # fmt: skip
    if isinstance(body, dict):  # task protocol 1
        return list(body.get("args") or ()), dict(body.get("kwargs") or {}), body
    args, kwargs, embed = body
    return list(args), dict(kwargs), dict(embed or {})


def publish_original(
    app: Celery,
    task_id: str,
    message: dict[str, Any],
    *,
    new_id: str,
    queue: str | None = None,
    name: str | None = None,
    marker: str = REPLAY_HEADER,
    fallback_queue: str | None = None,
    decoded: tuple[list[Any], dict[str, Any], dict] | None = None,
    resume_from: str | None = None,
    keep_schedule: bool = False,
) -> None:
    """Publish the task of an original message again, with its original arguments.

    Used by replay and by the monitor's requeue: a new id (the old one may sit in workers'
    revoked lists), the original args/kwargs, callbacks, errbacks, chain, serializer,
    priority, time limits and the publisher's own headers, plus ``marker=<old id>``.
    ``keep_schedule`` keeps its ``eta`` and ``expires`` (a message held by a pause is released
    as it was sent: a countdown still counts down, an expiry still applies).
    """
    args, kwargs, embed = decoded or _decode(app, message)
    headers = message.get("headers") or {}
    # The original's publish stamp is dropped: the age of this message starts now.
    custom = {k: v for k, v in headers.items() if k not in CELERY_KEYS and k != PUBLISHED_AT}
    hard, soft = [*(headers.get("timelimit") or ()), None, None][:2]
    root_id = headers.get("root_id")
    options: dict[str, Any] = {
        "task_id": new_id,
        "headers": {**custom, marker: task_id,
                    **({RESUME_HEADER: resume_from} if resume_from else {})},
        "serializer": registry.type_to_name.get(message.get("content_type") or ""),
        # A task that was its own root is the root of its replay too.
        "root_id": None if root_id in (None, task_id) else root_id,
        "parent_id": headers.get("parent_id"),
        "shadow": headers.get("shadow"),
        "ignore_result": headers.get("ignore_result"),
        "link": embed.get("callbacks"),
        "link_error": embed.get("errbacks"),
        "chain": embed.get("chain"),
        # eta/expires are dropped on purpose: a replay runs now, and an expiry that has
        # passed would make every worker discard it. A chord is not rejoined: its header
        # group already counted the original run.
        "retry": False,  # a broker that is down is reported, not waited for
    }
    for key, value in (("time_limit", hard), ("soft_time_limit", soft)):
        if value is not None:  # unset: the task's own limits apply, as they did originally
            options[key] = value
    if keep_schedule:
        for key in ("eta", "expires"):
            if isinstance(headers.get(key), str):
                options[key] = headers[key]
    if message.get("priority") is not None:
        options["priority"] = message["priority"]
    if queue:
        options["queue"] = queue
    elif message.get("exchange"):
        options["exchange"], options["routing_key"] = message["exchange"], message["routing_key"]
    elif target := message.get("routing_key") or fallback_queue:
        options["queue"] = target
    app.send_task(name or message["task"], args, kwargs, **options)

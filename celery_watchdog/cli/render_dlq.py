"""Human output of ``celery watchdog dlq …``: entries and replay results, as text.

Like :mod:`.render`, every function takes the ``now`` its facts were read with (the Redis
server's clock). Only redacted previews reach this module, never an entry's original message;
text an entry holds is printed with terminal controls escaped (``printable``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ..dlq import DeadLetter, ReplayResult
from ..model.humanize import NONE, ago, cut, fields, printable, progress_bar, table, timestamp
from .render import SHORT_ID

LIST_COLUMNS = ("ID", "NAME", "VERDICT", "DEAD-LETTERED", "DELIVERIES", "WORKER", "STATE",
                "REASON")  # fmt: skip
NOT_REPLAYABLE = "removed before its worker saved the original message"


def _state(entry: DeadLetter, now: float) -> str:
    if entry.replayed:
        return f"replayed {ago((entry.last_replay or {}).get('at'), now)}"
    return "dead" if entry.replayable else "not replayable"


def list_text(found: Sequence[DeadLetter], now: float, total: int | None = None) -> str:
    """A summary line, then one aligned row per entry (newest first)."""
    if not found:
        return "The dead-letter queue is empty (or no entry matches)."
    replayed = sum(e.replayed for e in found)
    stuck = sum(not e.replayable for e in found)
    head = f"{len(found)} dead-letter entries: {len(found) - replayed} waiting"
    head += f" ({stuck} not replayable)" if stuck else ""
    head += f", {replayed} replayed"
    rows = [
        [e.task_id[:SHORT_ID], cut(e.name, 40), e.verdict or NONE,
         ago(e.dead_lettered_at, now), e.deliveries, cut(e.worker, 32), _state(e, now),
         cut(e.last_error or e.reason, 60)]
        for e in found
    ]  # fmt: skip
    text = head + "\n\n" + table(LIST_COLUMNS, rows)
    if total is not None and total > len(found):
        text += f"\n… {total - len(found)} more; use --limit N or --task NAME to see them."
    return printable(text)


def show_text(entry: DeadLetter, doc: Mapping[str, Any], now: float) -> str:
    """One entry: what it was, why it was removed, where it was, and what happened since."""

    def when(ts: float | None) -> str | None:
        return None if ts is None else f"{ago(ts, now)} ({timestamp(ts)})"

    message = doc.get("message") or {}
    headers = message.get("headers") or {}
    links = message.get("links") or {}
    pairs: list[tuple[str, object]] = [
        ("Task", f"{entry.task_id}  {entry.name}"),
        ("Verdict", entry.verdict + (f": {entry.reason}" if entry.reason else "")),
        ("Where it waited", entry.diagnosis),
        ("State", _state(entry, now)),
        ("Replayable", "yes" if entry.replayable else f"no: {NOT_REPLAYABLE}"),
        ("Queue", entry.queue),
        ("Args", entry.args),
        ("Kwargs", entry.kwargs),
        ("Worker", entry.worker and entry.worker + (f" (pid {entry.pid})" if entry.pid else "")),
        ("Started", when(entry.started)),
        ("Heartbeat", when(entry.last_heartbeat)),
        ("Dead-lettered", when(entry.dead_lettered_at)),
        ("Step", entry.step),
        ("Progress", progress_bar(entry.processed, entry.total)),
        ("Deliveries", entry.deliveries or None),
        ("Idempotent", "yes" if entry.idempotent else "no"),
        ("First error", entry.first_error if entry.first_error != entry.last_error else None),
        ("Last error", entry.last_error),
        ("Traceback", entry.traceback),
        ("Parent", message.get("parent_id")),
        ("Root", message.get("root_id") if message.get("root_id") != entry.task_id else None),
        ("Headers", ", ".join(f"{k}={v}" for k, v in headers.items()) or None),
        ("Links", ", ".join(f"{k}: {' | '.join(v)}" for k, v in links.items() if v) or None),
        ("Audit", "\n".join(_audit_line(a) for a in entry.audit) or None),
    ]
    return printable(fields(pairs))


def _audit_line(record: Mapping[str, Any]) -> str:
    line = f"{timestamp(record.get('at'))}  {record.get('action')}"
    if record.get("new_task_id"):
        line += f" as {record['new_task_id']} to queue {record.get('queue') or NONE}"
    return line + (" (forced)" if record.get("forced") else "")


def replay_text(results: Sequence[ReplayResult], dry_run: bool) -> str:
    """One row per entry, then what happened in total."""
    if not results:
        return "Nothing to replay."
    outcome = {"dry_run": "would replay"}
    rows = [
        [r.id[:SHORT_ID], cut(r.name, 40) if r.name else NONE, outcome.get(r.outcome, r.outcome),
         r.queue, cut(f"{r.args} {r.kwargs}".strip(), 50) if r.ok else NONE,
         r.new_task_id or cut(r.reason, 90) or NONE]
        for r in results
    ]  # fmt: skip
    text = table(["ID", "NAME", "OUTCOME", "QUEUE", "ARGS", "NEW ID / REASON"], rows)
    counts = Counter(r.outcome for r in results)
    if dry_run:
        summary = f"Dry run: {counts['dry_run']} would be replayed, nothing was published"
    else:
        summary = f"{counts['replayed']} replayed"
    summary += "".join(f", {counts[k]} {k}" for k in ("refused", "failed") if counts[k])
    return printable(text + "\n\n" + summary + ".")


def nothing_to_replay(found: Sequence[DeadLetter]) -> str:
    """Why ``replay --all`` found nothing to do."""
    if not found:
        return "Nothing to replay: no dead-letter entry matches."
    replayed = sum(e.replayed and e.replayable for e in found)
    parts = [f"{replayed} already replayed (use --force to replay again)"] if replayed else []
    if stuck := sum(not e.replayable for e in found):
        parts.append(f"{stuck} not replayable")
    return f"Nothing to replay: of {len(found)} entries, " + " and ".join(parts) + "."

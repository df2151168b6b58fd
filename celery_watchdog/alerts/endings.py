"""How an incident ends: the work is done or given up on, not merely a process stopped.

Pure decisions over what the review read (:meth:`.incidents.Alerter.review`), plus the two
lookups a replay or a requeue needs (did the new run succeed?).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..model import failure_rules
from ..model.records import NameStats
from ..store import IncidentDoc, Store
from .wording import FAILURE_KINDS

RUN_KINDS = ("stuck", "slow", "overtime")  # resolved when their run ends
QUEUE_KINDS = ("queue_backlog", "queue_stalled")  # resolved when the queue drains


def how_ended(inc: IncidentDoc) -> str:
    """What ends an incident: its run, a dead letter, a requeued run, or something else."""
    action = inc.alert.get("action")
    if inc.kind == "watchdog_blind":
        return "blind"
    if action == "requeued" and inc.alert.get("requeued_as"):
        return "requeue"
    if inc.kind == "duplicate":
        return "duplicate"
    if inc.kind in FAILURE_KINDS:
        return "failing"
    if action == "quarantined":
        return "quarantine"
    if inc.kind in QUEUE_KINDS:
        return "queue"
    if inc.kind == "missed_run":
        return "schedule"
    if inc.kind in RUN_KINDS and action != "dead_lettered":
        return "run"
    return "dead_letter"


def failing_cleared(
    inc: IncidentDoc, failing: Mapping[str, int], stats: NameStats | None,
    history: Mapping[str, Sequence[tuple[int, int]]], now: float,
) -> str | None:  # fmt: skip
    """A task name's failure incident ends when its condition has cleared, with hysteresis."""
    hour = stats.last_hour if stats is not None else {}
    if inc.kind == "failed":
        # a success since it opened (the streak is back to 0)
        if failure_rules.failed_resolved(failing.get(inc.name, 0)):
            return f"{inc.name} succeeds again"
        return None
    if inc.kind == "retry_storm":
        if failure_rules.retry_storm_resolved(hour.get("retried", 0), hour.get("succeeded", 0)):
            return "the retries calmed down"
        return None
    runs = sum(hour.get(k, 0) for k in ("succeeded", "failed", "lost"))
    failed = hour.get("failed", 0) + hour.get("lost", 0)
    if failure_rules.failure_spike_resolved(runs, failed, history.get(inc.name, ())):
        return "its failure rate is back to normal"
    return None


def ran_since(entry: Mapping[str, Any], opened_at: float) -> bool:
    """A missed run is over once the work ran again, not merely once beat sent it again."""
    keys = ("last_started", "last_succeeded")
    ran = [t for k in keys if isinstance(t := entry.get(k), (int, float))]
    return bool(ran) and max(ran) > opened_at


def task_id_of(subject: str) -> str:
    """The task id in an incident subject: a run key ``id|worker|slot`` or ``msg:<id>``."""
    return subject.removeprefix("msg:").split("|", 1)[0]


def released(gone: Mapping[str, Any] | None) -> str | None:
    """A quarantined input's incident ends when the input is let through again."""
    if not gone:
        return None
    how = gone.get("how") or "released"
    return f"{how} by {gone.get('by') or 'someone'}"


def succeeded(store: Store, task_id: str, how: str) -> str | None:
    """``"requeued as 3f2a1b0c…, succeeded"`` once that task's run succeeded, else None."""
    if any(run.state == "SUCCESS" for run in store.runs.of_task(task_id)):
        return f"{how} {task_id[:8]}…, succeeded"
    return None


def dead_letter_cleared(
    store: Store, inc: IncidentDoc, entries: list[Any], gone: list[Any], stats: Any
) -> str | None:
    """A dead-lettered run: over once its entry was replayed and the replay succeeded, or the
    entry was purged. A lost run left to the broker (no entry): once its task succeeds."""
    if any(entries):
        whys = [replayed(store, e) if e else None for e in entries]
        if all(whys):
            return whys[0] if len(whys) == 1 else f"all {len(whys)} replayed and succeeded"
        return None
    marks = [g for g in gone if g]
    if marks:
        by = marks[0].get("by") or "someone"
        return f"purged by {by}" if len(marks) == 1 else f"{len(marks)} purged by {by}"
    last_success = getattr(stats, "last_success", None)
    if last_success is not None and last_success > inc.opened_at:
        return f"{inc.name} succeeds again"
    return None


def replayed(store: Store, entry: dict[str, Any]) -> str | None:
    if entry.get("state") != "replayed":
        return None
    audit = entry.get("audit") or []
    last = next((a for a in reversed(audit) if a.get("action") == "replayed"), None)
    new_id = (last or {}).get("new_task_id")
    if not new_id:  # replayed before replays were recorded: nothing more to wait for
        return "replayed from the dead-letter queue"
    return succeeded(store, str(new_id), "replayed as")

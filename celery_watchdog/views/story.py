"""One task's whole story, for the page's ``/task/<id>``: :func:`task_story_doc`.

``task ID`` (:func:`.documents.task_doc`) plus what happened around the task: where each run
waits, its dead-letter entry and replays, the incidents it opened and the alerts they sent, as
one timeline in plain words. A task whose run records expired is told from its dead-letter
entry (entries outlive runs). Nothing is judged again here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..dlq.entry import DeadLetter
from ..dlq.entry import resolve as resolve_dead_letter
from ..model.humanize import finite
from ..model.ids import TaskLookupError
from ..model.plans import STOPPED
from ..model.records import Run
from ..store import IncidentDoc
from .documents import task_doc
from .page import incident_row, ordered_incidents, where_it_waits

if TYPE_CHECKING:
    from ..runtime import Watchdog
    from ..store import Store

INCIDENT_SCAN = 1000  # recent incidents (resolved ones too) searched for the task's own


def task_story_doc(
    store: Store, wd: Watchdog, task_id_or_prefix: str, now: float
) -> dict[str, Any]:
    """``task ID`` plus where it waits, its dead letter, incidents and alerts, as a timeline.

    A task whose records expired but whose dead-letter entry is kept (entries outlive runs) is
    told from the entry alone; :class:`TaskLookupError` when neither is known.
    """
    task: dict[str, Any] | None = None
    try:
        task = task_doc(store, wd, task_id_or_prefix, now=now)
        task_id = str(task["uuid"])
    except TaskLookupError:
        try:
            task_id = resolve_dead_letter(store, task_id_or_prefix)
        except TaskLookupError:
            raise TaskLookupError(f"no task or dead letter with id {task_id_or_prefix!r}") from None
    runs = store.runs.of_task(task_id) if task else []
    running = [r for r in runs if r.running]
    cpu = store.workers.cpu_of([(r.worker or "", r.task_id, r.pid) for r in running])
    stored = store.dlq.get(task_id)
    letter = DeadLetter.from_doc(stored).to_doc(wd.redactor) if stored else None
    incidents = [incident_row(i) for i in ordered_incidents(_incidents_of(store, task_id))]
    by_run = {(r.worker, r.pid, r.started): r for r in runs}
    for summary in (task or {}).get("watchdog", {}).get("runs", []):
        run = by_run.get((summary["worker"], summary["pid"], summary["started"]))
        cpu_now = cpu.get((run.task_id, run.pid)) if run else None
        stopped = summary["health"] in STOPPED
        summary["where"] = (
            where_it_waits(run, cpu_now, stopped=stopped) if run and run.running else None
        )
        summary["verdict"] = run.verdict if run else None
        summary["verdict_reason"] = run.verdict_reason if run else None
    return finite({
        "timestamp": now, "id": task_id, "task": task, "dead_letter": letter,
        "incidents": incidents,
        "timeline": timeline(task, runs, letter, incidents),
    })  # fmt: skip


def _incidents_of(store: Store, task_id: str) -> list[IncidentDoc]:
    """Incidents about this task (its run, its message), resolved ones included while kept."""
    return [i for i in store.incidents.recent(INCIDENT_SCAN)
            if i.alert.get("task_id") == task_id or i.subject.startswith(task_id)
            or i.subject == f"msg:{task_id}"]  # fmt: skip


def timeline(
    task: Mapping[str, Any] | None, runs: Sequence[Run], letter: Mapping[str, Any] | None,
    incidents: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:  # fmt: skip
    """What happened to a task, oldest first: ``{at, what, detail}`` in plain words."""
    events: list[tuple[float | None, str, str]] = []
    if task:
        failure = task["watchdog"].get("failure") or {}
        events += [
            (task.get("received"), "Received again by a worker (a redelivery)", ""),
            # A retry chain's first error, when it is not the one it ended with.
            (failure.get("first_error_at") if failure.get("first_error") != task.get("exception")
             else None, "First error", str(failure.get("first_error") or "")),
            (task.get("retried"), "Retried", ""),
            (task.get("failed"), "Failed", str(task.get("exception") or "")),
            (task.get("succeeded"), "Finished successfully", ""),
            (task.get("revoked"), "Stopped (revoked)", ""),
        ]  # fmt: skip
    for run in runs:
        on = f"on {run.worker}" + (f" (process {run.pid})" if run.pid else "")
        events += [
            (run.started, "Started", on if run.worker else ""),
            (run.step_started, f"Step '{run.step}' began", ""),
            (run.last_progress, "Last progress", _progress(run.processed, run.total)),
            (run.last_heartbeat, "Last heartbeat", ""),
        ]
    if letter:
        events.append((letter.get("dead_lettered_at"), "Moved to the dead letters",
                       str(letter.get("reason") or "")))  # fmt: skip
        events += [(a.get("at"), _audit_words(a), "") for a in letter.get("audit") or ()]
    for i in incidents:
        about = f"{i['severity']} {i['kind'].replace('_', ' ')}: {i['summary']}"
        events += [
            (i["opened_at"], "Incident opened", about),
            (i["notified_at"], f"Alert sent ({i['notifications']} in all)", ""),
            (i.get("acked_at"), "Acknowledged", " ".join(x for x in (i["by"], i["note"]) if x)),
            (i["resolved_at"], "Incident resolved", str(i.get("resolution") or "")),
        ]  # fmt: skip
    shown = [{"at": at, "what": what, "detail": detail}
             for at, what, detail in events if isinstance(at, (int, float))]  # fmt: skip
    return sorted(shown, key=lambda e: e["at"])


def _progress(processed: int | None, total: int | None) -> str:
    if processed is None:
        return ""
    return f"{processed} of {total} done" if total else f"{processed} done"


def _audit_words(record: Mapping[str, Any]) -> str:
    action = str(record.get("action") or "changed")
    if record.get("new_task_id"):
        return f"{action.capitalize()} as task {record['new_task_id']}" + (
            f" to queue {record['queue']}" if record.get("queue") else ""
        )
    return action.capitalize()

"""The page's document: one screen of what needs attention, in the order a person reads it.

:func:`page_doc` composes what the other documents already say — :func:`.status.status_doc`
(task names, workers, pauses, the watchdog's own state), the runs judged as ``tasks`` judges
them (:func:`.documents.flower_task`), open incidents, dead letters as ``dlq list`` shows them,
and the queues and schedules as the last monitor pass judged them (the page never reads the
broker: it must stay cheap at a refresh every few seconds, and work where only Redis is
reachable). Nothing is judged again here; this module only picks, orders and caps.

Every text in it was redacted when it was recorded; argument previews are the only arguments
ever shown. One task's whole story is :mod:`.story`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..dlq.entry import DeadLetter
from ..model import diagnosis
from ..model.humanize import finite
from ..model.plans import STOPPED
from ..model.records import Run
from ..store import IncidentDoc
from .documents import Judged, _judge_running, _Scene, _severity, flower_task
from .status import status_of

if TYPE_CHECKING:
    from ..runtime import Watchdog
    from ..store import Store

ROWS = 50  # runs in trouble, incidents, dead letters and job types shown at most
FINE_ROWS = 20  # runs going well shown at most (the count says how many there are)
CHART_DAYS = 14  # a queue's chart: the oldest waiting message per day, these many days
INCIDENT_SCAN = 1000  # open incidents read at most
TROUBLE = ("backlog", "stalled")
QUIET = ("ok", "empty")  # a queue in this health with nothing waiting is listed, not charted
# An incident someone must look at comes first; one a person took on, then snoozed, after.
_STATE_ORDER = {"open": 0, "acknowledged": 1, "snoozed": 2}
# What a page row needs of an incident's alert (its full record holds more).
_ALERT_FACTS = ("reason", "diagnosis", "step", "processed", "total", "next_step", "context",
                "worker", "queue", "action", "owner", "runbook")  # fmt: skip


def page_doc(store: Store, wd: Watchdog, now: float) -> dict[str, Any]:
    """Everything the page shows, in the order a person reads it."""
    scene = _Scene(store, wd, now)
    judged = _judge_running(store, scene)
    status = status_of(store, wd, scene, judged)
    runs = _runs(store, judged, now)
    incidents = [incident_row(i) for i in ordered_incidents(store.incidents.active(INCIDENT_SCAN))]
    queues = _queues(store, now)
    schedules = sorted(store.beat.latest().values(),
                       key=lambda d: (not d.get("kind"), str(d.get("entry"))))  # fmt: skip
    doc = {
        "timestamp": now,
        "attention": _attention(status["watchdog"], incidents, runs, queues, schedules),
        "incidents": incidents[:ROWS],
        "queues": queues,
        "runs": runs,
        "dead_letters": _dead_letters(store, wd),
        "task_names": _task_names(status["tasks"].values()),
        "task_names_total": len(status["tasks"]),
        "schedules": schedules,
        "paused": status["paused"],
        "workers": status["workers"],
        "watchdog": status["watchdog"],
    }
    return finite(doc)


# -- runs ------------------------------------------------------------------------------------


def where_it_waits(run: Run, cpu_percent: float | None, *, stopped: bool = True) -> str | None:
    """The monitor's "where it waits" line for a run, from the stack its process took once it
    went quiet and its CPU now. Without a stack, only for a run judged stopped (``stopped``:
    a child spinning in C takes none, and says so); None for one still moving."""
    if not run.stack and (cpu_percent is None or not stopped):
        return None
    return diagnosis.of_record(run.stack, cpu_percent)


def _runs(store: Store, judged: Sequence[Judged], now: float) -> dict[str, Any]:
    """Runs in trouble (worst first, then longest running) and a few going well."""

    def started(j: Judged) -> float:
        return j.run.started if j.run.started is not None else now

    trouble = sorted((j for j in judged if j.verdict.health != "ok"),
                     key=lambda j: (-_severity(j.verdict.health), started(j)))[:ROWS]  # fmt: skip
    fine = sorted((j for j in judged if j.verdict.health == "ok"), key=started)[:FINE_ROWS]
    cpu = store.workers.cpu_of([(j.run.worker or "", j.run.task_id, j.run.pid) for j in trouble])
    return {
        "running": len(judged),
        "by_health": dict(Counter(j.verdict.health for j in judged)),
        "trouble": [_run_row(j, now, cpu.get((j.run.task_id, j.run.pid))) for j in trouble],
        "fine": [_run_row(j, now, None) for j in fine],
    }


def _run_row(judged: Judged, now: float, cpu_percent: float | None) -> dict[str, Any]:
    doc = flower_task(judged, now)
    watch = doc["watchdog"]
    return {
        "id": doc["uuid"], "name": doc["name"], "state": doc["state"], "worker": doc["worker"],
        "started": doc["started"], "args": doc["args"], "kwargs": doc["kwargs"],
        "where": where_it_waits(judged.run, cpu_percent, stopped=judged.verdict.health in STOPPED),
        **{k: watch[k] for k in ("health", "reason", "elapsed", "step", "step_started",
                                 "processed", "total", "last_heartbeat", "last_progress",
                                 "deliveries", "queue", "owner", "runbook", "copies")},
    }  # fmt: skip


# -- incidents, queues, dead letters, task names ----------------------------------------------


def ordered_incidents(incidents: Iterable[IncidentDoc]) -> list[IncidentDoc]:
    """Open before acknowledged before snoozed; P1 first; the newest first within."""
    return sorted(incidents, key=lambda i: (_STATE_ORDER.get(i.state, 3), i.severity,
                                            -i.opened_at))  # fmt: skip


def incident_row(incident: IncidentDoc) -> dict[str, Any]:
    row = incident.as_dict()
    row["acked_at"] = incident.acked_at
    row.update({k: incident.alert.get(k) for k in _ALERT_FACTS})
    return row


def _queues(store: Store, now: float) -> list[dict[str, Any]]:
    """Each queue as the last pass judged it: in trouble first, then those where work waits
    (with their oldest wait per day, for the chart), then the quiet ones (``quiet``)."""
    rows = [{**doc, "name": name} for name, doc in store.queues.latest().items()]
    for q in rows:
        q["quiet"] = q.get("health") in QUIET and not q.get("messages")
    history = store.queues.oldest_by_day(
        sorted(q["name"] for q in rows if not q["quiet"]), now, days=CHART_DAYS
    )
    for q in rows:
        q["history"] = history.get(q["name"], [])
    return sorted(rows, key=lambda q: (q.get("health") not in TROUBLE, q["quiet"], q["name"]))


def _dead_letters(store: Store, wd: Watchdog) -> dict[str, Any]:
    """The newest entries as ``dlq list --json`` shows them (without the tracebacks)."""
    docs = store.dlq.get_many(store.dlq.ids(0, ROWS), with_message=False)
    entries = [DeadLetter.from_doc(d).to_doc(wd.redactor) for d in docs if d]
    for entry in entries:
        entry.pop("traceback", None)
    return {"count": store.dlq.count(), "entries": entries}


def _task_names(summaries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Job types in trouble first (runs judged badly, then failing), then by name."""

    def trouble(s: Mapping[str, Any]) -> int:
        if sum(n for h, n in s["health"].items() if h != "ok"):
            return 0
        failing = s["failing_streak"] or (s["last_failure"] or 0) > (s["last_success"] or 0)
        return 1 if failing else 2

    rows = []
    for s in sorted(summaries, key=lambda s: (trouble(s), s["name"]))[:ROWS]:
        top = s.get("top_reason")
        rows.append({**s, "trouble": trouble(s) < 2,
                     "top_reason_count": (s.get("reasons_24h") or {}).get(top, 0),
                     "top_reason_example": (s.get("reason_examples") or {}).get(top)})  # fmt: skip
    return rows


def _attention(
    watch: Mapping[str, Any], incidents: Sequence[Mapping[str, Any]], runs: Mapping[str, Any],
    queues: Sequence[Mapping[str, Any]], schedules: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    """How many things need a person now, and the watchdog's own warnings, in words."""
    by_health = runs["by_health"]
    counts = {
        "incidents": sum(1 for i in incidents if i["state"] == "open"),
        "stuck": sum(n for h, n in by_health.items() if h not in ("ok", "slow")),
        "slow": by_health.get("slow", 0),
        "queues": sum(1 for q in queues if q.get("health") in TROUBLE),
        "schedules": sum(1 for s in schedules if s.get("kind")),
    }
    warnings = []
    if watch.get("blind"):
        warnings.append(f"Nobody is watching: {watch['blind']}")
    if watch.get("doubt"):
        warnings.append(f"Waiting for workers to report: {watch['doubt']} "
                        "(no run is judged lost or stuck meanwhile)")  # fmt: skip
    warnings += [f"Alerts are not getting through {c['channel']}: {c['last_error']}"
                 for c in watch.get("alert_channels") or () if not c["ok"]]  # fmt: skip
    return {"counts": counts, "total": sum(counts.values()) + len(warnings),
            "warnings": warnings}  # fmt: skip

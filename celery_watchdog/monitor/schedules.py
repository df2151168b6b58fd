"""Scheduled work, each pass: every beat entry must be sent, started and finished on time.

A dead-man's switch per beat entry (``beat_schedule``, RedBeat or django-celery-beat:
:mod:`.beat_entries`; the rules: :mod:`..model.schedules`): beat's own
process records each message it sends (its recorder, write-behind), workers record each run;
a pass compares the entry's last due time with what happened: not sent (beat is down), sent
but never started (no worker took it), started but never finished. Each is a ``missed_run``
incident (P1), resolved when the entry runs on time again.
"""

from __future__ import annotations

from datetime import timezone, tzinfo
from typing import Any

from ..model import schedules as rules
from ..model.records import Finding, Run
from ..runtime import Watchdog
from ..store import Store
from . import beat_entries


def read(wd: Watchdog, store: Store, now: float) -> list[dict[str, Any]]:
    """Every beat entry: its schedule, last dispatch, last run, next due and health."""
    # The watchdog's own check is watched by blindness (watchdog_blind), not here.
    found, _ = beat_entries.entries(wd.app)  # what could not be read is reported as a fault
    entries = {name: spec for name, spec in found.items()
               if not str(spec["task"]).startswith("celery_watchdog.")}  # fmt: skip
    if not entries:
        return []
    tasks = sorted({str(spec["task"]) for spec in entries.values()})
    sent = store.beat.sent(tasks)
    seen = store.beat.first_seen(sorted(entries), now)
    runs = {t: _last_run(store, doc.get("id")) for t, doc in sent.items()}
    tz = _tz(wd.app)
    grace = wd.settings.beat_grace
    docs = []
    for name, spec in sorted(entries.items()):
        task = str(spec["task"])
        dispatched = sent.get(task, {}).get("at")
        run = runs.get(task)
        started = run.started if run else None
        finished = run.finished if run else None
        succeeded = finished if run and run.state == "SUCCESS" else None
        verdict = rules.check(
            name, task, spec.get("schedule"), last_dispatched=dispatched, last_started=started,
            last_succeeded=succeeded, last_finished=finished, now=now, grace=grace,
            first_seen=seen.get(name), tz=tz,
        )  # fmt: skip
        docs.append({
            "entry": name, "task": task, "schedule": str(spec.get("schedule")),
            "last_dispatched": dispatched, "last_started": started, "last_finished": finished,
            "last_succeeded": succeeded, "next_due": verdict.next_due, "due_at": verdict.due_at,
            "health": verdict.health, "kind": verdict.kind, "what": verdict.what,
            "shared_task": sum(1 for s in entries.values() if s["task"] == task) > 1,
            "source": spec.get("source", "beat_schedule"),
        })  # fmt: skip
    return docs


def judge(wd: Watchdog, store: Store, now: float) -> list[Finding]:
    docs = read(wd, store, now)
    silent = silences(wd, store, now)
    store.beat.save({**{d["entry"]: d for d in docs}, **silent})
    return [_finding(d) for d in [*docs, *silent.values()] if d["kind"]]


def silences(wd: Watchdog, store: Store, now: float) -> dict[str, dict[str, Any]]:
    """Task names with ``max_silence``: each must succeed at least that often."""
    limits = {}
    for name, task in list(wd.app.tasks.items()):
        if not name.startswith("celery."):
            limit = wd.policy(task).max_silence
            if limit:
                limits[name] = limit
    if not limits:
        return {}
    names = sorted(limits)
    stats = store.names.stats(names, now)
    seen = store.beat.first_seen([f"silence:{n}" for n in names], now)
    out = {}
    for name in names:
        what = rules.max_silence(name, stats[name].last_success, now, limits[name],
                                 since=seen[f"silence:{name}"])  # fmt: skip
        out[f"silence:{name}"] = {
            "entry": f"silence:{name}", "task": name, "schedule": f"max_silence {limits[name]}",
            "last_succeeded": stats[name].last_success, "health": "missed" if what else "ok",
            "kind": "missed_run" if what else None, "what": what or "",
        }  # fmt: skip
    return out


def _finding(doc: dict[str, Any]) -> Finding:
    run = Run(task_id="", name=str(doc["task"]), state="PENDING")
    entry = str(doc["entry"])
    subject = entry if entry.startswith("silence:") else f"beat:{entry}"
    return Finding(kind="missed_run", reason=str(doc["what"]), run=run, action="none",
                   subject=subject)  # fmt: skip


def _last_run(store: Store, task_id: Any) -> Run | None:
    if not isinstance(task_id, str) or not task_id:
        return None
    runs = store.runs.of_task(task_id)
    return runs[0] if runs else None


def _tz(app: Any) -> tzinfo:
    try:
        tz = app.timezone
        return tz if isinstance(tz, tzinfo) else timezone.utc
    except Exception:
        return timezone.utc

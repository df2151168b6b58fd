"""From verdicts to people: incidents that notify once, remind, resolve, and group storms.

A finding opens an incident keyed by (kind, task name, run). Opening, reminding and resolving
are each one atomic step in Redis (``lua/incidents.lua``), so any number of monitors send each
message once. More than ``watchdog_alert_group_threshold`` new incidents of one kind and task
in a pass become one grouped incident: an outage is one message, not a flood.

Every pass also reviews the incidents still open: one whose condition cleared (the stuck run
ended, the dead letter was replayed, the task succeeds again, monitor passes run again) is
resolved with one "resolved" message; one left unacknowledged gets a reminder every
``watchdog_alert_repeat`` seconds.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..model.records import Finding

if TYPE_CHECKING:  # the runtime is above alerts; they are handed it
    from ..runtime import Watchdog

from ..store import IncidentDoc, Opening, Store, new_incident_id
from . import Alert, Incident, default_severity, endings
from .notify import Notice, send
from .wording import FAILURE_KINDS, group_summary, next_step
from .wording import summary as summary_of

logger = logging.getLogger("celery_watchdog")
BLIND_KEY = "watchdog_blind|celery_watchdog.check|watchdog"
SAMPLE = 50  # runs of a grouped incident looked at first, each pass


class Alerter:
    """The alerting part of one monitor pass (or of one worker's blind check)."""

    def __init__(self, wd: Watchdog, store: Store, now: float) -> None:
        self.wd = wd
        self.store = store
        self.now = now
        self.app_name = wd.app.main or "proj"

    # -- opening -----------------------------------------------------------------------------

    def on_findings(self, findings: Sequence[Finding]) -> list[Notice]:
        """Open (or join) an incident per finding; send what opened."""
        by_task: dict[tuple[str, str], list[Finding]] = defaultdict(list)
        for f in findings:
            by_task[(f.kind, f.run.name)].append(f)
        openings: list[Opening] = []
        for (kind, name), found in by_task.items():
            # Findings about one subject of their own (a quarantined input and its parked
            # copies) are one incident already: never part of a storm.
            own = [f for f in found if f.subject]
            group = [f for f in found if not f.subject]
            alerts = [self.alert_of(f) for f in group]
            group_key = f"{kind}|{name}|*"
            singles = list(zip(own, [self.alert_of(f) for f in own], strict=True))
            if len(group) > self.wd.settings.alert_group_threshold:
                openings.append(self._grouped(kind, name, group, alerts, group_key))
            else:
                singles += list(zip(group, alerts, strict=True))
            for f, a in singles:
                subject = subject_of(f)
                openings.append(Opening(
                    key=f"{kind}|{name}|{subject}", group_key="" if f.subject else group_key,
                    id=a.incident.id or "", kind=kind, name=name, subject=subject,
                    severity=a.severity, alert=a.record(),
                ))  # fmt: skip
        return self._open(openings)

    def _grouped(
        self, kind: str, name: str, group: list[Finding], alerts: list[Alert], key: str
    ) -> Opening:
        first = alerts[0]
        text = group_summary(
            kind, name, len(group), [f.run.step for f in group], [a.context for a in alerts]
        )
        actions = {a.action for a in alerts}
        alert = replace(
            first, summary=text, count=len(group), task_id="", args="", kwargs="",
            context={}, worker=_one({a.worker for a in alerts}),
            action=actions.pop() if len(actions) == 1 else "mixed",
            next_step=_group_next_step(kind, alerts, self.app_name),
            severity=min(a.severity for a in alerts),  # the most urgent: P1 < P2 < P3
        )  # fmt: skip
        return Opening(
            key=key, group_key="", id=alert.incident.id or "", kind=kind, name=name,
            subject="*", severity=alert.severity, alert=alert.record(),
            members=tuple(subject_of(f) for f in group),
        )  # fmt: skip

    def _open(self, openings: list[Opening]) -> list[Notice]:
        results = self.store.incidents.open(self.now, openings)
        opened = [
            Alert.from_record(o.alert)
            for o, (_, how) in zip(openings, results, strict=True)
            if how == "opened"
        ]
        self._sentry_checkins(opened)
        return send(self.wd, self.store, opened)

    def alert_of(self, finding: Finding) -> Alert:
        task = self.wd.app.tasks.get(finding.run.name)
        policy = self.wd.policy(task or finding.run.name)
        return Alert.from_finding(
            finding, policy, redactor=self.wd.redactor, now=self.now,
            severity=self.severity(finding.kind, policy, finding.severity_hint),
            app_name=self.app_name,
            incident=Incident(new_incident_id(), "open"),
        )  # fmt: skip

    def severity(self, kind: str, policy: Any = None, hint: str | None = None) -> str:
        """Task option -> ``watchdog_alert_severity`` -> a rule's hint -> the kind's default."""
        by_kind, default = self.wd.settings.alert_severity, hint or default_severity(kind)
        if policy is None:
            return by_kind.get(kind, default)
        return str(policy.severity(kind, by_kind, default))

    def blind(self, reason: str, worker: str | None = None) -> list[Notice]:
        """Nobody is watching: open the one blind incident (from any worker), remind while so."""
        alert = Alert(
            kind="watchdog_blind",
            summary=summary_of("watchdog_blind", "", quiet_for=None, running_for=None,
                               worker=None, queue=None, deliveries=0, reason=reason),
            task_id="", task_name="celery_watchdog.check", worker=worker, reason=reason,
            next_step=next_step("watchdog_blind", "none", task_id="", idempotent=True,
                                new_task_id=None, app_name=self.app_name),
            severity=self.severity("watchdog_blind"), at=self.now,
            incident=Incident(new_incident_id(), "open"),
        )  # fmt: skip
        notices = self._open([Opening(
            key=BLIND_KEY, group_key="", id=alert.incident.id or "", kind=alert.kind,
            name=alert.task_name, subject="watchdog", severity=alert.severity,
            alert=alert.record(),
        )])  # fmt: skip
        return notices + self.remind(kinds=("watchdog_blind",))

    # -- review ------------------------------------------------------------------------------

    def review(self, limit: int = 1000) -> list[Notice]:
        """Resolve what cleared (one message each), then remind of what is still open."""
        active = self.store.incidents.active(limit)
        cleared = self._cleared(active)
        done = set(self.store.incidents.resolve(
            self.now, [(inc.id, why, "watchdog") for inc, why in cleared]
        ))  # fmt: skip
        resolved = [
            self._notice(inc, Incident(inc.id, "resolved", "resolved", _reminders(inc), why))
            for inc, why in cleared
            if inc.id in done
        ]
        return send(self.wd, self.store, resolved) + self.remind()

    def remind(self, kinds: Sequence[str] = ()) -> list[Notice]:
        due = self.store.incidents.remind(self.now, self.wd.settings.alert_repeat, kinds)
        reminders = [
            self._notice(inc, Incident(inc.id, "open", "reminder", _reminders(inc)))
            for inc in self.store.incidents.many(due)
        ]
        return send(self.wd, self.store, reminders)

    def resolve_by_hand(self, inc: IncidentDoc, note: str, by: str) -> list[Notice]:
        why = f"resolved by {by}" + (f": {note}" if note else "")
        if not self.store.incidents.resolve(self.now, [(inc.id, why, by)]):
            return []
        notice = Incident(inc.id, "resolved", "resolved", _reminders(inc), why)
        return send(self.wd, self.store, [self._notice(inc, notice)])

    def _notice(self, inc: IncidentDoc, incident: Incident) -> Alert:
        base = Alert.from_record(inc.alert) if inc.alert else Alert(
            kind=inc.kind, summary=f"{inc.kind} in {inc.name}", task_id="", task_name=inc.name,
            severity=inc.severity,
        )  # fmt: skip
        if inc.count > base.count:  # runs joined the group since it opened
            base = replace(base, count=inc.count, summary=_recount(base, inc))
        if incident.notice == "resolved":  # the work is done or given up on: it is over
            base = replace(base, next_step="nothing to do: it is over")
        return base.notice(incident, self.now)

    def _cleared(self, incidents: list[IncidentDoc]) -> list[tuple[IncidentDoc, str]]:
        """The incidents whose condition no longer holds, each with how it ended.

        A group is looked at through a sample of its runs first: while an outage lasts, one of
        them still running settles it without reading thousands of runs every pass.
        """
        groups = [inc.id for inc in incidents if inc.group]
        samples = dict(zip(groups, self.store.incidents.samples(groups, SAMPLE), strict=True))
        members = {inc.id: samples.get(inc.id) or [inc.subject] for inc in incidents}
        first = self._cleared_of(incidents, members)
        full = [inc for inc, _ in first if inc.group and inc.count > SAMPLE]
        if not full:
            return first
        every = {inc.id: self.store.incidents.members(inc.id) for inc in full}
        again = {inc.id: why for inc, why in self._cleared_of(full, every)}
        checked = set(every)
        return [
            (inc, again.get(inc.id, why))
            for inc, why in first
            if inc.id not in checked or inc.id in again
        ]

    def _cleared_of(
        self, incidents: list[IncidentDoc], members: dict[str, list[str]]
    ) -> list[tuple[IncidentDoc, str]]:
        """How each incident ended, for those that did. The work decides, not a process:
        a dead-lettered run's incident stays open until its entry is replayed and the replay
        succeeded, or it is purged; a requeued run's until the new run succeeded."""
        ends = {inc.id: endings.how_ended(inc) for inc in incidents}
        runs = sorted({m for inc in incidents if ends[inc.id] == "run" for m in members[inc.id]})
        running = dict(zip(runs, self.store.runs.running_many(runs), strict=True))
        lettered = sorted({
            endings.task_id_of(m)
            for inc in incidents if ends[inc.id] == "dead_letter" for m in members[inc.id]
        })  # fmt: skip
        entries = dict(zip(lettered, self.store.dlq.get_many(lettered, with_message=False),
                           strict=True))  # fmt: skip
        gone = dict(zip(lettered, self.store.dlq.gone(lettered), strict=True))
        names = sorted({inc.name for inc in incidents if ends[inc.id] == "dead_letter"})
        failing_names = sorted({inc.name for inc in incidents if ends[inc.id] == "failing"})
        both = sorted({*names, *failing_names})
        stats_all = self.store.names.stats(both, self.now) if both else {}
        stats = {n: stats_all[n] for n in names}
        failing = self.store.names.failing() if failing_names else {}
        fps = [inc.subject.removeprefix("fp:") for inc in incidents if ends[inc.id] == "quarantine"]
        released = dict(zip(fps, self.store.quarantine.gone(fps), strict=True))
        queues = self.store.queues.latest() if any(e == "queue" for e in ends.values()) else {}
        entries_ok = (
            self.store.beat.latest() if any(e == "schedule" for e in ends.values()) else {}
        )
        hour = int(self.now // 3600)
        history = (
            self.store.names.week_history(failing_names, (hour - 1, hour, hour + 1))
            if any(inc.kind == "failure_spike" for inc in incidents)
            else {}
        )
        out = []
        for inc in incidents:
            subjects = members[inc.id]
            end = ends[inc.id]
            why: str | None = None
            if end == "blind":
                why = "monitor passes are running again"
            elif end == "requeue":
                new_id = str(inc.alert.get("requeued_as"))
                why = endings.succeeded(self.store, new_id, "requeued as")
            elif end == "run":
                if not any(running.get(m) for m in subjects):
                    n = len(subjects)
                    why = "the run ended" if n == 1 else f"all {n} runs ended"
            elif end == "queue":
                doc = queues.get(inc.subject.removeprefix("queue:"))
                if doc is None or doc.get("cleared"):
                    why = (
                        "the queue drained"
                        if doc and not doc.get("messages")
                        else (
                            "its oldest message waits less than half the threshold again"
                            if doc
                            else "the queue is no longer there"
                        )
                    )
            elif end == "schedule":
                entry = entries_ok.get(inc.subject.removeprefix("beat:"))  # or "silence:<name>"
                if entry is None:
                    why = "the entry is gone"
                elif entry.get("health") in ("ok", "late") and endings.ran_since(
                    entry, inc.opened_at
                ):
                    why = "it runs on time again"
            elif end == "quarantine":
                why = endings.released(released.get(inc.subject.removeprefix("fp:")))
            elif end == "failing":
                stat = stats_all.get(inc.name)
                why = endings.failing_cleared(inc, failing, stat, history, self.now)
            elif end == "duplicate":
                copies = [sum(r.running for r in self.store.runs.of_task(m)) for m in subjects]
                if all(n < 2 for n in copies):
                    why = "only one copy is running now"
            else:
                ids = [endings.task_id_of(m) for m in subjects]
                why = endings.dead_letter_cleared(
                    self.store, inc, [entries.get(i) for i in ids], [gone.get(i) for i in ids],
                    stats.get(inc.name),
                )  # fmt: skip
            if why:
                out.append((inc, why))
        return out

    def _sentry_checkins(self, alerts: Iterable[Alert]) -> None:
        """Sentry Crons: an error check-in for a beat-scheduled task judged unhealthy."""
        if not self.wd.settings.sentry_crons:
            return
        entries = beat_entries(self.wd.app)
        for alert in alerts:
            for slug in entries.get(alert.task_name, ()):
                try:
                    from sentry_sdk.crons import capture_checkin

                    capture_checkin(monitor_slug=slug, status="error")
                except Exception as exc:
                    logger.warning("celery_watchdog: Sentry Crons check-in failed: %s", exc)


def subject_of(finding: Finding) -> str:
    """What one incident is about: a run, the task id run twice (a duplicate), or a task
    name (its failures)."""
    if finding.subject:
        return finding.subject
    if finding.kind in FAILURE_KINDS:
        return finding.run.name
    return finding.run.task_id if finding.kind == "duplicate" else finding.run.run_key


def beat_entries(app: Any) -> dict[str, list[str]]:
    """Task name -> the beat schedule entries that run it (Sentry's monitor slugs)."""
    out: dict[str, list[str]] = defaultdict(list)
    for entry, spec in (app.conf.beat_schedule or {}).items():
        task = spec.get("task") if isinstance(spec, dict) else None
        if task:
            out[task].append(entry)
    return out


def _reminders(inc: IncidentDoc) -> int:
    """Reminders sent so far (a reminder being sent counts): every message but the first."""
    return max(0, inc.notifications - 1)


def _one(values: set[str | None]) -> str | None:
    return values.pop() if len(values) == 1 else None


def _group_next_step(kind: str, alerts: list[Alert], app_name: str) -> str:
    cli = f"celery -A {app_name} watchdog"
    if any(a.action == "dead_lettered" for a in alerts):
        return f"they were moved to the dead-letter queue: {cli} dlq list, then replay once fixed"
    if kind in ("stuck", "lost"):
        return f"look for one shared cause (a vendor, a database, a deploy): {cli} tasks"
    return alerts[0].next_step


def _recount(alert: Alert, inc: IncidentDoc) -> str:
    return alert.summary.replace(f"{alert.count} runs", f"{inc.count} runs", 1)

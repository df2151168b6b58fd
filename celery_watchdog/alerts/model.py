"""An :class:`Alert`: the facts of DESIGN §2 every channel renders, built from a finding.

Plain data, no I/O. ``as_dict()`` is the webhook body; ``text()`` is what a person reads.
Arguments arrive redacted (the run keeps previews only) and ``alert_context`` values are
redacted again by name here, so no channel can leak what the task was given as a secret.
Every text an alert holds is cleaned once more when it is made, whatever made it (a finding,
a record an older version stored, a reminder): secret values scrubbed, terminal controls
escaped, no NaN or infinite time. Channels render the fields as they are.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ..model.humanize import ago, cut, printable
from ..model.policy import TaskPolicy
from ..model.records import Finding
from ..model.redact import REDACTED, Redactor, scrub
from . import wording


def _clean(value: str) -> str:
    return printable(scrub(value))


def _clean_fields(obj: Any) -> None:
    """Clean a frozen dataclass's text fields in place (from its ``__post_init__``)."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, str):
            clean = _clean(value)
        elif isinstance(value, float) and not math.isfinite(value):
            clean = None
        else:
            continue
        if clean is not value:
            object.__setattr__(obj, f.name, clean)


@dataclass(frozen=True)
class Incident:
    id: str | None = None
    state: str | None = None  # open | acknowledged | snoozed | resolved
    notice: str = "opened"  # what this message is: opened | reminder | resolved
    reminders: int = 0  # reminders sent so far (this one included, on a reminder)
    resolution: str = ""  # how it ended, on the "resolved" message

    def __post_init__(self) -> None:
        _clean_fields(self)


@dataclass(frozen=True)
class Alert:
    kind: str
    summary: str
    task_id: str
    task_name: str
    args: str = ""
    kwargs: str = ""  # a redacted preview, never the values themselves
    context: Mapping[str, str] = field(default_factory=dict)
    queue: str | None = None
    worker: str | None = None
    started_at: float | None = None  # epoch seconds (the Redis server's clock)
    last_heartbeat_at: float | None = None
    step: str | None = None
    processed: int | None = None
    total: int | None = None
    action: str = "none"  # revoked | dead_lettered | requeued | quarantined | none
    owner: str | None = None
    runbook: str | None = None
    next_step: str = ""
    severity: str = "P2"
    incident: Incident = field(default_factory=Incident)
    diagnosis: str | None = None
    at: float = 0.0  # when the alert was raised
    attempt: int | None = None  # deliveries of the message so far
    reason: str = ""
    count: int = 1  # runs this alert stands for (more than one: a storm, grouped)
    requeued_as: str | None = None  # the new task id of a requeued run (its incident ends
    # when that run succeeds)

    def __post_init__(self) -> None:
        # Defence in depth: fields from a record stored by an older version, or built by hand,
        # reach no channel with a secret value, a terminal control or a NaN in them.
        _clean_fields(self)
        if self.at is None:
            object.__setattr__(self, "at", 0.0)
        context = {_clean(str(k)): _clean(str(v)) for k, v in self.context.items()}
        object.__setattr__(self, "context", context)

    @classmethod
    def from_finding(
        cls,
        finding: Finding,
        policy: TaskPolicy,
        *,
        redactor: Redactor,
        now: float,
        severity: str | None = None,
        incident: Incident | None = None,
        context_values: Mapping[str, Any] | None = None,
        app_name: str = "proj",
    ) -> Alert:
        if severity is not None and severity not in wording.SEVERITIES:
            raise ValueError(f"severity {severity!r} is not valid: expected P1, P2 or P3")
        run = finding.run
        text = redactor.text  # the configured patterns too; __post_init__ knows only built-ins
        step, reason = (None if run.step is None else text(run.step)), text(finding.reason)
        if incident is not None:  # a resolution is a person's note: it may quote anything
            incident = replace(incident, resolution=text(incident.resolution))
        # The values (the task's arguments, or a WatchedTask's heartbeat details) narrowed to
        # the names the task declared as ``alert_context``; redacted by name again all the same.
        if context_values is None:  # the run's own: previews, redacted when recorded
            # (its recorded context was chosen by the alert_context of the worker's policy)
            values = {**run.context}
            values.update({k: run.details[k] for k in policy.alert_context if k in run.details})
            context = {k: REDACTED if redactor.is_secret(k) else text(v) for k, v in values.items()}
        else:
            names = policy.alert_context or tuple(context_values)
            context = redactor.mapping({k: context_values[k] for k in names if k in context_values})
        shown = {k: v for k, v in context.items() if v != REDACTED}
        since = run.last_progress or run.last_heartbeat or run.step_started or run.started
        summary = wording.summary(
            finding.kind, wording.subject(run.name, step, shown),
            quiet_for=None if since is None else now - since,
            running_for=None if run.started is None else now - run.started,
            worker=run.worker, queue=run.queue, deliveries=run.deliveries, reason=reason,
            about_input=(finding.subject or "").startswith("fp:"),
        )  # fmt: skip
        next_step = wording.next_step(
            finding.kind, finding.action, task_id=run.task_id, idempotent=policy.idempotent,
            new_task_id=finding.new_task_id, app_name=app_name, replayable=finding.replayable,
            bucket=finding.bucket,
            fingerprint=(finding.subject or "").removeprefix("fp:") or None,
        )  # fmt: skip
        return cls(
            kind=finding.kind, summary=text(summary), task_id=run.task_id,
            task_name=text(run.name), args=text(run.args), kwargs=text(run.kwargs),
            context=context, queue=run.queue, worker=run.worker, started_at=run.started,
            last_heartbeat_at=run.last_heartbeat, step=step, processed=run.processed,
            total=run.total, action=finding.action, owner=policy.owner, runbook=policy.runbook,
            next_step=next_step, severity=severity or wording.default_severity(finding.kind),
            incident=incident or Incident(),
            diagnosis=None if finding.diagnosis is None else text(finding.diagnosis), at=now,
            attempt=run.deliveries or None, reason=reason, requeued_as=finding.new_task_id,
        )  # fmt: skip

    @classmethod
    def test(cls, now: float, *, app_name: str = "proj") -> Alert:
        """The labelled alert ``celery watchdog test-alert`` sends through each channel."""
        summary = wording.summary(
            "test", "", quiet_for=None, running_for=None, worker=None, queue=None, deliveries=0,
            reason="",
        )  # fmt: skip
        step = wording.next_step(
            "test", "none", task_id="", idempotent=True, new_task_id=None, app_name=app_name
        )
        return cls(kind="test", summary=summary, task_id="", task_name="celery_watchdog.test",
                   next_step=step, severity=wording.default_severity("test"), at=now)  # fmt: skip

    def record(self) -> dict[str, Any]:
        """Every field as plain JSON-able data (kept with the incident, for reminders)."""
        doc = {f.name: getattr(self, f.name) for f in fields(self)}
        doc["context"] = dict(self.context)
        doc["incident"] = {f.name: getattr(self.incident, f.name) for f in fields(Incident)}
        return doc

    @classmethod
    def from_record(cls, doc: Mapping[str, Any]) -> Alert:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in doc.items() if k in known}
        inc = doc.get("incident") or {}
        names = {f.name for f in fields(Incident)}
        values["incident"] = Incident(**{k: v for k, v in inc.items() if k in names})
        return cls(**values)

    def notice(self, incident: Incident, now: float) -> Alert:
        """The same facts, sent again as a reminder or a resolution at ``now``."""
        return replace(self, incident=incident, at=now)

    def capped(self, max_chars: int) -> Alert:
        """A copy whose every text field fits ``max_chars`` (a channel's size limit)."""
        changes: dict[str, Any] = {
            f.name: cut(value, max_chars)
            for f in fields(self)
            if isinstance(value := getattr(self, f.name), str) and len(value) > max_chars
        }
        if any(len(v) > max_chars for v in self.context.values()):
            changes["context"] = {k: cut(v, max_chars) for k, v in self.context.items()}
        return replace(self, **changes) if changes else self

    def as_dict(self, max_chars: int | None = None) -> dict[str, Any]:
        """The webhook body: DESIGN §2 field names; times as ISO 8601 UTC."""
        a = self.capped(max_chars) if max_chars else self
        return {
            "kind": a.kind,
            "summary": a.summary,
            "task": {
                "id": a.task_id, "name": a.task_name, "args": a.args, "kwargs": a.kwargs,
                "context": dict(a.context),
            },
            "queue": a.queue, "worker": a.worker,
            "started_at": iso(a.started_at), "last_heartbeat_at": iso(a.last_heartbeat_at),
            "step": a.step, "processed": a.processed, "total": a.total, "action": a.action,
            "owner": a.owner, "runbook": a.runbook, "next_step": a.next_step,
            "severity": a.severity,
            "incident": {
                "id": a.incident.id, "state": a.incident.state, "notice": a.incident.notice,
                "reminders": a.incident.reminders, "resolution": a.incident.resolution or None,
            },
            "diagnosis": a.diagnosis, "at": iso(a.at), "attempt": a.attempt, "reason": a.reason,
            "count": a.count,
        }  # fmt: skip

    def facts(self) -> list[tuple[str, str]]:
        """Labelled lines, in the order a person asks: what, who, since when, where, done, next."""
        who = wording.who(self.context)
        since = f"started {when(self.started_at, self.at)}" if self.started_at else ""
        if self.last_heartbeat_at:
            since += f"; last heartbeat {when(self.last_heartbeat_at, self.at)}"
        where = "; ".join(
            part
            for part in (
                f"step '{self.step}'" if self.step else "",
                _progress(self.processed, self.total),
                f"worker {self.worker}" if self.worker else "",
                f"queue {self.queue}" if self.queue else "",
                self.diagnosis or "",
            )
            if part
        )
        broke = ": ".join(x for x in (f"{self.task_name} {self.task_id}".strip(), self.reason) if x)
        rows = [
            ("Resolved", self.incident.resolution if self.resolved else ""),
            ("What broke", broke),
            ("Affected", who), ("Since", since.strip("; ")), ("Where", where),
            ("System did", wording.done(self.action)), ("Next step", self.next_step),
            ("Owner", self.owner or ""), ("Runbook", self.runbook or ""),
            ("Arguments", f"{self.args} {self.kwargs}".strip()),
            ("Incident", " ".join(x for x in (self.incident.id, self.incident.state) if x)),
        ]  # fmt: skip
        return [(label, value) for label, value in rows if value]

    @property
    def resolved(self) -> bool:
        return self.incident.notice == "resolved"

    def title(self) -> str:
        kind = self.kind.replace("_", " ")
        if self.resolved:
            return f"[{self.severity}] RESOLVED {kind}: {self.summary}"
        if self.incident.notice == "reminder":
            kind += f" (still open, reminder {self.incident.reminders})"
        return f"[{self.severity}] {kind}: {self.summary}"

    def text(self, max_chars: int | None = None) -> str:
        """Plain text for a person (email body, chat, log); cut to ``max_chars`` if given."""
        lines = [self.title(), ""] + [f"{label}: {value}" for label, value in self.facts()]
        body = "\n".join(lines)
        if max_chars and len(body) > max_chars:
            return body[: max(0, max_chars - 1)] + "…"
        return body


def iso(ts: float | None) -> str | None:
    if ts is None or not math.isfinite(ts):
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def when(ts: float | None, now: float) -> str:
    if ts is None or not math.isfinite(ts):
        return ""
    return f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(ts))} ({ago(ts, now)})"


def _progress(processed: int | None, total: int | None) -> str:
    if processed is None:
        return ""
    return f"{processed}/{total} done" if total else f"{processed} done"

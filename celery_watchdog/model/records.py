"""Plain data read back from the store: runs, workers, per-task-name statistics. No I/O."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .normal import histogram_percentile

FINAL_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})


def _f(doc: Mapping[str, str], key: str) -> float | None:
    return number(doc.get(key))


def _i(doc: Mapping[str, str], key: str) -> int | None:
    value = _f(doc, key)
    return None if value is None else int(value)


def _s(doc: Mapping[str, str], key: str) -> str | None:
    value = doc.get(key)
    return None if value in (None, "") else value


@dataclass(frozen=True)
class Run:
    """One execution of a task id (or, once finished, the task's last record)."""

    task_id: str
    name: str
    state: str
    worker: str | None = None
    pid: int | None = None
    slot: str | None = None  # the pid, plus ".thread" where a threads pool runs several
    watched: bool = False
    received: float | None = None
    started: float | None = None
    finished: float | None = None
    last_heartbeat: float | None = None
    last_progress: float | None = None
    step: str | None = None
    step_started: float | None = None
    step_timeout: float | None = None
    processed: int | None = None
    total: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    context: dict[str, str] = field(default_factory=dict)  # alert_context values (previews)
    args: str = ""
    kwargs: str = ""
    queue: str | None = None
    eta: str | None = None
    expires: str | None = None
    retries: int = 0
    root_id: str | None = None
    parent_id: str | None = None
    deliveries: int = 0
    runtime: float | None = None
    exception: str | None = None
    traceback: str | None = None
    result: str | None = None
    outcome: str | None = None
    stack: str | None = None  # JSON frames of the task's thread, taken once it went quiet
    reason: str | None = None  # the failure's plain bucket (model.reasons), once it failed
    first_error: str | None = None  # a retry chain's first error, kept beside its last
    first_reason: str | None = None
    first_error_at: float | None = None
    cursor: str | None = None  # JSON of where its work got to (heartbeat(cursor=)), the last
    verdict: str | None = None  # what the monitor concluded and acted on, kept once it ended
    verdict_reason: str | None = None
    deadline: float | None = None
    times: Mapping[str, float] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.state == "STARTED" and self.finished is None

    @property
    def run_key(self) -> str:
        return f"{self.task_id}|{self.worker}|{self.slot or self.pid}"

    @classmethod
    def from_docs(
        cls, task: Mapping[str, str], run: Mapping[str, str], deadline: float | None = None
    ) -> Run:
        """Merge the task document (per id) and the run document (per execution)."""
        times = {k: v for k in ("succeeded", "failed", "retried", "revoked") if (v := _f(task, k))}
        finished = None if run else max(times.values(), default=None)
        details, context = _json_map(run.get("details")), _json_map(task.get("context"))
        both = {**task, **run}
        return cls(
            task_id=run.get("task_id") or task.get("uuid") or "",
            name=both.get("name") or "",
            state="STARTED" if run else task.get("state", "PENDING"),
            worker=_s(both, "worker"),
            pid=_i(run, "pid"),
            slot=_s(run, "slot"),
            watched=run.get("watched") == "true",
            received=_f(task, "received"),
            started=_f(run, "started") or _f(task, "started"),
            finished=finished,
            last_heartbeat=_f(run, "last_heartbeat"),
            last_progress=_f(run, "last_progress"),
            step=_s(both, "step"),
            step_started=_f(run, "step_started"),
            step_timeout=_f(run, "step_timeout"),
            processed=_i(both, "processed"),
            total=_i(both, "total"),
            details=details,
            context=context,
            args=task.get("args", ""),
            kwargs=task.get("kwargs", ""),
            queue=_s(task, "queue"),
            eta=_s(task, "eta"),
            expires=_s(task, "expires"),
            retries=_i(task, "retries") or 0,
            root_id=_s(task, "root_id"),
            parent_id=_s(task, "parent_id"),
            deliveries=_i(task, "deliveries") or 0,
            runtime=_f(task, "runtime") if not run else None,
            exception=_s(task, "exception") if not run else None,
            traceback=_s(task, "traceback") if not run else None,
            result=_s(task, "result") if not run else None,
            outcome=_s(task, "outcome") if not run else None,
            stack=_s(run, "stack"),
            reason=_s(task, "reason") if not run else None,
            first_error=_s(task, "first_error"),
            first_reason=_s(task, "first_reason"),
            first_error_at=_f(task, "first_error_at"),
            cursor=_s(run, "cursor") or _s(task, "cursor"),
            verdict=_s(task, "verdict"),
            verdict_reason=_s(task, "verdict_reason"),
            deadline=deadline,
            times=times,
        )


@dataclass(frozen=True)
class ActiveRequest:
    """A request as the worker's main process sees it in its snapshot."""

    task_id: str
    name: str
    pid: int | None
    started: float | None
    cpu: float | None
    cpu_pct: float | None = None
    args: str = ""
    kwargs: str = ""


@dataclass(frozen=True)
class WorkerInfo:
    hostname: str
    online: bool
    last_seen: float
    pid: int | None = None
    pool: str | None = None
    concurrency: int | None = None
    queues: Sequence[str] = ()
    active: Sequence[ActiveRequest] = ()
    processes: Sequence[int] = ()
    registered: Sequence[str] = ()
    totals: Mapping[str, int] = field(default_factory=dict)
    software: Mapping[str, str] = field(default_factory=dict)
    watchdog: Mapping[str, Any] = field(default_factory=dict)
    # Routing key -> when this worker last took a message with it (server time), if ever.
    last_received: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_doc(cls, hostname: str, last_seen: float, doc: Mapping[str, str]) -> WorkerInfo:
        try:
            data = json.loads(doc.get("data") or "{}")
        except ValueError:
            data = {}
        ts = _f(doc, "ts")
        # Snapshot age is compared against the server clock by readers; the stored timestamp
        # is "started_age"-relative so both come from the same server clock.
        active = [
            ActiveRequest(
                task_id=str(r.get("id")),
                name=str(r.get("name")),
                pid=r.get("pid"),
                started=(ts - r["started_age"])
                if ts and r.get("started_age") is not None
                else None,
                cpu=r.get("cpu"),
                cpu_pct=r.get("cpu_pct"),
                args=str(r.get("args", "")),
                kwargs=str(r.get("kwargs", "")),
            )
            for r in data.get("active", [])
        ]
        return cls(
            hostname=hostname,
            online=bool(doc) and doc.get("state") == "online",
            last_seen=ts or last_seen,
            pid=data.get("pid"),
            pool=data.get("pool"),
            concurrency=data.get("concurrency"),
            queues=tuple(data.get("queues", ())),
            active=tuple(active),
            processes=tuple(data.get("processes", ())),
            registered=tuple(data.get("registered", ())),
            totals=data.get("total", {}),
            software=data.get("software", {}),
            watchdog=data.get("watchdog", {}),
            last_received=_received(data.get("received_ages"), ts or last_seen),
        )


def _received(ages: Any, at: float) -> dict[str, float]:
    """Ages (seconds before the snapshot at ``at``) as server times; junk skipped."""
    if not isinstance(ages, dict):
        return {}
    out = {}
    for key, age in ages.items():
        value = number(age)
        if isinstance(key, str) and value is not None and value >= 0:
            out[key] = at - value
    return out


@dataclass(frozen=True)
class NameStats:
    """Outcome counts and runtimes of one task name."""

    name: str
    last_hour: Mapping[str, int]
    last_day: Mapping[str, int]
    # Runtimes of the last day, by 10 %-wide bucket (code -> runs; see model.normal).
    runtime_buckets: Mapping[int, int]
    last_success: float | None
    last_failure: float | None
    last_error: str | None
    reasons_hour: Mapping[str, int] = field(default_factory=dict)  # failures per reason bucket
    reasons_day: Mapping[str, int] = field(default_factory=dict)
    examples: Mapping[str, str] = field(default_factory=dict)  # reason -> its last error text
    streak: int = 0  # failures in a row since the last success

    @property
    def top_reason(self) -> str | None:
        """The most frequent failure reason of the last day (ties: by name)."""
        counts = self.reasons_day or self.reasons_hour
        return min(counts, key=lambda r: (-counts[r], r)) if counts else None

    @classmethod
    def from_replies(
        cls,
        name: str,
        buckets_5m: Sequence[Mapping[str, str]],
        buckets_1h: Sequence[Mapping[str, str]],
        info: Mapping[str, str],
    ) -> NameStats:
        """From the hashes as read: the last hour's 5-minute buckets, the day's hourly ones."""
        return cls.from_sums(name, _sum(buckets_5m), _sum(buckets_1h), info)

    @classmethod
    def from_sums(
        cls,
        name: str,
        hour: Mapping[str, Any],
        day: Mapping[str, Any],
        info: Mapping[str, str],
    ) -> NameStats:
        """From the last hour's and the last day's counts, summed (``name_stats.lua``)."""
        hour, day = _counts(hour), _counts(day)
        return cls(
            name=name,
            last_hour=_outcomes(hour),
            last_day=_outcomes(day),
            runtime_buckets={int(k[1:]) + 1: n for k, n in day.items() if _is_bucket(k)},
            last_success=_f(info, "last_success"),
            last_failure=_f(info, "last_failure"),
            last_error=_s(info, "last_error"),
            reasons_hour=_reasons(hour),
            reasons_day=_reasons(day),
            examples={k[3:]: v for k, v in info.items() if k.startswith("ex:")},
            streak=max(0, _i(info, "streak") or 0),
        )

    def percentile(self, q: float) -> float | None:
        """The runtime under which ``q`` of the last day's runs finished (to 10 %)."""
        return histogram_percentile(self.runtime_buckets, q)

    @staticmethod
    def success_rate(counts: Mapping[str, int]) -> float | None:
        ok = counts.get("succeeded", 0)
        bad = counts.get("failed", 0) + counts.get("lost", 0)
        return None if ok + bad == 0 else ok / (ok + bad)


def _is_bucket(key: str) -> bool:
    """ "h{b}": the hour's runtimes in bucket b, beside its outcome counts (flush.lua)."""
    return key[:1] == "h" and key[1:].isdigit()


def _counts(counts: Mapping[str, Any]) -> dict[str, int]:
    out = {}
    for key, value in counts.items():
        n = number(value)
        if isinstance(key, str) and n is not None and n > 0:
            out[key] = int(n)
    return out


def _outcomes(counts: Mapping[str, int]) -> dict[str, int]:
    # "r:{reason}" are failures by reason, "h{bucket}" the hour's runtime histogram.
    return {k: n for k, n in counts.items() if not k.startswith("r:") and not _is_bucket(k)}


def _reasons(counts: Mapping[str, int]) -> dict[str, int]:
    """Failures per reason bucket ("r:<bucket>" fields beside the outcome counts)."""
    return {k[2:]: n for k, n in counts.items() if k.startswith("r:") and n > 0}


def _sum(buckets: Sequence[Mapping[str, str]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for bucket in buckets:
        for key in bucket:
            n = _f(bucket, key)
            total[key] = total.get(key, 0) + (int(n) if n is not None else 0)
    return {key: n for key, n in total.items() if n}


@dataclass(frozen=True)
class Evidence:
    """How far the store's silence can be trusted (Redis server times, None: never)."""

    pulse: float | None = None  # the last snapshot any worker wrote
    outage: float | None = None  # when snapshots resumed after a gap (or silence was noticed)


@dataclass(frozen=True)
class Verdict:
    """A rule's conclusion about one run: its health and the reason in words."""

    health: str  # ok | slow | stuck | overtime | lost | poison | duplicate
    reason: str = ""


@dataclass(frozen=True)
class Finding:
    """What one monitor pass concluded about one run, and what it did about it."""

    kind: str  # the verdict: stuck | slow | overtime | lost | poison | duplicate
    reason: str
    run: Run
    action: str  # the last of ``actions``: revoked | requeued | dead_lettered | none
    actions: tuple[str, ...] = ()  # everything the system did, in order
    detail: str = ""  # e.g. the new task id, why nothing was done
    diagnosis: str | None = None  # where it waits, CPU busy or idle
    new_task_id: str | None = None
    replayable: bool = True  # a dead letter that kept its original message (replay can work)
    bucket: str | None = None  # a failure alert's reason bucket (model.reasons)
    severity_hint: str | None = None  # a rule's suggestion, when no setting says otherwise
    subject: str | None = None  # what its incident is about, when not its run (e.g. an input)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "replayable": self.replayable,
            "reason": self.reason,
            "action": self.action,
            "actions": list(self.actions),
            "detail": self.detail,
            "diagnosis": self.diagnosis,
            "new_task_id": self.new_task_id,
            "task": {
                "id": self.run.task_id,
                "name": self.run.name,
                "args": self.run.args,
                "kwargs": self.run.kwargs,
            },
            "worker": self.run.worker,
            "pid": self.run.pid,
            "started_at": self.run.started,
            "last_heartbeat_at": self.run.last_heartbeat,
            "step": self.run.step,
            "processed": self.run.processed,
            "total": self.run.total,
            "deliveries": self.run.deliveries,
        }


def number(raw: object) -> float | None:
    """A finite float, or None: a record written by a task is hostile input ("nan", "inf")."""
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _json_map(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}

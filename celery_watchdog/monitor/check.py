"""One monitor pass: load what is due -> judge (pure rules) -> claim -> act -> report.

A pass reads the Redis clock once, looks only at runs whose deadline has passed (so its cost
follows what is overdue, not what is tracked), at runs of workers whose snapshot expired, and
at runs that ended lost. Every action is claimed first: N monitors act on a run exactly once.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .. import faults
from ..alerts.incidents import Alerter
from ..alerts.notify import Notice
from ..model import rules
from ..model.records import Finding, Run, Verdict
from ..model.rules import blindness
from ..runtime import Watchdog
from ..store import Store
from . import failures, pauses, quarantine, queues, schedules
from .handling import Handler

logger = logging.getLogger("celery_watchdog")
RELEARN = 300.0  # seconds before a task name's budgets are looked at again by this process


@dataclass
class PassReport:
    findings: list[Finding] = field(default_factory=list)
    due: int = 0
    duration: float = 0.0
    blind: str | None = None  # why the watchdog was blind before this pass, if it was
    now: float = 0.0
    notices: list[Notice] = field(default_factory=list)  # the messages this pass sent
    doubt: str | None = None  # why silence was not taken as death or a stall in this pass
    unreadable: int = 0  # records skipped because they could not be read or judged
    failing: list[Finding] = field(default_factory=list)  # task names failing (not runs)

    def as_dict(self) -> dict[str, Any]:
        return {
            "findings": [f.as_dict() for f in self.findings],
            "due": self.due,
            "duration_ms": round(self.duration * 1000, 1),
            "blind": self.blind,
            "at": self.now,
            "alerts": [n.as_dict() for n in self.notices],
            "doubt": self.doubt,
            "unreadable": self.unreadable,
            "failing": [f.as_dict() for f in self.failing],
        }


def run_pass(wd: Watchdog, store: Store | None = None, limit: int = 1000) -> PassReport:
    """One pass; its findings reach people as incidents (:mod:`..alerts.incidents`)."""
    started = time.monotonic()
    store = store or wd.store()
    now = store.now()
    s = wd.settings
    evidence = store.workers.evidence()
    doubtful = rules.doubt(
        evidence, now, snapshot_interval=s.snapshot_interval, flush_interval=s.flush_interval
    )
    if doubtful and rules.silent(evidence, now, s.snapshot_interval):
        store.workers.note_silence(now)  # every worker silent: the grace starts when first noticed
    report = PassReport(
        now=now, blind=blindness(store.monitor.last_pass(), now, s.check_interval, evidence.outage),
        doubt=doubtful,
    )  # fmt: skip
    store.runs.unreadable = 0
    handler = Handler(wd, store, now)
    handler.escalate(limit)
    alive = store.workers.online()
    verdicts: list[tuple[Run, Verdict, bool]] = []
    if not doubtful:
        for host in store.workers.offline():
            for run in store.runs.of_host(host):
                verdicts.append(
                    (run, Verdict("lost", f"its worker {host} stopped reporting"), True)
                )
    _learn_budgets(wd, store, now)
    due = store.runs.due(now, limit)
    report.due = len(due)
    report.unreadable = store.runs.unreadable
    learned = _learned_budgets(wd, store, {r.name for r in due})
    copies = Counter(r.task_id for r in due)
    moves = []
    for run in due:
        if run.worker not in alive and not doubtful:
            continue  # judged above as lost (or its worker has no snapshot yet)
        try:
            policy = wd.policy(wd.app.tasks.get(run.name) or run.name)
            budgets = learned.get(run.name)
            verdict = rules.health(run, policy, now, copies=copies[run.task_id],
                                   learned=budgets, doubtful=bool(doubtful))  # fmt: skip
            move = _next_deadline(run, rules.with_budgets(policy, budgets), now, verdict)
        except Exception as exc:  # one record we cannot judge must not stop the others
            report.unreadable += 1
            faults.report("record", exc, f"cannot judge run {run.run_key}: {exc}")
            continue
        if verdict.health != "ok":
            verdicts.append((run, verdict, False))
        if move and not doubtful:  # doubtful: stays due, judged again once the grace is over
            moves.append(move)
    report.findings = handler.handle_all(verdicts)
    store.runs.reschedule_many(moves)
    report.findings += handler.settle_lost(limit)
    report.findings += quarantine.new_findings(store, limit)
    report.findings += handler.settle_refused(limit)
    report.failing = failures.judge(wd, store, now, limit)
    report.failing += _safely(queues.judge, "queues", wd, store, now)
    report.failing += _safely(schedules.judge, "schedules", wd, store, now)
    _safely(pauses.expire, "pauses", wd, store, now)
    alerter = Alerter(wd, store, now)
    opened = alerter.on_findings(report.findings + report.failing)
    report.duration = time.monotonic() - started
    # Recorded before the review: the review resolves "nobody is watching", and a worker
    # looking in between must already see this pass (or it would open that incident again).
    store.monitor.record_pass(
        {
            "at": now,
            "duration": report.duration,
            "due": report.due,
            "findings": len(report.findings),
            "host": socket.gethostname(),
        }
    )
    report.notices = opened + alerter.review(limit)
    return report


def _safely(judge: Any, what: str, wd: Watchdog, store: Store, now: float) -> list[Finding]:
    """One part of the pass (queues, schedules, pauses): a broker it cannot read or a bug in
    it is that part's own error, reported, never the whole pass's."""
    try:
        return list(judge(wd, store, now))
    except Exception as exc:
        faults.report(what, exc, f"cannot judge the {what}: {faults.describe(exc)}")
        return []


def _next_deadline(
    run: Run, policy: Any, now: float, verdict: Verdict
) -> tuple[str, float, float] | None:
    if run.started is None or run.deadline is None:
        return None
    nxt = rules.deadline(
        policy, started=run.started, last_progress=run.last_progress,
        step_started=run.step_started, step_timeout=run.step_timeout, watched=run.watched,
        after=now,
    )  # fmt: skip
    if verdict.health != "ok":
        nxt = max(nxt, now + policy.heartbeat_timeout)  # acted on: do not judge it every pass
    return (run.run_key, run.deadline, nxt)


def _learned_budgets(wd: Watchdog, store: Store, names: set[str]) -> dict[str, rules.Budgets]:
    """Budgets learned from runtime history for tasks without explicit ones (cached 1 day)."""
    wanted = [n for n in names if _needs_budget(wd, n)]
    cached = store.names.budgets(wanted)
    missing = [n for n in wanted if n not in cached]
    fresh = {}
    s = wd.settings
    for name, runtimes in store.names.runtimes(missing).items():
        learned = rules.learn(
            runtimes, min_runs=s.learn_min_runs, soft_floor=s.learned_soft_floor,
            hard_floor=s.learned_hard_floor,
        )  # fmt: skip
        if learned:
            fresh[name] = (learned.soft, learned.hard)
    store.names.save_budgets(fresh)
    return {n: rules.Budgets(*sh) for n, sh in {**cached, **fresh}.items()}


def _learn_budgets(wd: Watchdog, store: Store, now: float, limit: int = 500) -> None:
    """Learn budgets for every recent task name, not only for runs already due: a run's
    deadline is written from its task's learned budget (``flush.lua``), so a plain task
    without explicit timeouts is flagged slow one interval after its learned soft budget,
    not after heartbeat_timeout. Each name is looked at once per RELEARN in this process."""
    checked = wd.budgets_checked
    names = [n for n in store.names.recent(limit) if now - checked.get(n, -RELEARN) >= RELEARN]
    if names:
        _learned_budgets(wd, store, set(names))
        checked.update(dict.fromkeys(names, now))


def _needs_budget(wd: Watchdog, name: str) -> bool:
    policy = wd.policy(wd.app.tasks.get(name) or name)
    return policy.soft_timeout is None or policy.hard_timeout is None

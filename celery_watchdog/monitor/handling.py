"""From verdicts to actions, exactly once, for a whole pass at a time.

claim (one round trip for all) -> plan (pure, :mod:`..model.plans`) -> act -> record. Every
step works on the batch, so a pass costs a handful of Redis round trips and one revoke per
worker, not ten round trips per due run.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

from .. import dlq, faults
from ..model import diagnosis, events
from ..model.plans import STOPPED, Plan, broker_redelivers, plan
from ..model.records import Finding, Run, Verdict
from ..runtime import Watchdog
from ..store import Store
from . import actions

logger = logging.getLogger("celery_watchdog")


@dataclass
class Case:
    """One verdict on its way through the pass."""

    run: Run
    verdict: Verdict
    worker_gone: bool = False  # its worker stopped reporting: record the end here
    steps: Plan = Plan(False, "none")
    idempotent: bool = False
    message: dict[str, Any] | None = None
    done: list[str] = field(default_factory=list)
    detail: str = ""
    new_id: str | None = None
    where: str | None = None
    refused: bool = False  # a worker did not run it (delivery cap): it is dead-lettered
    fingerprint: str | None = None  # refused because this input is quarantined

    @property
    def claim(self) -> str:
        kind = self.verdict.health
        return f"{kind}:{self.run.task_id if kind == 'duplicate' else self.run.run_key}"


class Handler:
    def __init__(self, wd: Watchdog, store: Store, now: float) -> None:
        self.wd = wd
        self.app = wd.app
        self.store = store
        self.now = now

    def handle_all(self, verdicts: list[tuple[Run, Verdict, bool]]) -> list[Finding]:
        return self.handle_cases([Case(run, verdict, gone) for run, verdict, gone in verdicts])

    def handle_cases(self, cases: list[Case]) -> list[Finding]:
        cases = self._claimed(cases)
        if not cases:
            return []
        for c in cases:
            task = self.app.tasks.get(c.run.name)
            policy = self.wd.policy(task or c.run.name)
            c.idempotent = policy.idempotent
            redelivers = broker_redelivers(task, self.app.conf, worker_gone=c.worker_gone)
            c.steps = plan(c.verdict.health, policy, c.run, broker_redelivers=redelivers)
            if c.refused:  # already acknowledged unrun: the dead-letter queue is its only copy
                c.steps = Plan(False, "dead_letter", "not run again: kept for inspection")
            c.detail = c.steps.why
        self._end_lost([c for c in cases if c.worker_gone])
        self._stop([c for c in cases if c.steps.stop])
        self._diagnose([c for c in cases if c.verdict.health in STOPPED])
        moving = [c for c in cases if c.steps.then != "none"]
        for c, message in zip(
            moving, self.store.messages.get_many([c.run.task_id for c in moving]), strict=True
        ):
            c.message = message
        self._requeue([c for c in moving if c.steps.then == "requeue"])
        self._dead_letter([c for c in moving if c.steps.then == "dead_letter" or not c.new_id])
        # Decided: the requeue runs under a new id, the dead letter keeps its own copy.
        self.store.messages.forget([c.run.task_id for c in moving])
        self.store.runs.mark_verdicts(
            [(c.run.task_id, c.verdict.health, c.verdict.reason) for c in cases if c.done]
        )
        return [self._report(c) for c in cases]

    def _claimed(self, cases: list[Case]) -> list[Case]:
        """Drop what another monitor (or an earlier pass) already acted on, and deaths we caused."""
        lost = [c for c in cases if c.verdict.health == "lost"]
        if lost:
            kinds = sorted(STOPPED)
            flags = self.store.monitor.claimed_many(
                [f"{k}:{c.run.run_key}" for c in lost for k in kinds]
            )
            ours = {
                id(c)
                for i, c in enumerate(lost)
                if any(flags[i * len(kinds) : (i + 1) * len(kinds)])
            }  # it died of our own SIGKILL: its stop was already handled and reported
            cases = [c for c in cases if id(c) not in ours]
        won = self.store.monitor.claim_many([c.claim for c in cases])
        return [c for c, ok in zip(cases, won, strict=True) if ok]

    def _end_lost(self, cases: list[Case]) -> None:
        """Record the end of runs whose worker vanished (they then sit in the lost queue)."""
        ends = [
            events.guessed_end(c.run.task_id, c.run.name, c.run.worker or "", c.run.pid,
                               "FAILURE", "lost", c.verdict.reason,
                               slot=c.run.slot or str(c.run.pid), age=0.0)
            for c in cases
        ]  # fmt: skip
        limits = self.wd.recorder.limits
        if ends and (rejected := self.store.runs.write_batch(ends, [], limits).rejected):
            logger.warning("celery_watchdog: lost runs not recorded: %s", "; ".join(rejected))

    def _stop(self, cases: list[Case]) -> None:
        """Cancel flag (every pool) + SIGTERM now (prefork), SIGKILL after the grace."""
        if not cases:
            return
        grace = self.now + self.wd.settings.terminate_grace
        self.store.monitor.stop_many(
            [(c.run.run_key, c.run.task_id, c.run.worker) for c in cases], grace
        )
        self._revoke({(c.run.worker, c.run.task_id) for c in cases}, "SIGTERM")
        for c in cases:
            c.done.append("revoked")

    def _revoke(self, targets: set[tuple[str | None, str]], signal: str) -> None:
        by_worker: dict[str | None, list[str]] = defaultdict(list)
        for worker, task_id in targets:
            by_worker[worker].append(task_id)
        for worker, task_ids in by_worker.items():
            self._safely(actions.terminate, self.app, task_ids, worker, signal)

    def _diagnose(self, cases: list[Case]) -> None:
        """Where it waits (the stack its child took once quiet) and whether it burns CPU."""
        running = [c for c in cases if c.run.running]
        cpu = self.store.workers.cpu_of(
            [(c.run.worker or "", c.run.task_id, c.run.pid) for c in running]
        )
        for c in running:
            c.where = diagnosis.of_record(c.run.stack, cpu.get((c.run.task_id, c.run.pid)))

    def _requeue(self, cases: list[Case]) -> None:
        for c in cases:
            if not (c.message and c.message.get("body")):
                c.detail = "could not requeue: its original message was not kept"
                continue
            new_id = str(uuid.uuid4())
            published = self._safely(
                dlq.publish_original, self.app, c.run.task_id, c.message, new_id=new_id,
                marker="watchdog_requeue_of", resume_from=c.run.cursor,
            )  # fmt: skip
            if published is False:
                c.detail = "could not requeue: publish failed"
                continue
            c.new_id = new_id
            c.done.append("requeued")
            c.detail = f"requeued as {new_id} ({c.steps.why})"

    def _dead_letter(self, cases: list[Case]) -> None:
        entries = []
        for c in cases:
            entry = dlq.make_entry(c.run, c.verdict, c.message, self.now, idempotent=c.idempotent)
            entry["diagnosis"] = c.where
            entry["fingerprint"] = c.fingerprint
            entries.append(entry)
            c.done.append("dead_lettered")
        self.store.dlq.add_many(entries)

    def _report(self, c: Case) -> Finding:
        finding = Finding(
            kind=c.verdict.health, reason=c.verdict.reason, run=c.run,
            action=c.done[-1] if c.done else "none", actions=tuple(c.done), detail=c.detail,
            diagnosis=c.where, new_task_id=c.new_id,
            replayable=bool(c.message and c.message.get("body")),
            subject=self._subject(c),
        )  # fmt: skip
        if self._events_on():
            self._safely(actions.announce, self.app, c.run, c.verdict)
        return finding

    @staticmethod
    def _subject(c: Case) -> str | None:
        """What the incident is about when not the run: a quarantined input; or, for a run
        lost and left to the broker, its message (each redelivery that dies again is the same
        incident, not one page per delivery)."""
        if c.fingerprint:
            return f"fp:{c.fingerprint}"
        if c.verdict.health == "lost" and c.steps.then == "none" and not c.done:
            return f"msg:{c.run.task_id}"
        return None

    def escalate(self, limit: int) -> None:
        """SIGKILL children that outlived the SIGTERM grace of a stop (prefork)."""
        due = self.store.monitor.terminating_due(self.now)[:limit]
        alive = self.store.runs.running_many([runkey for runkey, _ in due])
        targets = {
            (info.get("worker"), info["task_id"])
            for (_, info), running in zip(due, alive, strict=True)
            if running and "task_id" in info
        }
        self._revoke(targets, "SIGKILL")
        self.store.monitor.terminating_done(*(k for k, _ in due))

    def settle_lost(self, limit: int) -> list[Finding]:
        """Runs whose child died (recorded by its worker's main process) get their action."""
        pending = self.store.monitor.lost_pending(limit)
        verdicts = []
        for runkey, info in pending:
            task_id, worker, slot = [*runkey.split("|"), "", ""][:3]
            runs = self.store.runs.of_task(task_id)
            base = runs[0] if runs else Run(task_id=task_id, name=info.get("name", ""),
                                            state="FAILURE")  # fmt: skip
            pid = int(slot.split(".")[0]) if slot[:1].isdigit() else None
            run = replace(base, worker=worker or base.worker, pid=pid, slot=slot or None,
                          step=info.get("step") or base.step)  # fmt: skip
            why = info.get("reason") or "its worker process died while running it"
            verdicts.append((run, Verdict("lost", why), False))
        findings = self.handle_all(verdicts)
        self.store.monitor.lost_done(*(k for k, _ in pending))
        return findings

    def settle_refused(self, limit: int) -> list[Finding]:
        """Messages a worker refused to run (delivered too often): dead-letter them, once."""
        pending = self.store.deliveries.refused_pending(limit)
        cases = []
        for task_id, info in pending:
            runs = self.store.runs.of_task(task_id)
            base = runs[0] if runs else Run(task_id=task_id, name=str(info.get("name") or ""),
                                            state="REVOKED")  # fmt: skip
            worker = str(info.get("worker") or base.worker or "")
            deliveries = _int(info.get("deliveries")) or base.deliveries
            # Its own run key: a refusal is not one of the runs that crashed before it.
            run = replace(base, worker=worker, pid=None, slot=f"refused{deliveries}",
                          state="REVOKED", deliveries=deliveries)  # fmt: skip
            why = str(info.get("why") or "delivered too often")
            fp = str(info["fp"]) if info.get("kind") == "quarantine" and info.get("fp") else None
            cases.append(Case(run, Verdict("poison", f"not run: {why}"), refused=True,
                              fingerprint=fp))  # fmt: skip
        findings = self.handle_cases(cases)
        self.store.deliveries.refused_done(*(task_id for task_id, _ in pending))
        return findings

    def _events_on(self) -> bool:
        setting = self.wd.settings.task_events
        return bool(self.app.conf.worker_send_task_events) if setting is None else setting

    def _safely(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one side effect; False (counted, logged) when it failed: the pass goes on."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            faults.report("monitor", exc, f"{fn.__name__} failed: {faults.describe(exc)}")
            return False


def _int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0

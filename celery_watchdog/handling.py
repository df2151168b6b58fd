"""From a verdict to actions, exactly once: plan (pure) -> claim -> act -> record -> log.

Stuck, overtime and poison runs are stopped (cooperative cancel flag + SIGTERM, SIGKILL after
``watchdog_terminate_grace``) when ``on_stuck="revoke"``, then requeued when the task is
idempotent and its delivery budget allows, else dead-lettered. Lost runs are requeued or
dead-lettered the same way, unless the broker redelivers them itself (``acks_late``). Slow and
duplicate runs are only reported.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from . import actions, diagnosis, dlq
from .activation import Watchdog
from .config import TaskPolicy
from .records import ActiveRequest, Finding, Run, Verdict
from .store import Store

logger = logging.getLogger("celery_watchdog")
STOPPED = frozenset({"stuck", "overtime", "poison"})


@dataclass(frozen=True)
class Plan:
    stop: bool  # cancel flag + terminate
    then: str  # "requeue" | "dead_letter" | "none"
    why: str = ""


def broker_redelivers(task: Any, conf: Any, worker_gone: bool) -> bool:
    """Will the broker deliver a lost run's message again by itself?

    Only an unacknowledged message comes back: ``acks_late`` and either the whole worker went
    away (its connection with it) or ``reject_on_worker_lost`` requeues it when a child dies
    (by default Celery acknowledges a WorkerLostError failure, and nothing comes back).
    """
    acks_late = bool(getattr(task, "acks_late", conf.task_acks_late))
    if not acks_late:
        return False
    reject = getattr(task, "reject_on_worker_lost", None)
    return worker_gone or bool(conf.task_reject_on_worker_lost if reject is None else reject)


def plan(kind: str, policy: TaskPolicy, run: Run, *, broker_redelivers: bool) -> Plan:
    """What to do about one verdict: a pure decision, tested with plain values."""
    if kind in ("slow", "duplicate"):
        return Plan(False, "none", f"{kind} runs are reported, never stopped")
    if kind in STOPPED and policy.on_stuck == "alert":
        return Plan(False, "none", 'on_stuck="alert": reported only')
    stop = kind in STOPPED
    if kind == "lost" and broker_redelivers:
        return Plan(False, "none", "acks_late: the broker delivers it again by itself")
    if kind != "poison" and policy.idempotent and run.deliveries < policy.max_deliveries:
        return Plan(stop, "requeue", "idempotent, delivery budget left")
    if kind == "poison":
        return Plan(stop, "dead_letter", "delivered too often: kept for inspection, not retried")
    why = "not idempotent" if not policy.idempotent else "delivery budget used up"
    return Plan(stop, "dead_letter", why)


class Handler:
    def __init__(self, wd: Watchdog, store: Store, now: float, log: bool = True) -> None:
        self.log = log
        self.wd = wd
        self.app = wd.app
        self.store = store
        self.now = now
        self.cpu: dict[tuple[str, int | None], ActiveRequest] = {}

    def handle(self, run: Run, verdict: Verdict, end_lost: bool = False) -> list[Finding]:
        claim = run.task_id if verdict.health == "duplicate" else run.run_key
        if verdict.health == "lost" and self._we_stopped(run):
            return []  # it died of our own SIGKILL: its stop was already handled and reported
        if not self.store.claim(f"{verdict.health}:{claim}"):
            return []  # another monitor (or an earlier pass) already acted on it
        task = self.app.tasks.get(run.name)
        policy = self.wd.policy(task or run.name)
        redelivers = broker_redelivers(task, self.app.conf, worker_gone=end_lost)
        steps = plan(verdict.health, policy, run, broker_redelivers=redelivers)
        done, detail, new_id = [], steps.why, None
        where = self.diagnose(run) if verdict.health in STOPPED else None
        if end_lost:
            self._end_lost(run, verdict)
        if steps.stop:
            actions.cancel(self.store, run)
            self._safely(actions.terminate, self.app, run)
            grace = self.now + self.wd.settings.terminate_grace
            info = {"task_id": run.task_id, "worker": run.worker}
            self.store.terminating_add(run.run_key, grace, info)
            done.append("revoked")
        message = self.store.message(run.task_id) if steps.then != "none" else None
        if steps.then == "requeue" and message and message.get("body"):
            new_id = str(uuid.uuid4())
            published = self._safely(
                dlq.publish_original, self.app, run.task_id, message, new_id=new_id,
                marker="watchdog_requeue_of",
            )  # fmt: skip
            if published is False:
                new_id = None
            else:
                done.append("requeued")
                detail = f"requeued as {new_id} ({steps.why})"
        if steps.then == "dead_letter" or (steps.then == "requeue" and not new_id):
            if steps.then == "requeue":
                detail = "could not requeue (no original message, or publish failed)"
            entry = dlq.make_entry(run, verdict, message, self.now, idempotent=policy.idempotent)
            entry["diagnosis"] = where
            self.store.dlq_add(entry)
            done.append("dead_lettered")
        if done:
            self.store.mark_verdict(run.task_id, verdict.health, verdict.reason)
        finding = Finding(
            kind=verdict.health, reason=verdict.reason, run=run,
            action=done[-1] if done else "none", actions=tuple(done), detail=detail,
            diagnosis=where, new_task_id=new_id,
        )  # fmt: skip
        if self._events_on():
            self._safely(actions.announce, self.app, run, verdict)
        if self.log:  # the check command prints findings itself
            logger.warning("celery_watchdog: %s", json.dumps(finding.as_dict(), default=str))
        return [finding]

    def _we_stopped(self, run: Run) -> bool:
        return any(self.store.claimed(f"{kind}:{run.run_key}") for kind in STOPPED)

    def diagnose(self, run: Run) -> str | None:
        """Where it waits (the stack its child took once quiet) and whether it burns CPU."""
        if not run.running:
            return None
        active = self.cpu.get((run.task_id, run.pid))
        frames = diagnosis.frames_from_json(json.loads(run.stack)) if run.stack else None
        return diagnosis.summarise(frames, active.cpu_pct if active else None)

    def escalate(self) -> None:
        """SIGKILL children that outlived the SIGTERM grace of a stop (prefork)."""
        due = self.store.terminating_due(self.now)
        for runkey, info in due:
            if self.store.is_running(runkey):
                run = Run(
                    task_id=info["task_id"], name="", state="STARTED", worker=info.get("worker")
                )
                self._safely(actions.terminate, self.app, run, "SIGKILL")
        self.store.terminating_done(*(k for k, _ in due))

    def settle_lost(self) -> list[Finding]:
        """Runs whose child died (recorded by its worker's main process) get their action."""
        findings: list[Finding] = []
        pending = self.store.lost_pending()
        for runkey, info in pending:
            task_id, worker, slot = [*runkey.split("|"), "", ""][:3]
            runs = self.store.task(task_id)
            base = (
                runs[0]
                if runs
                else Run(task_id=task_id, name=info.get("name", ""), state="FAILURE")
            )
            run = _as_lost(base, info, worker, slot)
            why = info.get("reason") or "its worker process died while running it"
            findings += self.handle(run, Verdict("lost", why))
        self.store.lost_done(*(k for k, _ in pending))
        return findings

    def _end_lost(self, run: Run, verdict: Verdict) -> None:
        """Record the end of a run whose worker vanished (it is then in the lost queue)."""
        event = {"kind": "end", "id": run.task_id, "name": run.name, "worker": run.worker,
                 "pid": run.pid, "slot": run.slot or str(run.pid), "guess": True,
                 "state": "FAILURE", "outcome": "lost", "exception": verdict.reason,
                 "age": 0.0}  # fmt: skip
        self.store.write_batch([event], [], self.wd.recorder.limits)

    def _events_on(self) -> bool:
        setting = self.wd.settings.task_events
        return bool(self.app.conf.worker_send_task_events) if setting is None else setting

    def _safely(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one side effect; False (logged) when it failed: the pass goes on."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            logger.warning("celery_watchdog: %s failed: %s", fn.__name__, exc)
            return False


def _as_lost(base: Run, info: dict[str, Any], worker: str, slot: str) -> Run:
    from dataclasses import replace

    pid = int(slot.split(".")[0]) if slot[:1].isdigit() else None
    return replace(base, worker=worker or base.worker, pid=pid, slot=slot or None,
                   step=info.get("step") or base.step)  # fmt: skip

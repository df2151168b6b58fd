"""What to do about a verdict: pure decisions, tested with plain values.

Stuck, overtime and poison runs are stopped (cooperative cancel flag + SIGTERM, SIGKILL after
``watchdog_terminate_grace``) when ``on_stuck="revoke"``, then requeued when the task is
idempotent and its delivery budget allows, else dead-lettered. Lost runs are requeued or
dead-lettered the same way, unless the broker redelivers them itself. Slow and duplicate runs
are only reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .policy import TaskPolicy
from .records import Run

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

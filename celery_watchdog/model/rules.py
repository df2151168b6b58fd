"""Pure rules: (run, policy, now) -> verdict. No Redis, no clock; tests call them with numbers.

The monitor issue extends this module (learned budgets, actions); the status commands already
use it so that what a person sees is what the monitor will act on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from .humanize import duration
from .policy import TaskPolicy
from .records import Evidence, Run, Verdict, number

OK = Verdict("ok")


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def lost(run: Run, policy: TaskPolicy, now: float, worker_alive: bool) -> Verdict | None:
    if run.running and not worker_alive:
        return Verdict("lost", f"its worker {run.worker} stopped reporting")
    if not run.running and run.outcome == "lost":
        # It ended because its process died (WorkerLostError, SIGKILL, OOM): lost, not ok.
        return Verdict("lost", run.exception or "its worker process died while running it")
    return None


def poison(run: Run, policy: TaskPolicy, now: float) -> Verdict | None:
    if run.deliveries > policy.max_deliveries:
        return Verdict(
            "poison", f"delivered {run.deliveries} times (max_deliveries={policy.max_deliveries})"
        )
    return None


def stuck(run: Run, policy: TaskPolicy, now: float) -> Verdict | None:
    """A WatchedTask with no progress for heartbeat_timeout, or a step past its own timeout."""
    if not (run.running and run.watched):
        return None
    if run.step and run.step_timeout and run.step_started is not None:
        in_step = now - run.step_started
        if in_step > run.step_timeout:
            return Verdict(
                "stuck",
                f"step '{run.step}' has run {_ago(in_step)}, "
                f"past its {_ago(run.step_timeout)} timeout",
            )
    since = run.last_progress if run.last_progress is not None else run.started
    if since is None or now - since <= policy.heartbeat_timeout:
        return None
    beat = run.last_heartbeat
    if beat is not None and now - beat <= policy.heartbeat_timeout:
        return Verdict(
            "stuck",
            f"heartbeats arrive but progress has not moved for {_ago(now - since)} "
            f"(heartbeat_timeout {_ago(policy.heartbeat_timeout)})",
        )
    return Verdict(
        "stuck",
        f"no heartbeat for {_ago(now - (beat or since))} "
        f"(heartbeat_timeout {_ago(policy.heartbeat_timeout)})",
    )


def overtime(run: Run, policy: TaskPolicy, now: float) -> Verdict | None:
    if run.running and run.started is not None and policy.hard_timeout is not None:
        runtime = now - run.started
        if runtime > policy.hard_timeout:
            return Verdict(
                "overtime",
                f"running {_ago(runtime)}, past hard_timeout {_ago(policy.hard_timeout)}",
            )
    return None


def slow(run: Run, policy: TaskPolicy, now: float) -> Verdict | None:
    if run.running and run.started is not None and policy.soft_timeout is not None:
        runtime = now - run.started
        if runtime > policy.soft_timeout:
            return Verdict(
                "slow", f"running {_ago(runtime)}, past soft_timeout {_ago(policy.soft_timeout)}"
            )
    return None


_ORDERED: tuple[Callable[[Run, TaskPolicy, float], Verdict | None], ...] = (
    poison,
    stuck,
    overtime,
    slow,
)


@dataclass(frozen=True)
class Budgets:
    """Runtime budgets learned from a task's history (seconds)."""

    soft: float
    hard: float


def learn(
    runtimes: Sequence[float], *, min_runs: int, soft_floor: float, hard_floor: float
) -> Budgets | None:
    """soft = 2 x p99, hard = 5 x p99 of sorted runtimes, never below the floors."""
    if len(runtimes) < min_runs:
        return None
    p99 = runtimes[min(len(runtimes) - 1, round(0.99 * (len(runtimes) - 1)))]
    return Budgets(soft=max(2 * p99, soft_floor), hard=max(5 * p99, hard_floor))


def with_budgets(policy: TaskPolicy, learned: Budgets | None) -> TaskPolicy:
    """Explicit budgets win; a task without them gets the learned ones."""
    if learned is None:
        return policy
    return replace(
        policy,
        soft_timeout=policy.soft_timeout if policy.soft_timeout is not None else learned.soft,
        hard_timeout=policy.hard_timeout if policy.hard_timeout is not None else learned.hard,
    )


def deadline(
    policy: TaskPolicy,
    *,
    started: float,
    last_progress: float | None,
    step_started: float | None = None,
    step_timeout: float | None = None,
    watched: bool,
    after: float | None = None,
) -> float:
    """When a run next becomes suspect: the earliest of its deadlines (later than ``after``).

    With nothing left to wait for, the run is looked at again one heartbeat_timeout later
    (a budget may have been learned meanwhile, its worker may have died).
    """
    candidates = []
    if watched:
        candidates.append((last_progress or started) + policy.heartbeat_timeout)
    if step_timeout and step_started is not None:
        candidates.append(step_started + step_timeout)
    for budget in (policy.soft_timeout, policy.hard_timeout):
        if budget is not None:
            candidates.append(started + budget)
    floor = -float("inf") if after is None else after
    future = [c for c in candidates if c > floor]
    if future:
        return min(future)
    return max(started, floor) + policy.heartbeat_timeout


def doubt(
    evidence: Evidence, now: float, *, snapshot_interval: float, flush_interval: float
) -> str | None:
    """Why silence in the store is not (yet) evidence of death or of a stall, or None.

    Absence of evidence is not death: after the store was out (frozen, down, full, failed
    over), workers get a :func:`grace` to report again before any run is judged lost or
    stuck. Every worker silent at once is read the same way until that grace has passed since
    it was first noticed.
    """
    grace = grace_after_outage(snapshot_interval, flush_interval)
    pulse, outage = evidence.pulse, evidence.outage
    if outage is not None and now - outage < grace:
        return (
            f"the watchdog's Redis was unreachable to workers until {_ago(now - outage)} ago: "
            f"they get {_ago(grace)} to report again"
        )
    if silent(evidence, now, snapshot_interval) and (outage is None or outage < (pulse or 0)):
        return "no worker has written a snapshot lately: the store may have been unreachable"
    return None


def grace_after_outage(snapshot_interval: float, flush_interval: float) -> float:
    """Seconds workers get to report again once the store is back: a reporter retries every
    0.5 s after a failed write and a write blocks at most the 2 s socket timeout, then a
    snapshot interval; a flusher needs two intervals (one may be blocked as well)."""
    return 2 * snapshot_interval + 2 * flush_interval + 2.5


def silent(evidence: Evidence, now: float, snapshot_interval: float) -> bool:
    """Has every worker been silent for longer than a healthy one ever is?"""
    return evidence.pulse is None or now - evidence.pulse > 1.5 * snapshot_interval + 1


def health(
    run: Run,
    policy: TaskPolicy,
    now: float,
    *,
    worker_alive: bool = True,
    copies: int = 1,
    learned: Budgets | None = None,
    doubtful: bool = False,
) -> Verdict:
    """The one verdict a person sees for a run: the most serious rule that fires, else ok.

    ``doubtful`` (see :func:`doubt`): silence proves nothing now, so a missing snapshot is not
    death and missing heartbeats are not a stall (both are judged once the grace is over).
    """
    policy = with_budgets(policy, learned)
    verdict = lost(run, policy, now, worker_alive or doubtful)
    if verdict:
        return verdict
    if not run.running and run.verdict:
        return Verdict(run.verdict, run.verdict_reason or "")  # what the monitor acted on
    if run.running and copies > 1:
        return Verdict("duplicate", f"the same task id is running {copies} times at once")
    for rule in _ORDERED:
        if doubtful and rule is stuck:
            continue
        verdict = rule(run, policy, now)
        if verdict:
            return verdict
    return OK


BLIND_AFTER = 3  # intervals without a completed pass


def blindness(
    last_pass: dict[str, str], now: float, interval: float, since: float | None = None
) -> str | None:
    """Why nobody is watching, or None: no pass completed for BLIND_AFTER intervals.

    ``since``: when the store came back after an outage (no pass could run while it was out;
    the monitor gets its intervals again from then, as the workers get their grace).
    """
    at = number(last_pass.get("at"))
    if at is None:
        return "no monitor pass has ever completed (is beat or `celery watchdog monitor` running?)"
    # A pass is proof of life when it ends: a long one must not look stale the moment it is done.
    at += max(0.0, number(last_pass.get("duration")) or 0.0)
    if now - max(at, since or at) > BLIND_AFTER * interval:
        return (
            f"no monitor pass for {duration(now - at)} (expected every {duration(interval)}): "
            "beat is down, or every worker slot is busy or stuck"
        )
    return None

"""When failures of a task NAME deserve a page: a failed streak, a retry storm, a failure spike.

Pure rules like :mod:`.rules`: counts the caller read for a window it chose go in, a
:class:`FailureVerdict` or None comes out; ``now`` reaches the spike rule as an hour of the week.
Counts may come from a corrupted store: NaN, infinite or negative ones read as 0, huge ones are
capped, and no rule raises or divides by zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .humanize import cut, duration, percent
from .records import number

FAIL_ALERT_AFTER = 3  # consecutive failures that make a "failed" alert (task option default)

STORM_WINDOW = 3600.0  # seconds the retry counts cover
STORM_MIN_RETRIES = 20  # fewer retries than this in the window are never a storm
STORM_MAX_SUCCESS_RATIO = 0.2  # a storm: successes / retries at most this

SPIKE_MIN_RUNS = 20  # an hour with fewer runs says too little to call a spike
SPIKE_FACTOR = 3.0  # the hour's failure rate must be this many times the usual one...
SPIKE_MIN_RATE = 0.1  # ...and at least this, whatever the usual rate
SPIKE_MIN_Z = 3.0  # ...and the excess that unlikely by chance (one-sided z-score)
SPIKE_RESOLVE_FACTOR = 1.5  # an open spike ends below this many times the usual rate
# The prior: every baseline starts as if it had seen 1 failure in 20 runs, so that a task with
# little or no history is not judged against a usual rate of 0 (where one failure is a spike).
PRIOR_FAILURES, PRIOR_RUNS = 1, 20
MOSTLY_FAILING = 0.5  # a spike where at least this share of runs fails hints P1

_CAP = 2**53  # counts beyond what a float holds exactly come from a corrupted store
_ERROR_CHARS = 160
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_WEEK_HOURS = 168
_EPOCH_HOUR = 72  # 1970-01-01 00:00 UTC was a Thursday: hour 72 of its week


@dataclass(frozen=True)
class FailureVerdict:
    """A rule's conclusion about a task name: an alert kind, why in words, the numbers."""

    kind: str  # failed | retry_storm | failure_spike
    name: str
    reason: str
    severity_hint: str | None = None  # None: the kind's configured severity decides
    facts: dict[str, object] = field(default_factory=dict)


def _count(raw: object) -> int:
    """A count from the store: a whole number in 0.._CAP (NaN, inf, negative, junk: 0)."""
    value = number(raw)
    return 0 if value is None or value < 0 else int(min(value, _CAP))


def _ratio(raw: object) -> float:
    value = number(raw)
    return 0.0 if value is None or value < 0 else value


def top_reason(counts: Mapping[str, int]) -> str | None:
    """The most frequent failure reason bucket (ties: the first name), None when none counted."""
    counted = [(-n, name) for name, raw in counts.items() if (n := _count(raw)) > 0]
    return min(counted)[1] if counted else None


def _why(top: str | None, last_error: str | None) -> str:
    parts = [p for p in (top, last_error and cut(last_error, _ERROR_CHARS)) if p]
    return f" ({': '.join(parts)})" if parts else ""


def failed_streak(
    name: str,
    streak: float,
    threshold: float = FAIL_ALERT_AFTER,
    *,
    top_reason: str | None,
    last_error: str | None,
    exhausted: bool = False,
    retries: float = 0,
) -> FailureVerdict | None:
    """Kind "failed": ``streak`` failures in a row (since the last success) reached
    ``threshold``, or a run gave up after its retries (``exhausted``), whatever the streak."""
    streak, threshold, retries = _count(streak), max(1, _count(threshold)), _count(retries)
    if not exhausted and streak < threshold:
        return None
    if exhausted:
        what = f"gave up after {retries} retries" if retries else "gave up retrying"
    else:
        what = f"failed {streak} times in a row"
    facts: dict[str, object] = {"streak": streak, "threshold": threshold, "exhausted": exhausted,
                                "retries": retries, "top_reason": top_reason}  # fmt: skip
    return FailureVerdict("failed", name, what + _why(top_reason, last_error), facts=facts)


def failed_resolved(streak: float) -> bool:
    """An open "failed" incident ends once a success came (the streak is back to 0)."""
    return _count(streak) == 0


def retry_storm(
    name: str,
    retried: float,
    succeeded: float,
    failed: float,
    *,
    window_s: float = STORM_WINDOW,
    min_retries: float = STORM_MIN_RETRIES,
    max_success_ratio: float = STORM_MAX_SUCCESS_RATIO,
) -> FailureVerdict | None:
    """Kind "retry_storm": at least ``min_retries`` retries in the window and successes at most
    ``max_success_ratio`` of them (the work keeps coming back and rarely gets done)."""
    retried, succeeded, failed = _count(retried), _count(succeeded), _count(failed)
    ratio = succeeded / max(1, retried)
    if retried < max(1, _count(min_retries)) or ratio > _ratio(max_success_ratio):
        return None
    window = "hour" if window_s == STORM_WINDOW else duration(_ratio(window_s))
    reason = (f"retried {retried} times in the last {window} with {succeeded} successes "
              f"({percent(ratio)}) and {failed} failures")  # fmt: skip
    facts: dict[str, object] = {"retried": retried, "succeeded": succeeded, "failed": failed,
                                "success_ratio": ratio, "window_s": _ratio(window_s)}  # fmt: skip
    return FailureVerdict("retry_storm", name, reason, facts=facts)


def retry_storm_resolved(
    retried: float,
    succeeded: float,
    *,
    min_retries: float = STORM_MIN_RETRIES,
    max_success_ratio: float = STORM_MAX_SUCCESS_RATIO,
) -> bool:
    """A storm ends with hysteresis, so that it does not flap at the threshold: retries fell
    below half of ``min_retries``, or successes rose above twice ``max_success_ratio``."""
    retried = _count(retried)
    ratio = _count(succeeded) / max(1, retried)
    return retried < _count(min_retries) / 2 or ratio > 2 * _ratio(max_success_ratio)


def hour_of_week(ts: float) -> int:
    """0 (Monday 00:00 UTC) .. 167 (Sunday 23:00 UTC) for an epoch time (junk reads as 0)."""
    value = number(ts) or 0.0
    return (int(value // 3600) + _EPOCH_HOUR) % _WEEK_HOURS


def hour_label(how: int) -> str:
    """``"Mon 14:00"`` for an hour of the week (taken modulo a week; junk reads as 0)."""
    exact = isinstance(how, int) and not isinstance(how, bool)  # a float loses a huge int's digits
    hour = (how if exact else int(number(how) or 0)) % _WEEK_HOURS
    return f"{_DAYS[hour // 24]} {hour % 24:02d}:00"


def baseline_rate(history: Sequence[tuple[float, float]]) -> float:
    """The usual failure rate from ``(runs, failures)`` samples, the prior included.

    Each pair counts as one sample, whatever it covers (the same hour in previous weeks, its
    neighbouring hours: the caller decides). Always in (0, 1), so never a zero to divide by.
    """
    runs, failures = PRIOR_RUNS, PRIOR_FAILURES
    for sample_runs, sample_failures in history:
        n = _count(sample_runs)
        runs, failures = runs + n, failures + min(n, _count(sample_failures))
    return failures / runs


def _z(failures: int, runs: int, p: float) -> float:
    # One-sided binomial z-score with a continuity correction (the normal approximation is
    # optimistic for the small counts of one hour; the 0.5 keeps it from crying wolf).
    return (failures - 0.5 - runs * p) / math.sqrt(runs * p * (1 - p))


def failure_spike(
    name: str,
    now_runs: float,
    now_failures: float,
    history: Sequence[tuple[float, float]],
    *,
    hour_of_week: int,
    min_runs: float = SPIKE_MIN_RUNS,
    factor: float = SPIKE_FACTOR,
    min_rate: float = SPIKE_MIN_RATE,
    top_reason: str | None = None,
) -> FailureVerdict | None:
    """Kind "failure_spike": the last hour failed far more often than usual at this hour.

    All of: at least ``min_runs`` runs; a rate of at least ``min_rate`` and ``factor`` times
    :func:`baseline_rate`; and a one-sided z-score against the baseline of at least SPIKE_MIN_Z.
    """
    runs = _count(now_runs)
    failures = min(runs, _count(now_failures))
    if runs < max(1, _count(min_runs)):
        return None
    base, rate = baseline_rate(history), failures / runs
    z = _z(failures, runs, base)
    if rate < max(_ratio(min_rate), _ratio(factor) * base) or z < SPIKE_MIN_Z:
        return None
    label = hour_label(hour_of_week)
    seen = sum(_count(r) for r, _ in history)
    usual = f"normally {percent(base)}" if seen else "with no history"
    reason = (
        f"{failures} of {runs} runs failed in the last hour ({percent(rate)}), "
        f"{usual} at this hour ({label})" + (f"; mostly {top_reason}" if top_reason else "")
    )
    facts: dict[str, object] = {"runs": runs, "failures": failures, "rate": rate,
                                "baseline": base, "history_runs": seen, "z": z,
                                "hour": label, "top_reason": top_reason}  # fmt: skip
    hint = "P1" if rate >= MOSTLY_FAILING else None
    return FailureVerdict("failure_spike", name, reason, severity_hint=hint, facts=facts)


def failure_spike_resolved(
    now_runs: float,
    now_failures: float,
    history: Sequence[tuple[float, float]],
    *,
    min_runs: float = SPIKE_MIN_RUNS,
    min_rate: float = SPIKE_MIN_RATE,
) -> bool:
    """A spike ends, with hysteresis: the hour has fewer than half of ``min_runs`` runs, or its
    rate fell below the larger of SPIKE_RESOLVE_FACTOR x the baseline and half of ``min_rate``
    (a spike starts at the larger of ``factor`` x the baseline and ``min_rate``)."""
    runs = _count(now_runs)
    if runs < _count(min_runs) / 2 or runs == 0:
        return True
    rate = min(runs, _count(now_failures)) / runs
    return rate < max(_ratio(min_rate) / 2, SPIKE_RESOLVE_FACTOR * baseline_rate(history))

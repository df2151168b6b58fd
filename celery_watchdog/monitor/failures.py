"""Failure alerts about task names: a failed streak or a retry chain that gave up, a retry
storm, a failure spike for this hour of the week (the rules are :mod:`..model.failure_rules`).

Judged each pass for the names that failed lately only (the store keeps an index of them):
the cost follows what fails, not what runs. Each verdict becomes a finding whose incident is
keyed by its kind and task name, so a name that keeps failing pages once; the incident
resolves when successes return (:mod:`..alerts.incidents`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..model import failure_rules as rules
from ..model.records import Finding, NameStats, Run
from ..runtime import Watchdog
from ..store import Store

WINDOW = 3600.0  # the counts a pass judges: the last hour
SHOWN = 3  # accounts named in an alert before "and N more"


def judge(wd: Watchdog, store: Store, now: float, limit: int = 1000) -> list[Finding]:
    failing = store.names.failing(limit)
    names = sorted(set(failing) | set(store.names.failed_since(now - WINDOW, limit)))
    if not names:
        return []
    stats = store.names.stats(names, now)
    parked = store.quarantine.failures_by_name(names)
    gave_up = store.names.gave_up(names)
    hour = int(now // 3600)
    history = store.names.week_history(names, (hour - 1, hour, hour + 1))
    how = rules.hour_of_week(now)
    findings = []
    for name in names:
        st = stats[name]
        task = wd.app.tasks.get(name)
        policy = wd.policy(task or name)
        top = st.top_reason
        quit_ = gave_up.get(name) or {}
        # A chain that gave up since the last success (and within a day) pages by itself.
        at = quit_.get("at", 0.0)
        exhausted = at > (st.last_success or 0) and at > now - 86400
        hour_counts = st.last_hour
        runs = sum(hour_counts.get(k, 0) for k in ("succeeded", "failed", "lost"))
        verdicts = [
            rules.failed_streak(
                name, failing.get(name, 0), policy.fail_alert_after, top_reason=top,
                last_error=st.last_error, exhausted=exhausted,
                retries=quit_.get("retries", 0),
            ),
            rules.retry_storm(
                name, hour_counts.get("retried", 0), hour_counts.get("succeeded", 0),
                hour_counts.get("failed", 0),
            ),
            rules.failure_spike(
                name, runs, hour_counts.get("failed", 0) + hour_counts.get("lost", 0),
                history.get(name, []), hour_of_week=how, top_reason=top,
            ),
        ]  # fmt: skip
        streak = failing.get(name, 0)
        if not exhausted and streak and parked.get(name, 0) >= streak:
            verdicts[0] = None  # these failures are one quarantined input: its alert says so
        for v in verdicts:
            if v is not None:
                task_id = (
                    str(quit_.get("task_id") or "") if v.kind == "failed" and exhausted else ""
                )
                findings.append(_finding(store, v, st, task_id, now))
    return findings


def _finding(
    store: Store, v: rules.FailureVerdict, st: NameStats, task_id: str, now: float
) -> Finding:
    hit = accounts(store.names.failed_contexts(st.name, now - 86400))
    reason = v.reason + (f"; {hit}" if hit else "")
    run = Run(task_id=task_id, name=st.name, state="FAILURE", exception=st.last_error)
    return Finding(
        kind=v.kind, reason=reason, run=run, action="none", bucket=st.top_reason,
        severity_hint=v.severity_hint,
    )  # fmt: skip


def accounts(contexts: Sequence[Mapping[str, Any]]) -> str:
    """``"hit 7 accounts (account_id=12, 15, 99, and 4 more)"``: who the failures reached."""
    if not contexts:
        return ""
    keys = sorted({k for c in contexts for k in c})
    if len(keys) == 1:  # "account_id=12, 15, 99": the name once
        values = [str(c[keys[0]]) for c in contexts]
        unique = list(dict.fromkeys(values))
        unique[0] = f"{keys[0]}={unique[0]}"
    else:
        values = [", ".join(f"{k}={c[k]}" for k in keys if k in c) for c in contexts]
        unique = list(dict.fromkeys(values))
    shown = ", ".join(unique[:SHOWN]) + (
        f", and {len(unique) - SHOWN} more" if len(unique) > SHOWN else ""
    )
    noun = "account" if len(unique) == 1 else "accounts"
    return f"hit {len(unique)} {noun} in the last day ({shown})"

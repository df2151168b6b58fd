"""The weekly check: the seeds' fifteen-minute review as one document.

Per queue, the trend of its oldest waiting message (the largest per day, from what monitor
passes recorded) and whether it rose two weeks in a row; per task name, runs, failures and
retries per day, and the failure reasons new this period; the incidents opened, the top ones,
and how long people took to acknowledge and to resolve them.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

from ..store import IncidentDoc

if TYPE_CHECKING:
    from ..runtime import Watchdog
    from ..store import Store

WEEK = 7 * 86400
TOP = 10


def report_doc(
    store: Store, wd: Watchdog, *, since: float = WEEK, now: float | None = None
) -> dict[str, Any]:
    now = store.now() if now is None else now
    days = max(1, min(28, round(since / 86400)))
    return {
        "timestamp": now, "since": since, "days": days,
        "queues": _queues(store, now, days), "tasks": _tasks(store, now, days),
        "incidents": _incidents(store, now, since),
    }  # fmt: skip


def _queues(store: Store, now: float, days: int) -> list[dict[str, Any]]:
    names = store.queues.known()
    series = store.queues.oldest_by_day(names, now, days=max(days, 21))
    out = []
    for name in names:
        values = series[name]
        weeks = [_max(values[i : i + 7]) for i in range(len(values) - 21, len(values), 7)]
        rising = None not in weeks and weeks[0] < weeks[1] < weeks[2]  # type: ignore[operator]
        out.append({
            "name": name, "oldest_by_day": values[-days:], "max_oldest": _max(values[-days:]),
            "weekly_max_oldest": weeks, "rising_two_weeks": rising,
        })  # fmt: skip
    return out


def _tasks(store: Store, now: float, days: int) -> list[dict[str, Any]]:
    names = store.names.recent(500)
    daily = store.names.daily(names, now, days)
    # The calendar weeks the period touches, and the three weeks before them.
    period = _week(now) - _week(now - days * 86400) + 1
    reasons = store.names.reasons_by_week(names, now, weeks=period + 3)
    out = []
    for name in names:
        per_day = daily[name]
        recent, before = reasons[name][-period:], reasons[name][:-period]
        now_reasons = {r for week in recent for r, n in week.items() if n > 0}
        old_reasons = {r for week in before for r, n in week.items() if n > 0}
        totals = {k: sum(d[k] for d in per_day) for k in ("runs", "failures", "retries")}
        if not any(totals.values()):
            continue
        out.append({
            "name": name, **totals, "retries_by_day": [d["retries"] for d in per_day],
            "failures_by_day": [d["failures"] for d in per_day],
            "new_reasons": sorted(now_reasons - old_reasons),
        })  # fmt: skip
    return sorted(out, key=lambda t: (-t["failures"], -t["retries"], t["name"]))


def _incidents(store: Store, now: float, since: float) -> dict[str, Any]:
    found = [i for i in store.incidents.recent(1000) if i.opened_at >= now - since]
    acked = [i.acked_at - i.opened_at for i in found if i.acked_at]
    resolved = [i.resolved_at - i.opened_at for i in found if i.resolved_at]
    top = sorted(found, key=lambda i: (_severity(i), -i.count, -_open_for(i, now)))[:TOP]
    return {
        "opened": len(found), "still_open": sum(1 for i in found if i.active),
        "median_to_acknowledge": statistics.median(acked) if acked else None,
        "median_to_resolve": statistics.median(resolved) if resolved else None,
        "max_to_resolve": max(resolved, default=None),
        "top": [{**i.as_dict(), "open_for": _open_for(i, now)} for i in top],
    }  # fmt: skip


def _week(ts: float) -> int:
    return (int(ts // 3600) + 72) // 168  # weeks start on Monday 00:00 UTC, as in the store


def _max(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _open_for(inc: IncidentDoc, now: float) -> float:
    return (inc.resolved_at or now) - inc.opened_at


def _severity(inc: IncidentDoc) -> str:
    return inc.severity if inc.severity in ("P1", "P2", "P3") else "P9"

"""The status document: per task name, running runs by health, success rates, runtimes, last
outcomes; and the watchdog's own state (last pass, blindness, doubt, its errors, channels).

Judged with the same scene as every other document (:mod:`.documents`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..model.normal import NameNormal
from ..model.policy import TaskPolicy
from ..model.records import NameStats, number
from ..model.rules import blindness
from .documents import HEALTHS, Judged, _judge_running, _Scene
from .pauses import paused

if TYPE_CHECKING:
    from ..runtime import Watchdog
    from ..store import Store


QUEUE_FIELDS = ("health", "messages", "oldest_age", "oldest_age_is_lower_bound", "summary",
                "action", "affected")  # fmt: skip


def watchdog_errors(store: Store, now: float) -> list[dict[str, Any]]:
    """The watchdog's own errors, one entry per source and kind, most frequent first."""
    found = [
        {"source": source, "kind": kind, **info}
        for source, kinds in store.workers.faults(now).items()
        for kind, info in kinds.items()
    ]
    return sorted(found, key=lambda e: (-e["count_1h"], -(e["last_at"] or 0)))


# -- status --------------------------------------------------------------------------------


def _name_summary(
    name: str,
    judged: Sequence[Judged],
    stats: NameStats | None,
    policy: TaskPolicy,
    normal: NameNormal | None,
) -> dict[str, Any]:
    counts = dict.fromkeys(HEALTHS, 0)
    for j in judged:
        counts[j.verdict.health] = counts.get(j.verdict.health, 0) + 1
    stats = stats or NameStats(name, {}, {}, {}, None, None, None)
    return {
        "name": name, "running": len(judged), "health": counts,
        "success_rate_1h": NameStats.success_rate(stats.last_hour),
        "success_rate_24h": NameStats.success_rate(stats.last_day),
        "counts_1h": dict(stats.last_hour), "counts_24h": dict(stats.last_day),
        "p50_runtime": stats.percentile(0.5), "p95_runtime": stats.percentile(0.95),
        "last_success": stats.last_success, "last_failure": stats.last_failure,
        "last_error": stats.last_error, "owner": policy.owner,
        "top_reason": stats.top_reason, "reasons_1h": dict(stats.reasons_hour),
        "reasons_24h": dict(stats.reasons_day), "reason_examples": dict(stats.examples),
        "failing_streak": stats.streak,
        # What is normal at this hour of the week (the weeks before): runs, failures, p95.
        "normal": normal.as_doc() if normal else None,
    }  # fmt: skip


def _channel_health(status: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per alert channel: is its last delivery ok, and when did it last fail and why."""
    out = []
    for name, st in sorted(status.items()):
        last = st.get("last") or {}
        error = st.get("last_error") or {}
        out.append({
            "channel": name, "ok": bool(last.get("ok", True)), "delivered": st["delivered"],
            "failed": st["failed"], "last_at": last.get("at"), "last_error": error.get("error"),
            "last_error_at": error.get("at"), "last_ok_at": st.get("last_ok"),
        })  # fmt: skip
    return out


def status_doc(store: Store, wd: Watchdog, *, now: float | None = None) -> dict[str, Any]:
    """Per task name: running runs by health, success rates, p95 runtime, last outcomes."""
    scene = _Scene(store, wd, now)
    return status_of(store, wd, scene, _judge_running(store, scene))


def status_of(
    store: Store, wd: Watchdog, scene: _Scene, running: Sequence[Judged]
) -> dict[str, Any]:
    """:func:`status_doc` of runs already judged in ``scene`` (the page judges them once)."""
    names = sorted({*store.names.recent(), *(j.run.name for j in running)} - {""})
    stats = store.names.stats(names, scene.now)
    normal = store.names.normal(names, scene.now)
    by_name: dict[str, list[Judged]] = {}
    for j in running:
        by_name.setdefault(j.run.name, []).append(j)
    online = sum(1 for w in scene.workers if w.online)
    last_pass = store.monitor.last_pass()
    interval = wd.settings.check_interval
    return {
        "timestamp": scene.now,
        "workers": {"online": online, "offline": len(scene.workers) - online},
        "watchdog": {
            "last_pass": number(last_pass.get("at")),
            "blind": blindness(last_pass, scene.now, interval, scene.evidence.outage),
            "doubt": scene.doubt,
            "errors": watchdog_errors(store, scene.now),
            "unreadable": store.runs.unreadable,
            "dead_letters": store.dlq.count(),
            "open_incidents": store.incidents.active_count(),
            "alert_channels": _channel_health(store.channels.status()),
        },
        "paused": paused(store),
        # As the last monitor pass judged them (``queues`` reads the broker now).
        "queues": {
            name: {k: q.get(k) for k in QUEUE_FIELDS}
            for name, q in sorted(store.queues.latest().items())
        },
        "tasks": {
            name: _name_summary(
                name, by_name.get(name, ()), stats.get(name), scene.policy(name), normal.get(name)
            )
            for name in names
        },
    }

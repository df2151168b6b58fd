"""Queue health, each pass: depth and the oldest waiting message, completions, consumers.

The seeds' first signal: the age of the oldest waiting message per queue, judged together with
completions (:mod:`..model.queue_rules`): past its threshold with completions going on it is a
*backlog* (slow, a capacity problem); with none, it is *stalled*, and why when it can be told
(no worker consumes it; workers consume it but stopped taking messages, celery#8030; every
slot is busy with stuck runs). The oldest message's age comes from the publish stamp a producer
with the watchdog puts in its headers; for others, from when a pass first saw it at the head of
its queue (a lower bound, said so).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from typing import Any

from ..brokers import HeadMessage, QueueDepth, bound_queues, queue_names, read_app
from ..model import queue_rules as rules
from ..model.humanize import duration
from ..model.records import Finding, Run, WorkerInfo
from ..runtime import Watchdog
from ..store import Store

WINDOW = 600.0  # seconds of completions a verdict looks at (two 5-minute buckets)


def read(
    wd: Watchdog, store: Store, now: float, workers: Sequence[WorkerInfo]
) -> list[dict[str, Any]]:
    """Every queue's facts, verdict and summary (what ``queues`` shows and the monitor judges)."""
    online = [w for w in workers if w.online]
    names = sorted({
        *queue_names(wd.app), *bound_queues(wd.app), *store.queues.published_queues(),
        *(q for w in online for q in w.queues),
    })  # fmt: skip
    depths = read_app(wd.app, names, management_url=wd.settings.broker_api)
    unstamped = {
        q: d.head.task_id
        for q, d in depths.items()
        if d.head is not None and d.head.published_at is None and d.head.task_id
    }
    first_seen = store.queues.first_seen(unstamped, now)
    # A broker whose waiting messages cannot be read (RabbitMQ): the producers' publish records.
    unread = {q: d.messages for q, d in depths.items()
              if d.head is None and d.oldest_age_api is None and not d.error}  # fmt: skip
    published = store.queues.published_oldest(unread)
    waiting_for = store.queues.published_contexts(sorted(unread))
    done = store.queues.completions(names, now)
    normal = store.queues.normal_oldest(names, now)
    normal_done = store.queues.normal_completions(names, now)
    paused = {t.removeprefix("queue:") for t in store.pauses.all() if t.startswith("queue:")}
    docs = []
    for name in names:
        depth = depths[name]
        policy = wd.settings.queue_policies.get(name, rules.QueuePolicy())
        completed, last_done = done.get(name, (0, None))
        age, lower = _oldest_age(depth, first_seen.get(name), now)
        if age is None and name in published:
            age, lower = max(0.0, now - published[name]), False
        facts = rules.QueueFacts(
            name=name, messages=depth.messages, reserved=depth.reserved or 0, oldest_age=age,
            oldest_is_lower_bound=lower, consumers=_consumers(name, online, now),
            completed_per_min=completed / (WINDOW / 60), completed_recent=completed,
            window=WINDOW, last_completed_age=None if last_done is None else now - last_done,
            paused=name in paused,
        )  # fmt: skip
        verdict = rules.judge(facts, policy, normal.get(name))
        contexts = waiting_for[name] if name in unread else _contexts(wd, depth.oldest)
        count, who = rules.who_waits(contexts)
        summary = rules.describe(facts, verdict, policy, who)
        usual = normal.get(name)
        if verdict.kind and usual and age:  # how far from normal, for this hour of the week
            summary += f"; {age / max(usual, 1.0):.0f}x its normal {duration(usual)} at this hour"
        docs.append({
            "name": name, "messages": depth.messages, "reserved": depth.reserved,
            "oldest_age": age, "oldest_age_is_lower_bound": lower,
            "consumers": [{"worker": c.worker, "last_received_age": c.last_received_age}
                          for c in facts.consumers],
            "completed_per_min": round(facts.completed_per_min, 2),
            "last_completed_age": facts.last_completed_age, "health": verdict.health,
            "kind": verdict.kind, "cause": verdict.cause, "reason": verdict.reason,
            "severity_hint": verdict.severity_hint, "action": policy.action,
            "owner": policy.owner, "critical": policy.critical,
            "threshold": rules.threshold_for(policy, normal.get(name)),
            "normal_oldest_age": normal.get(name),
            "normal_completed_per_hour": normal_done.get(name),
            "affected": count or None, "who": who,
            "summary": summary, "error": depth.error,
            "cleared": rules.resolved(facts, policy, normal.get(name)),
        })  # fmt: skip
    return docs


def judge(
    wd: Watchdog, store: Store, now: float, workers: Sequence[WorkerInfo] | None = None
) -> list[Finding]:
    """One finding per queue in trouble; the judgements are kept for ``status`` and incidents."""
    docs = read(wd, store, now, store.workers.all() if workers is None else workers)
    store.queues.save({d["name"]: d for d in docs})
    # What is normal at this hour of the week, for "3x normal" thresholds and "normally …".
    store.queues.record_oldest({d["name"]: d["oldest_age"] or 0.0 for d in docs
                                if not d["error"]}, now)  # fmt: skip
    return [_finding(d) for d in docs if d["kind"] and not d["error"]]


def _finding(doc: Mapping[str, Any]) -> Finding:
    run = Run(task_id="", name=str(doc["name"]), state="PENDING", queue=str(doc["name"]))
    return Finding(
        kind=str(doc["kind"]), reason=str(doc["summary"]), run=run, action="none",
        severity_hint=doc.get("severity_hint"), subject=f"queue:{doc['name']}",
    )  # fmt: skip


def _oldest_age(
    depth: QueueDepth, first_seen: float | None, now: float
) -> tuple[float | None, bool]:
    """The head message's age: from its publish stamp, else since first seen (a lower bound)."""
    if depth.messages <= 0 or depth.head is None:
        return (None, False)
    if depth.head.published_at is not None:
        return (max(0.0, now - depth.head.published_at), False)
    if depth.oldest_age_api is not None:
        return (depth.oldest_age_api, False)
    return (None if first_seen is None else max(0.0, now - first_seen), True)


def _consumers(queue: str, workers: Sequence[WorkerInfo], now: float) -> tuple[rules.Consumer, ...]:
    out = []
    for w in workers:
        if queue not in w.queues:
            continue
        received = w.last_received.get(queue)
        out.append(rules.Consumer(
            worker=w.hostname, last_received_age=None if received is None else now - received,
            busy_slots=len(w.active), slots=w.concurrency or 0,
        ))  # fmt: skip
    return tuple(out)


def _contexts(wd: Watchdog, messages: Sequence[HeadMessage]) -> list[dict[str, str]]:
    """The ``alert_context`` values of waiting messages, from their ``kwargsrepr`` header."""
    out = []
    for m in messages:
        task = wd.app.tasks.get(m.task_name or "")
        names = wd.policy(task or (m.task_name or "")).alert_context if m.task_name else ()
        if not names:
            continue
        kwargs = _literal(m.headers.get("kwargsrepr"))
        if isinstance(kwargs, dict):
            out.append({k: str(kwargs[k]) for k in names if k in kwargs})
    return out


def _literal(text: Any) -> Any:
    if not isinstance(text, str) or len(text) > 4000:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return None

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
from dataclasses import dataclass
from typing import Any

from ..brokers import HeadMessage, QueueDepth, bound_queues, queue_names, read_app
from ..model import queue_rules as rules
from ..model.humanize import duration
from ..model.records import Finding, Run, WorkerInfo
from ..runtime import Watchdog
from ..store import Store

WINDOW = 600.0  # seconds of completions a verdict looks at (two 5-minute buckets)


SAMPLE = 50  # oldest messages read per queue for who waits


@dataclass(frozen=True)
class _Pass:
    """What one read knows beyond each queue's depth: the store's facts for every queue."""

    now: float
    online: list[WorkerInfo]
    first_seen: dict[str, float]
    unread: dict[str, int]
    published: dict[str, float]
    waiting_for: dict[str, list[dict[str, Any]]]
    done: dict[str, tuple[int, float | None]]
    normal: dict[str, float]
    normal_done: dict[str, float]
    paused: set[str]


def read(
    wd: Watchdog,
    store: Store,
    now: float,
    workers: Sequence[WorkerInfo],
    *,
    sample_all: bool = True,
) -> list[dict[str, Any]]:
    """Every queue's facts, verdict and summary (what ``queues`` shows and the monitor judges).

    Who waits is read from the oldest :data:`SAMPLE` messages of each queue; with
    ``sample_all=False`` (the monitor's pass) only of the queues past half their threshold,
    in a second round: a pass over many healthy queues reads only their heads."""
    online = [w for w in workers if w.online]
    names = sorted({
        *queue_names(wd.app), *bound_queues(wd.app), *store.queues.published_queues(),
        *(q for w in online for q in w.queues),
    })  # fmt: skip
    api = wd.settings.broker_api
    depths = read_app(wd.app, names, management_url=api, sample=SAMPLE if sample_all else 1)
    unstamped = {
        q: d.head.task_id
        for q, d in depths.items()
        if d.head is not None and d.head.published_at is None and d.head.task_id
    }
    # A broker whose waiting messages cannot be read (RabbitMQ): the producers' publish records.
    unread = {q: d.messages for q, d in depths.items()
              if d.head is None and d.oldest_age_api is None and not d.error}  # fmt: skip
    facts = _Pass(
        now=now, online=online, first_seen=store.queues.first_seen(unstamped, now),
        unread=unread, published=store.queues.published_oldest(unread),
        waiting_for=store.queues.published_contexts(sorted(unread)),
        done=store.queues.completions(names, now),
        normal=store.queues.normal_oldest(names, now),
        normal_done=store.queues.normal_completions(names, now),
        paused={t.removeprefix("queue:") for t in store.pauses.all() if t.startswith("queue:")},
    )  # fmt: skip
    docs = {name: _doc(wd, name, depths[name], facts) for name in names}
    if not sample_all:
        near = [
            name for name, d in docs.items()
            if name not in unread and d["messages"] > 1 and d["oldest_age"] is not None
            and d["oldest_age"] >= d["threshold"] / 2
        ]  # fmt: skip
        if near:
            sampled = read_app(wd.app, near, management_url=api, sample=SAMPLE)
            for name in near:
                if not sampled[name].error:
                    docs[name] = _doc(wd, name, sampled[name], facts)
    return list(docs.values())


def _doc(wd: Watchdog, name: str, depth: QueueDepth, f: _Pass) -> dict[str, Any]:
    """One queue's document: its facts, verdict, who waits and summary."""
    policy = wd.settings.queue_policies.get(name, rules.QueuePolicy())
    completed, last_done = f.done.get(name, (0, None))
    age, lower = _oldest_age(depth, f.first_seen.get(name), f.now)
    if age is None and name in f.published:
        age, lower = max(0.0, f.now - f.published[name]), False
    facts = rules.QueueFacts(
        name=name, messages=depth.messages, reserved=depth.reserved or 0, oldest_age=age,
        oldest_is_lower_bound=lower, consumers=_consumers(name, f.online, f.now),
        completed_per_min=completed / (WINDOW / 60), completed_recent=completed,
        window=WINDOW, last_completed_age=None if last_done is None else f.now - last_done,
        paused=name in f.paused,
    )  # fmt: skip
    usual = f.normal.get(name)
    verdict = rules.judge(facts, policy, usual)
    contexts = f.waiting_for.get(name, []) if name in f.unread else _contexts(wd, depth.oldest)
    count, who = rules.who_waits(contexts)
    summary = rules.describe(facts, verdict, policy, who)
    if verdict.kind and usual and age:  # how far from normal, for this hour of the week
        summary += f"; {age / max(usual, 1.0):.0f}x its normal {duration(usual)} at this hour"
    return {
        "name": name, "messages": depth.messages, "reserved": depth.reserved,
        "oldest_age": age, "oldest_age_is_lower_bound": lower,
        "consumers": [{"worker": c.worker, "last_received_age": c.last_received_age}
                      for c in facts.consumers],
        "completed_per_min": round(facts.completed_per_min, 2),
        "last_completed_age": facts.last_completed_age, "health": verdict.health,
        "kind": verdict.kind, "cause": verdict.cause, "reason": verdict.reason,
        "severity_hint": verdict.severity_hint, "action": policy.action,
        "owner": policy.owner, "critical": policy.critical,
        "threshold": rules.threshold_for(policy, usual),
        "normal_oldest_age": usual,
        "normal_completed_per_hour": f.normal_done.get(name),
        "affected": count or None, "who": who,
        "summary": summary, "error": depth.error,
        "cleared": rules.resolved(facts, policy, usual),
    }  # fmt: skip


def judge(
    wd: Watchdog, store: Store, now: float, workers: Sequence[WorkerInfo] | None = None
) -> list[Finding]:
    """One finding per queue in trouble; the judgements are kept for ``status`` and incidents."""
    workers = store.workers.all() if workers is None else workers
    docs = read(wd, store, now, workers, sample_all=False)
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

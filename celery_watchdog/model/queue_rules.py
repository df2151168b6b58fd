"""A queue's health from numbers read elsewhere: ok, a backlog (slow) or stalled (stopped), and why.

Pure like :mod:`.failure_rules`: :class:`QueueFacts` (read from the broker and the store by the
caller), a :class:`QueuePolicy` and what is normal for this hour go in, a :class:`QueueVerdict`
comes out. Numbers may be hostile (NaN, infinite, negative): they read as unknown or 0, never raise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .humanize import cut, duration, parse_duration
from .records import number

DEFAULT_THRESHOLD = 300.0  # seconds the oldest message may wait (watchdog_queue_policies default)
RELATIVE_FLOOR = 60.0  # "3x normal" never means less than this: a normal of 2 s is no threshold
DEFAULT_WINDOW = 300.0  # seconds ``completed_recent`` covers, unless the facts say otherwise
RESOLVE_SHARE = 0.5  # an open incident ends when the oldest waits less than this x the threshold
SHOWN_VALUES = 3  # context values named in the label of who waits

_FACTOR = re.compile(r"(\d+(?:\.\d+)?)\s*x(?:\s*normal)?", re.I)
_TEXT = 80


@dataclass(frozen=True)
class Consumer:
    """A worker consuming the queue: when it last took a message from it, its slots."""

    worker: str
    last_received_age: float | None = None  # seconds since it last took one; None: never
    busy_slots: int = 0
    stuck_slots: int = 0
    slots: int = 0  # its pool's concurrency (0: unknown)


@dataclass(frozen=True)
class QueueFacts:
    """What the caller read about one queue, at one ``now`` (ages in seconds)."""

    name: str
    messages: float = 0  # waiting in the broker
    reserved: float = 0  # prefetched by workers, not acknowledged
    oldest_age: float | None = None  # None: empty or unknown
    oldest_is_lower_bound: bool = False  # the age is at least this (e.g. no publish stamp)
    consumers: tuple[Consumer, ...] = ()
    completed_per_min: float = 0  # completions per minute of tasks routed here, lately
    completed_recent: float = 0  # completions in the last ``window`` seconds
    paused: bool = False
    window: float = DEFAULT_WINDOW
    last_completed_age: float | None = None  # seconds since the last completion; None: unknown


@dataclass(frozen=True)
class QueuePolicy:
    """``watchdog_queue_policies[name]``, resolved (see :func:`parse_threshold`)."""

    threshold: float = DEFAULT_THRESHOLD  # absolute seconds; the fallback of a relative one
    factor: float | None = None  # "3x normal": 3.0; None: the threshold is absolute
    critical: bool = False
    action: str | None = None  # what the customer waits for: "Send password reset email"
    owner: str | None = None


@dataclass(frozen=True)
class QueueVerdict:
    """The queue's health, the alert kind it makes (if any), the cause and why in words."""

    queue: str
    health: str  # ok | backlog | stalled | paused | empty
    kind: str | None = None  # None | queue_backlog | queue_stalled
    cause: str | None = None  # stalled: no_consumer | not_consuming | all_busy_stuck | unknown
    reason: str = ""
    severity_hint: str | None = None  # "P1": stalled and critical; None: the settings decide
    facts: dict[str, object] = field(default_factory=dict)


def _age(raw: object) -> float | None:
    """An age in seconds: None if unknown (NaN, inf, junk); a negative one (clock skew) is 0."""
    value = number(raw)
    return None if value is None else max(0.0, value)


def _count(raw: object) -> float:
    value = number(raw)
    return 0.0 if value is None or value < 0 else value


def _whole(raw: object) -> int:
    return int(min(_count(raw), 2**53))


def _window(facts: QueueFacts) -> float:
    return _count(facts.window) or DEFAULT_WINDOW


def parse_threshold(raw: object) -> tuple[float | None, float | None]:
    """Seconds (``300``), a duration (``"5m"``, ``"1h30m"``) or a factor of normal (``"3x
    normal"``, ``"3x"``) -> ``(absolute, factor)``, one of them None; else ValueError."""
    shown = cut(repr(raw), _TEXT)
    hint = "expected seconds, a duration like 5m or 1h30m, or a factor like 3x normal"
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        if not (math.isfinite(raw) and raw > 0):
            raise ValueError(f"{shown} is not a queue threshold: it must be more than 0 seconds")
        return float(raw), None
    if not isinstance(raw, str):
        raise ValueError(f"{shown} is not a queue threshold: {hint}")
    if match := _FACTOR.fullmatch(raw.strip()):
        factor = float(match.group(1))
        if not factor > 0:
            raise ValueError(f"{shown} is not a queue threshold: the factor must be more than 0")
        return None, factor
    try:
        return parse_duration(raw), None
    except ValueError as exc:
        raise ValueError(f"{shown} is not a queue threshold: {hint} ({exc})") from None


def threshold_for(policy: QueuePolicy, normal_oldest_age: float | None = None) -> float:
    """The threshold in force: the absolute one, or ``factor`` x normal (at least
    RELATIVE_FLOOR); the absolute one while there is no normal yet. Junk reads as the default."""
    absolute = number(policy.threshold)
    absolute = absolute if absolute is not None and absolute > 0 else DEFAULT_THRESHOLD
    factor, normal = number(policy.factor), number(normal_oldest_age)
    if factor is None or factor <= 0 or normal is None or normal <= 0:
        return absolute
    return max(RELATIVE_FLOOR, factor * normal)


def _cause(consumers: tuple[Consumer, ...], oldest: float) -> tuple[str, str]:
    """Why nothing completes: the cause code and its words."""
    if not consumers:
        return "no_consumer", "no worker consumes this queue"
    slots = sum(_whole(c.slots) for c in consumers)
    stuck = sum(_whole(c.stuck_slots) for c in consumers)
    full = all(0 < _whole(c.slots) <= _whole(c.busy_slots) for c in consumers)
    # Before "not consuming": a worker whose slots are all taken stops taking messages by
    # design, so its old last_received_age says nothing about a broken consumer.
    if full and stuck:
        return "all_busy_stuck", f"all {slots} worker slots are busy, {stuck} of them stuck"
    received = [a for c in consumers if (a := _age(c.last_received_age)) is not None]
    if all(a > oldest for a in received):  # celery#8030: alive, subscribed, not consuming
        n = len(consumers)
        workers = "1 worker consumes" if n == 1 else f"{n} workers consume"
        since = f"for {duration(min(received))}" if received else "ever"
        return "not_consuming", (f"{workers} it but none has taken a message {since} "
                                 "(stopped after a broker reconnect?)")  # fmt: skip
    if full:
        return "unknown", f"all {slots} worker slots are busy with long runs"
    return "unknown", "workers take messages but none completes"


def _waited(oldest: float, lower_bound: bool) -> str:
    return f"{'at least ' if lower_bound else ''}{duration(oldest)}"


def judge(
    facts: QueueFacts, policy: QueuePolicy, normal_oldest_age: float | None = None
) -> QueueVerdict:
    """The queue's health. Paused never alerts; past the threshold, completions in the window
    make a backlog (slow), none make it stalled, with the cause."""
    messages, oldest = _whole(facts.messages), _age(facts.oldest_age)
    threshold = threshold_for(policy, normal_oldest_age)
    done, window = _whole(facts.completed_recent), _window(facts)
    base: dict[str, object] = {
        "messages": messages, "reserved": _whole(facts.reserved), "oldest_age": oldest,
        "oldest_is_lower_bound": bool(facts.oldest_is_lower_bound), "threshold": threshold,
        "normal_oldest_age": _age(normal_oldest_age), "consumers": len(facts.consumers),
        "completed_recent": done, "completed_per_min": _count(facts.completed_per_min),
        "last_completed_age": _age(facts.last_completed_age), "window": window,
    }  # fmt: skip

    def verdict(health: str, reason: str, kind: str | None = None, cause: str | None = None,
                hint: str | None = None) -> QueueVerdict:  # fmt: skip
        return QueueVerdict(facts.name, health, kind, cause, reason, hint, {**base, "cause": cause})

    if facts.paused:
        return verdict("paused", f"paused, {messages} waiting")
    if messages == 0:
        return verdict("empty", "no message waiting")
    if oldest is None:
        return verdict("ok", f"{messages} waiting, the age of the oldest is unknown")
    parts = [f"oldest message waiting {_waited(oldest, facts.oldest_is_lower_bound)} "
             f"(threshold {duration(threshold)})", f"{messages} waiting"]  # fmt: skip
    if oldest <= threshold:
        return verdict("ok", "; ".join(parts))
    last = _age(facts.last_completed_age)
    # Completions count only while the oldest message waited: older ones say nothing about now.
    if done > 0 and (last is None or last < oldest):
        rate = _count(facts.completed_per_min)
        drain = f" (about {duration(60 * messages / rate)} to drain)" if rate > 0 else ""
        parts.append(f"{done} completed in the last {duration(window)}{drain}")
        return verdict("backlog", "; ".join(parts), "queue_backlog")
    parts.append(f"no completion for {duration(last)}" if last is not None
                 else f"no completion in the last {duration(window)}")  # fmt: skip
    cause, words = _cause(facts.consumers, oldest)
    hint = "P1" if policy.critical else None
    return verdict("stalled", "; ".join([*parts, words]), "queue_stalled", cause, hint)


def resolved(
    facts: QueueFacts, policy: QueuePolicy, normal_oldest_age: float | None = None
) -> bool:
    """An open queue incident ends, with hysteresis: the queue drained, was paused on purpose,
    or its oldest message waits less than RESOLVE_SHARE x the threshold (an unknown age: open)."""
    oldest = _age(facts.oldest_age)
    if facts.paused or _whole(facts.messages) == 0:
        return True
    return oldest is not None and oldest < RESOLVE_SHARE * threshold_for(policy, normal_oldest_age)


def _noun(key: str) -> str:
    """``account_id`` -> ``account``: what a context key counts."""
    base = re.sub(r"(?:[_\-. ](?:id|ID)|(?<=[a-z])Id)$", "", key) or key
    return cut(base.replace("_", " "), 40)


def _value_order(value: str) -> tuple[bool, int, str]:
    # Numbers in numeric order without int(): a huge digit string must not raise.
    return not value.isdigit(), len(value) if value.isdigit() else 0, value


def who_waits(contexts: Sequence[Mapping[str, str]]) -> tuple[int, str]:
    """How many distinct accounts wait, by the context key most messages carry, and a label:
    ``"~120 accounts (account_id=12, 15, 99, …)"``; ``(0, "")`` when none is known."""
    seen: dict[str, set[str]] = {}
    for context in contexts if isinstance(contexts, Sequence) else ():
        if not isinstance(context, Mapping):
            continue
        for key, raw in context.items():
            ok = isinstance(raw, (str, int)) and not isinstance(raw, bool)
            value = cut(raw, _TEXT) if ok else ""
            if isinstance(key, str) and key.strip() and value.strip():
                seen.setdefault(key, set()).add(value)
    if not seen:
        return 0, ""
    key = min(seen, key=lambda k: (-len(seen[k]), k))
    values = sorted(seen[key], key=_value_order)
    n, noun = len(values), _noun(key)
    shown = ", ".join(values[:SHOWN_VALUES]) + (", …" if n > SHOWN_VALUES else "")
    count = f"~{n} {noun}s" if n > SHOWN_VALUES else f"{n} {noun}{'s' * (n > 1)}"
    return n, f"{count} ({cut(key, 40)}={shown})"


def describe(facts: QueueFacts, verdict: QueueVerdict, policy: QueuePolicy, who: str = "") -> str:
    """The one line a person reads: ``"Send password reset email: oldest waiting 47 min, 312
    waiting, ~120 accounts; last completion 46 min ago"`` (``who``: from :func:`who_waits`)."""
    what = cut(policy.action, _TEXT) if policy.action else f"queue {cut(facts.name, _TEXT)}"
    messages, oldest = _whole(facts.messages), _age(facts.oldest_age)
    if verdict.health == "paused":
        return f"{what}: paused, {messages} waiting"
    if verdict.health == "empty":
        return f"{what}: nothing waiting"
    head = [f"{messages} waiting"] + [who] * bool(who)
    if oldest is not None:
        head.insert(0, f"oldest waiting {_waited(oldest, facts.oldest_is_lower_bound)}")
    line = f"{what}: {', '.join(head)}"
    if verdict.health not in ("backlog", "stalled"):
        return line
    last = _age(facts.last_completed_age)
    if verdict.health == "backlog":
        tail = f"{_whole(facts.completed_recent)} completed in the last {duration(_window(facts))}"
    elif last is not None:
        tail = f"last completion {duration(last)} ago"
    else:
        tail = f"nothing completed in the last {duration(_window(facts))}"
    if verdict.health == "stalled" and verdict.cause not in (None, "unknown"):  # why, if known
        tail += f"; {_cause(facts.consumers, oldest or 0.0)[1]}"
    return f"{line}; {tail}"

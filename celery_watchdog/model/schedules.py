"""Beat schedule health, a dead-man's switch: was a run that was due sent, started and finished?

Pure like :mod:`.failure_rules`: a beat entry's schedule, what the store saw (last dispatch,
start, success) and ``now`` go in, a :class:`ScheduleVerdict` comes out. The schedule object is
Celery's, read by duck typing rather than imported: the model layer never imports Celery (an
import-linter contract), and django-celery-beat's subclasses then work too. Interval schedules
(``schedule``, or a plain number or timedelta as beat accepts them) and ``crontab`` are checked;
``solar`` and anything else is skipped, with a note. Times are epoch seconds; hostile ones (NaN,
infinite, negative, past year 9999) read as unknown, and nothing here raises.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from .humanize import cut, duration
from .records import number

# A dispatch this much before a crontab due time counts as that run: beat's clock and the one
# the store's times come from are never quite the same.
CLOCK_TOLERANCE = 10.0
# Default grace (``watchdog_beat_grace`` unset): 10% of the period, at most 5 min, at least 30 s,
# i.e. 30 s for a schedule of up to 5 min, 90 s for every 15 min, 5 min for hourly and longer.
GRACE_SHARE, GRACE_MIN, GRACE_MAX = 0.1, 30.0, 300.0
_MAX_EPOCH = 253_402_300_799.0  # 9999-12-31 23:59:59 UTC: beyond it datetime gives up
_MIN_INTERVAL = 0.001  # seconds; a shorter "interval" is junk (and would overflow the count)
_TEXT = 80


@dataclass(frozen=True)
class ScheduleVerdict:
    """A beat entry's health; for "missed", which step did not happen, in plain words."""

    entry: str
    task: str
    health: str  # ok | late | missed | skipped
    kind: str | None = None  # "missed_run" when missed
    what: str = ""
    due_at: float | None = None  # the run that was missed (or is late)
    next_due: float | None = None  # the run awaited now (in the past while it is late)
    facts: dict[str, object] = field(default_factory=dict)


def _time(raw: object) -> float | None:
    value = number(raw)
    return value if value is not None and 0 <= value <= _MAX_EPOCH else None


def _interval(schedule: object) -> float | None:
    """The period of an interval schedule in seconds (None: not one, or not a usable one)."""
    every = getattr(schedule, "run_every", schedule)  # celery's schedule, or what beat takes
    if isinstance(every, timedelta):
        every = every.total_seconds()
    value = None if isinstance(every, bool) else number(every)
    return value if value is not None and value >= _MIN_INTERVAL else None


def _crontab(schedule: object) -> Callable[..., Any] | None:
    """A crontab's ``remaining_delta`` (the way beat finds its next run), else None."""
    method = getattr(schedule, "remaining_delta", None)
    return method if callable(method) else None


def _utc_if_junk(tz: object) -> tzinfo:
    return tz if isinstance(tz, tzinfo) else timezone.utc


def next_due_after(schedule: object, after: float, tz: tzinfo = timezone.utc) -> float | None:
    """When ``schedule`` is next due strictly after ``after`` (epoch seconds); None if it is
    neither an interval nor a crontab, or no time can be computed.

    An interval is due one period after ``after`` (taken as its last run: beat counts from
    there; a ``relative`` one is rounded down by beat, so it is due no later than this). A
    crontab's fields are read in ``tz``, the zone beat runs it in (``app.timezone``).
    """
    start, every, remaining_delta = _time(after), _interval(schedule), _crontab(schedule)
    if start is not None and every is not None:
        return start + every
    if start is None or remaining_delta is None:
        return None
    try:
        local = datetime.fromtimestamp(start, _utc_if_junk(tz))
        # Celery's own arithmetic, so the answer is beat's. It also returns a "now" read from
        # the schedule's app clock: unused here, the caller's ``now`` is the only clock.
        last, delta, _ = remaining_delta(local, tz=local.tzinfo)
        due = float((last + delta).timestamp())
    except Exception:  # a broken or exotic schedule must not stop the check of the others
        return None
    return due if math.isfinite(due) and due > start else None


def _first_due(schedule: object, anchor: float, tz: tzinfo) -> float | None:
    # For a crontab, a dispatch a little early still covers the due time just after it.
    slack = 0.0 if _interval(schedule) else CLOCK_TOLERANCE
    return next_due_after(schedule, anchor + slack, tz)


def _upcoming(schedule: object, anchor: float, now: float, tz: tzinfo) -> float | None:
    """The first due time after ``now``, counting an interval from ``anchor``."""
    every = _interval(schedule)
    if every is None:
        return next_due_after(schedule, now, tz)
    return anchor + every * (math.floor(max(0.0, now - anchor) / every) + 1)


def default_grace(period: float | None) -> float:
    """``watchdog_beat_grace`` unset: GRACE_SHARE of the period within [GRACE_MIN, GRACE_MAX]
    (GRACE_MAX when the period is unknown)."""
    value = number(period)
    if value is None or value <= 0:
        return GRACE_MAX
    return max(GRACE_MIN, min(GRACE_SHARE * value, GRACE_MAX))


def _clock(ts: float, now: float, tz: tzinfo) -> str:
    """``"14:00 UTC"``; with the date when it is not ``now``'s day."""
    try:
        when, today = datetime.fromtimestamp(ts, tz), datetime.fromtimestamp(now, tz)
    except (OverflowError, OSError, ValueError):  # past year 9999, from a huge interval
        return f"{ts:.0f} (epoch)"
    return when.strftime("%H:%M %Z" if when.date() == today.date() else "%Y-%m-%d %H:%M %Z")


def check(
    entry: str,
    task: str,
    schedule: object,
    *,
    last_dispatched: float | None,
    last_started: float | None,
    last_succeeded: float | None,
    now: float,
    grace: float | None = None,
    first_seen: float | None = None,
    tz: tzinfo = timezone.utc,
    last_finished: float | None = None,
) -> ScheduleVerdict:
    """Was the entry's last due run sent (by beat), started (by a worker) and finished?

    Counting from the later of ``first_seen`` and ``last_dispatched`` (a new entry is never
    missed before its first due time), in this order: a due time ``grace`` past with no
    dispatch is missed ("not_sent"); the last start with no success (nor end, ``last_finished``:
    success or failure, when known) after it, still running ``grace`` past the next due time,
    i.e. longer than the interval, is missed ("not_finished"); the last dispatch with no start
    after it for ``grace`` is missed ("not_started"). A due time past by more than
    CLOCK_TOLERANCE but within ``grace`` is "late" (no alert). Only the last times are known:
    a hung run that a later run's start hides is for the stuck-run rules to find.
    """
    tz = _utc_if_junk(tz)
    label = cut(entry, _TEXT) if entry == task else f"{cut(entry, _TEXT)} ({cut(task, _TEXT)})"

    def verdict(health: str, what: str = "", *, due: float | None = None,
                upcoming: float | None = None, **facts: object) -> ScheduleVerdict:  # fmt: skip
        missed = "missed_run" if health == "missed" else None
        return ScheduleVerdict(entry, task, health, missed, what, due, upcoming, facts)

    every, at = _interval(schedule), _time(now)
    if every is None and _crontab(schedule) is None:
        kind = type(schedule).__name__
        return verdict("skipped", f"{label}: {cut(kind, _TEXT)} schedules are not checked")
    if at is None:
        return verdict("skipped", f"{label}: no valid time to judge by")
    sent, started, seen = _time(last_dispatched), _time(last_started), _time(first_seen)
    ends = (_time(last_succeeded), _time(last_finished))
    ended = max((t for t in ends if t is not None), default=None)
    anchor = max((t for t in (seen, sent) if t is not None), default=at)
    due = _first_due(schedule, anchor, tz)
    if due is None:
        return verdict("skipped", f"{label}: its next due time cannot be computed")
    after_due = next_due_after(schedule, due, tz)
    period = every or (after_due - due if after_due is not None else None)
    grace_value = number(grace)
    allowed = grace_value if grace_value and grace_value > 0 else default_grace(period)
    base = {"grace": allowed, "period": period, "last_dispatched": sent,
            "last_started": started, "last_ended": ended}  # fmt: skip

    def when(ts: float) -> str:
        return _clock(ts, at, tz)

    if due <= at - allowed:
        last = f"last sent {when(sent)}" if sent is not None else "never sent"
        return verdict("missed", f"{label} due at {when(due)} was not sent by beat (beat down?); "
                       f"{last}", due=due, upcoming=_upcoming(schedule, anchor, at, tz),
                       missed="not_sent", **base)  # fmt: skip
    # Before "not started": a run still going when the next is sent is why that one waits (a
    # worker with one slot), and only while no later run has started can it still be seen.
    unfinished = started is not None and (ended is None or ended < started)
    deadline = _first_due(schedule, started, tz) if started is not None and unfinished else None
    if started is not None and deadline is not None and at > deadline + allowed:
        what = (f"{label} started at {when(started)} but has not finished "
                f"(running {duration(at - started)})")  # fmt: skip
        return verdict("missed", what, due=started, upcoming=due, missed="not_finished", **base)
    waiting = sent is not None and (started is None or started < sent - CLOCK_TOLERANCE)
    if sent is not None and waiting and at - sent > allowed:
        what = (f"{label} sent at {when(sent)} but never started "
                f"(no worker took it within {duration(allowed)})")  # fmt: skip
        return verdict("missed", what, due=sent, upcoming=due, missed="not_started", **base)
    if due < at - CLOCK_TOLERANCE:
        what = f"{label} due at {when(due)} not sent yet ({duration(at - due)} late)"
        return verdict("late", what, due=due, upcoming=due, **base)
    last = f"last sent {when(sent)}, " if sent is not None else ""
    return verdict("ok", f"{label}: {last}next due {when(due)}", upcoming=due, **base)


def max_silence(
    name: str, last_success: float | None, now: float, limit: float, *, since: float | None = None
) -> str | None:
    """``"billing.sync has not succeeded for 2 h 10 min (max_silence 2 h)"`` once the last
    success is more than ``limit`` seconds ago, else None. Never a success: counted from
    ``since`` (when the watchdog first saw the name), None without it."""
    at, bound = _time(now), number(limit)
    if at is None or bound is None or bound <= 0:
        return None
    last, first = _time(last_success), _time(since)
    silent = at - (last if last is not None else first if first is not None else at)
    if silent <= bound:
        return None
    words = "has not succeeded for" if last is not None else "has never succeeded in"
    return f"{cut(name, _TEXT)} {words} {duration(silent)} (max_silence {duration(bound)})"

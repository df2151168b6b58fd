"""Per task name: counts over time, recent runtimes, last outcomes, and learned budgets.

Keys ({p} = prefix; ``lua/flush.lua`` writes all but the budgets):
  {p}:names               ZSET task name -> last seen (capped)
  {p}:name:{name}         HASH last success/failure/error
  {p}:s5:{name}:{bucket}  HASH outcome counts per 5 minutes
  {p}:s1h:{name}:{bucket} HASH outcome counts per hour
  {p}:rt:{name}           LIST last 1000 runtimes (ms)
  {p}:budgets             HASH task name -> "soft,hard" learned from history; TTL 1 day
  {p}:failing             ZSET task name -> failures in a row since its last success
  {p}:gaveup              ZSET task name -> when a run of it last exhausted its retries
  {p}:failnames           ZSET task name -> its last failure or retry
  {p}:failctx:{name}      ZSET alert_context JSON of its failed runs -> when
  {p}:tot:{name}          HASH runs by outcome and runtimes by bucket ("h{b}") since the first
                          run: counters, never decremented; TTL 30 days
  {p}:hw:{name}:{week}    STRING a 12-byte cell per hour of the week: runs, failures, retries,
                          runtime p95 (see :class:`HourCell`); expires 4 weeks after its week
  {p}:rwk:{name}:{week}   HASH reason bucket -> failures that week
(``lua/flush.lua`` writes all of these; the name hash also holds ``streak``, ``ex:{reason}``
and ``gaveup_at``/``gaveup_id``/``gaveup_retries``; an hourly bucket also holds its runtimes
by 10 %-wide bucket, ``h{b}``, from which flush.lua keeps the hour's p95 in its cell.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..model.normal import HourCell, NameNormal, NameTotals
from ..model.records import NameStats
from .base import WEEK_HOURS, ForPeriod, Keys, lua, week_and_hour

CELL = 12  # bytes per hour of the week in {p}:hw:{name}:{week} (see flush.lua)
STATS_CHUNK = 50  # names per name_stats.lua call (~1 ms of Redis each)
RAW = {"NEVER_DECODE": True}  # the cells are bytes; the client decodes text by default


class Names(Keys):
    def __init__(self, client: Any, prefix: str) -> None:
        super().__init__(client, prefix)
        self._stats = client.register_script(lua("name_stats.lua"))
        self._normals: ForPeriod[NameNormal | None] = ForPeriod()
        self._closed_5m: ForPeriod[dict[str, int]] = ForPeriod()
        self._closed_1h: ForPeriod[dict[str, int]] = ForPeriod()

    def recent(self, limit: int = 500) -> list[str]:
        """Task names, most recently seen first."""
        return list(self.r.zrevrange(f"{self.p}:names", 0, limit - 1))

    def stats(self, names: Iterable[str], now: float) -> dict[str, NameStats]:
        """Counts of the last hour and day, runtime percentiles, last outcomes, per name:
        summed inside Redis (``lua/name_stats.lua``), a few dozen names per call so that no
        call holds Redis for long."""
        names = list(names)
        b5, b1h = int(now // 300), int(now // 3600)
        # Buckets before the last two no longer change (runs are flushed within seconds):
        # read once while they stay closed (5 minutes, an hour), then only the last two.
        known_5m, known_1h = self._closed_5m.of(b5), self._closed_1h.of(b1h)
        groups: dict[tuple[bool, bool], list[str]] = {}
        for name in names:
            groups.setdefault((name not in known_5m, name not in known_1h), []).append(name)
        out = {}
        for (with_5m, with_1h), wanted in groups.items():
            for start in range(0, len(wanted), STATS_CHUNK):
                chunk = wanted[start : start + STATS_CHUNK]
                flags = ["1" if with_5m else "0", "1" if with_1h else "0"]
                docs = self._stats(args=[self.p, b5, b1h, *flags, *chunk])
                for name, raw in zip(chunk, docs, strict=True):
                    m_recent, m_closed, h_recent, h_closed, info = json.loads(raw)
                    if with_5m:
                        known_5m[name] = m_closed
                    if with_1h:
                        known_1h[name] = h_closed
                    fields = dict(zip(info[::2], info[1::2], strict=True)) if info else {}
                    out[name] = NameStats.from_sums(
                        name, _plus(known_5m[name], m_recent), _plus(known_1h[name], h_recent),
                        fields,
                    )
        return {name: out[name] for name in names}

    def totals(self, names: Sequence[str]) -> dict[str, NameTotals]:
        """Per name, runs by outcome and runtimes by bucket since its first run (counters)."""
        pipe = self.r.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(f"{self.p}:tot:{name}")
        return {name: NameTotals.of(doc)
                for name, doc in zip(names, pipe.execute() if names else [], strict=True)
                if doc}  # fmt: skip

    def save_budgets(self, budgets: Mapping[str, tuple[float, float]]) -> None:
        if budgets:
            key = f"{self.p}:budgets"
            pipe = self.r.pipeline(transaction=True)
            pipe.hset(key, mapping={n: f"{s:.3f},{h:.3f}" for n, (s, h) in budgets.items()})
            pipe.expire(key, 86400)
            pipe.execute()

    def budgets(self, names: list[str]) -> dict[str, tuple[float, float]]:
        if not names:
            return {}
        out = {}
        for name, raw in zip(names, self.r.hmget(f"{self.p}:budgets", names), strict=True):
            if raw:
                soft, hard = raw.split(",")
                out[name] = (float(soft), float(hard))
        return out

    def runtimes(self, names: list[str]) -> dict[str, list[float]]:
        """Recent runtimes (seconds, sorted) per task name, for learning budgets."""
        pipe = self.r.pipeline(transaction=False)
        for name in names:
            pipe.lrange(f"{self.p}:rt:{name}", 0, -1)
        return {
            name: sorted(float(v) / 1000 for v in values)
            for name, values in zip(names, pipe.execute(), strict=True)
        }

    # -- failures ----------------------------------------------------------------------------

    def failing(self, limit: int = 1000) -> dict[str, int]:
        """Task names failing right now: name -> failures in a row since its last success."""
        found = self.r.zrevrange(f"{self.p}:failing", 0, limit - 1, withscores=True)
        return {name: int(score) for name, score in found}

    def failed_since(self, since: float, limit: int = 1000) -> list[str]:
        """Task names with a failure or a retry since ``since`` (server time)."""
        return list(self.r.zrevrangebyscore(f"{self.p}:failnames", "+inf", since, 0, limit))

    def gave_up(self, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Per name, the last run that exhausted its retries: {at, task_id, retries}."""
        pipe = self.r.pipeline(transaction=False)
        for name in names:
            pipe.hmget(f"{self.p}:name:{name}", "gaveup_at", "gaveup_id", "gaveup_retries")
        out = {}
        for name, (at, task_id, retries) in zip(names, pipe.execute() if names else [],
                                                 strict=True):  # fmt: skip
            if at:
                out[name] = {"at": float(at), "task_id": task_id or "",
                             "retries": int(float(retries or 0))}  # fmt: skip
        return out

    def failed_contexts(self, name: str, since: float, limit: int = 1000) -> list[dict[str, Any]]:
        """The alert_context values of its failed runs since ``since`` (distinct, newest first)."""
        raws = self.r.zrevrangebyscore(f"{self.p}:failctx:{name}", "+inf", since, 0, limit)
        out = []
        for raw in raws:
            try:
                doc = json.loads(raw)
            except ValueError:
                continue
            if isinstance(doc, dict) and doc:
                out.append(doc)
        return out

    def week_history(
        self, names: Sequence[str], hours: Sequence[int], weeks: int = 4
    ) -> dict[str, list[tuple[int, int]]]:
        """(runs, failures) of each name at these hours since the epoch, in the ``weeks``
        before: one sample per (week, hour), for what is normal at this hour of the week."""
        cells = self._cells(names, hours, weeks)
        return {name: [(c.runs, c.failures) for c in found if c.runs]
                for name, found in cells.items()}  # fmt: skip

    def normal(self, names: Sequence[str], now: float, weeks: int = 4) -> dict[str, NameNormal]:
        """What is normal for each name at this hour of the week (and its neighbours), over the
        ``weeks`` before: runs per hour, failure rate, runtime p95. No history: absent."""
        # The weeks before never change: read once per hour of this process, then remembered.
        hour = int(now // 3600)
        known = self._normals.of((hour, weeks))
        missing = [name for name in names if name not in known]
        if missing:
            cells = self._cells(missing, (hour - 1, hour, hour + 1), weeks)
            known.update({name: NameNormal.of(found) for name, found in cells.items()})
        return {name: n for name in names if (n := known.get(name)) is not None}

    def _cells(
        self, names: Sequence[str], hours: Sequence[int], weeks: int
    ) -> dict[str, list[HourCell]]:
        pipe = self.r.pipeline(transaction=False)
        asks = []
        for name in names:
            for hour in hours:
                for back in range(1, weeks + 1):
                    week, how = week_and_hour(hour - WEEK_HOURS * back)
                    key = f"{self.p}:hw:{name}:{week}"
                    pipe.execute_command("GETRANGE", key, how * CELL, how * CELL + CELL - 1, **RAW)
                    asks.append(name)
        out: dict[str, list[HourCell]] = {name: [] for name in names}
        for name, raw in zip(asks, pipe.execute() if asks else [], strict=True):
            if raw and len(raw) == CELL:
                out[name].append(HourCell.unpack(raw))
        return out

    def _weeks(self, names: Sequence[str], weeks: Sequence[int]) -> list[bytes | None]:
        """The whole cells string of each (name, week), name-major."""
        pipe = self.r.pipeline(transaction=False)
        for name in names:
            for week in weeks:
                pipe.execute_command("GET", f"{self.p}:hw:{name}:{week}", **RAW)
        return list(pipe.execute()) if names and weeks else []

    # -- history, for the weekly report -----------------------------------------------------

    def daily(
        self, names: Sequence[str], now: float, days: int = 7
    ) -> dict[str, list[dict[str, int]]]:
        """Per name, per day (oldest first, the last is today so far): runs, failures, retries."""
        first_hour = (int(now // 86400) - days + 1) * 24
        hours = range(first_hour, int(now // 3600) + 1)
        weeks = sorted({week_and_hour(h)[0] for h in hours})
        replies = self._weeks(names, weeks)
        out = {}
        for i, name in enumerate(names):
            by_week = dict(zip(weeks, replies[i * len(weeks) : (i + 1) * len(weeks)], strict=True))
            days_out = [{"runs": 0, "failures": 0, "retries": 0} for _ in range(days)]
            for h in hours:
                week, how = week_and_hour(h)
                raw = by_week[week]
                if not raw or len(raw) < (how + 1) * CELL:
                    continue
                cell = HourCell.unpack(raw[how * CELL : (how + 1) * CELL])
                day = days_out[(h - first_hour) // 24]
                day["runs"] += cell.runs
                day["failures"] += cell.failures
                day["retries"] += cell.retries
            out[name] = days_out
        return out

    def reasons_by_week(
        self, names: Sequence[str], now: float, weeks: int = 4
    ) -> dict[str, list[dict[str, int]]]:
        """Per name, failures per reason bucket in each of the last ``weeks`` weeks (this last)."""
        this = week_and_hour(int(now // 3600))[0]
        pipe = self.r.pipeline(transaction=False)
        for name in names:
            for week in range(this - weeks + 1, this + 1):
                pipe.hgetall(f"{self.p}:rwk:{name}:{week}")
        replies = pipe.execute() if names else []
        return {
            name: [
                {k: int(v) for k, v in doc.items()} for doc in replies[i * weeks : (i + 1) * weeks]
            ]
            for i, name in enumerate(names)
        }


def _plus(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    out = dict(a)
    for key, n in b.items():
        out[key] = out.get(key, 0) + n
    return out

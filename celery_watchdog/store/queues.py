"""Queues as the watchdog sees them: completions per queue, when a head message was first seen,
and the last judgement of each queue (what ``status``, ``queues`` and incidents read).

Keys ({p} = prefix; ``lua/flush.lua`` writes the first three from the runs it records):
  {p}:nameq              HASH task name -> the routing key its runs came from; TTL 7 days
  {p}:qc:{queue}:{b}     HASH "done" -> runs of it that ended per 5 minutes; TTL 65 minutes
  {p}:qlast              HASH queue -> when a run from it last ended; TTL 7 days
  {p}:qhead              HASH queue -> "{task id}|{first seen}": the head message and when the
                         monitor first saw it there (the age of a message without a publish
                         stamp, a lower bound); TTL 1 day
  {p}:queues             HASH queue -> JSON of its last judgement; TTL 1 day
  {p}:pub:{queue}        ZSET task id (+ "\t" + its alert_context JSON) -> when published, for
                         brokers whose waiting messages cannot be read (RabbitMQ; written by
                         flush.lua); TTL 1 day, capped
  {p}:pubqueues          SET  the queues with publish records; TTL 1 day
  {p}:qwk:{queue}:{week} HASH hour of week (0 = Monday 00:00 UTC) -> the oldest age seen in
                         that hour (the largest, in seconds), and "{hour}:d" -> runs from the
                         queue that ended in that hour (flush.lua); TTL 36 days: what is normal
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .base import WEEK_HOURS, ForPeriod, Keys, load_docs, save_docs, week_and_hour

_FIRST_SEEN = """
local out = {}
for i = 2, #ARGV, 2 do
  local queue, id = ARGV[i], ARGV[i + 1]
  local cur = redis.call('HGET', KEYS[1], queue)
  local seen = tonumber(ARGV[1])
  if cur then
    local cid, cts = string.match(cur, '^(.*)|([^|]*)$')
    if cid == id and tonumber(cts) then seen = tonumber(cts) end
  end
  if seen == tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], queue, id .. '|' .. ARGV[1]) end
  out[#out + 1] = tostring(seen)
end
redis.call('EXPIRE', KEYS[1], 86400)
return out
"""


_RECORD_OLDEST = """
for i = 1, #KEYS do
  local cur = tonumber(redis.call('HGET', KEYS[i], ARGV[2 * i - 1]) or '') or -1
  if tonumber(ARGV[2 * i]) > cur then redis.call('HSET', KEYS[i], ARGV[2 * i - 1], ARGV[2 * i]) end
  redis.call('EXPIRE', KEYS[i], 36 * 86400)
end
"""


# A queue is first in, first out: of the publishes recorded, the waiting messages are the
# ``depth`` newest. Older records were consumed (or their consumer recorded nothing): drop them.
_PUBLISHED_OLDEST = """
local out = {}
for i = 1, #KEYS do
  local depth = tonumber(ARGV[i])
  local n = redis.call('ZCARD', KEYS[i])
  if depth <= 0 then
    redis.call('DEL', KEYS[i])
    out[i] = ''
  else
    if n > depth then redis.call('ZREMRANGEBYRANK', KEYS[i], 0, n - depth - 1) end
    local head = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    out[i] = head[2] or ''
  end
end
return out
"""


class Queues(Keys):
    def __init__(self, client: Any, prefix: str) -> None:
        super().__init__(client, prefix)
        self._normals: dict[str, ForPeriod[float | None]] = {}  # per field suffix
    def published_queues(self) -> list[str]:
        """Queues producers recorded publishes to (RabbitMQ brokers): where messages went."""
        return sorted(self.r.smembers(f"{self.p}:pubqueues"))

    def published_oldest(self, depths: Mapping[str, int]) -> dict[str, float]:
        """When the oldest waiting message of each queue was published, from the publish
        records, given how many wait (queues without records: absent)."""
        if not depths:
            return {}
        keys = [f"{self.p}:pub:{q}" for q in depths]
        found = self.r.eval(_PUBLISHED_OLDEST, len(keys), *keys, *(int(d) for d in depths.values()))
        return {q: float(v) for q, v in zip(depths, found, strict=True) if v}

    def published_contexts(
        self, queues: Sequence[str], limit: int = 200
    ) -> dict[str, list[dict[str, Any]]]:
        """The ``alert_context`` values of the oldest ``limit`` waiting messages of each queue,
        from the publish records (call after :meth:`published_oldest` trimmed them)."""
        pipe = self.r.pipeline(transaction=False)
        for queue in queues:
            pipe.zrange(f"{self.p}:pub:{queue}", 0, limit - 1)
        out: dict[str, list[dict[str, Any]]] = {}
        for queue, members in zip(queues, pipe.execute() if queues else [], strict=True):
            found = []
            for member in members:
                _, tab, raw = member.partition("\t")
                try:
                    doc = json.loads(raw) if tab else None
                except ValueError:
                    continue
                if isinstance(doc, dict) and doc:
                    found.append(doc)
            out[queue] = found
        return out

    def record_oldest(self, ages: Mapping[str, float], now: float) -> None:
        """Keep the largest oldest-message age of each queue in this hour of the week."""
        ages = {q: a for q, a in ages.items() if a is not None and a >= 0}
        if not ages:
            return
        week, how = week_and_hour(int(now // 3600))
        keys = [f"{self.p}:qwk:{q}:{week}" for q in ages]
        args: list[str] = []
        for age in ages.values():
            args += [str(how), repr(round(age, 3))]
        self.r.eval(_RECORD_OLDEST, len(keys), *keys, *args)

    def normal_oldest(self, queues: Sequence[str], now: float, weeks: int = 4) -> dict[str, float]:
        """What is normal for this hour of the week: the median of the oldest ages seen at this
        hour and its neighbours in the ``weeks`` before (queues without history: absent)."""
        return self._normal(queues, now, weeks, "")

    def normal_completions(
        self, queues: Sequence[str], now: float, weeks: int = 4
    ) -> dict[str, float]:
        """Runs from each queue that ended per hour, normally at this hour of the week (as
        :meth:`normal_oldest`: a median over the weeks before; no history: absent)."""
        return self._normal(queues, now, weeks, ":d")

    def _normal(
        self, queues: Sequence[str], now: float, weeks: int, suffix: str
    ) -> dict[str, float]:
        # The weeks before never change: read once per hour of this process, then remembered.
        hour = int(now // 3600)
        memo = self._normals.setdefault(suffix, ForPeriod())
        known = memo.of((hour, weeks))
        missing = [q for q in queues if q not in known]
        if missing:
            known.update(dict.fromkeys(missing))
            known.update(self._read_normal(missing, hour, weeks, suffix))
        return {q: v for q in queues if (v := known[q]) is not None}

    def _read_normal(
        self, queues: Sequence[str], hour: int, weeks: int, suffix: str
    ) -> dict[str, float]:
        asks = []
        pipe = self.r.pipeline(transaction=False)
        for queue in queues:
            for back in range(1, weeks + 1):
                for h in (hour - 1, hour, hour + 1):
                    week, how = week_and_hour(h - WEEK_HOURS * back)
                    pipe.hget(f"{self.p}:qwk:{queue}:{week}", f"{how}{suffix}")
                    asks.append(queue)
        samples: dict[str, list[float]] = {}
        for queue, raw in zip(asks, pipe.execute() if asks else [], strict=True):
            if raw is not None:
                samples.setdefault(queue, []).append(float(raw))
        return {q: sorted(v)[len(v) // 2] for q, v in samples.items()}

    def first_seen(self, heads: Mapping[str, str], now: float) -> dict[str, float]:
        """For each queue's head message (task id), when the monitor first saw it there."""
        if not heads:
            return {}
        args: list[str] = [repr(now)]
        for queue, task_id in heads.items():
            args += [queue, task_id]
        seen = self.r.eval(_FIRST_SEEN, 1, f"{self.p}:qhead", *args)
        return {q: float(s) for q, s in zip(heads, seen, strict=True)}

    def completions(self, queues: Sequence[str], now: float) -> dict[str, tuple[int, float | None]]:
        """Per queue: runs that ended in the last 10 minutes, and when the last one did."""
        if not queues:
            return {}
        b5 = int(now // 300)
        pipe = self.r.pipeline(transaction=False)
        for queue in queues:
            pipe.hget(f"{self.p}:qc:{queue}:{b5}", "done")
            pipe.hget(f"{self.p}:qc:{queue}:{b5 - 1}", "done")
        pipe.hmget(f"{self.p}:qlast", list(queues))
        *replies, last = pipe.execute()
        out = {}
        for i, queue in enumerate(queues):
            done = sum(int(v) for v in replies[2 * i : 2 * i + 2] if v)
            out[queue] = (done, float(last[i]) if last[i] else None)
        return out

    def save(self, docs: Mapping[str, Mapping[str, Any]]) -> None:
        save_docs(self.r, f"{self.p}:queues", docs, 86400)

    def latest(self) -> dict[str, dict[str, Any]]:
        """The last judgement of each queue (by the last monitor pass)."""
        return load_docs(self.r, f"{self.p}:queues")

    def oldest_by_day(
        self, queues: Sequence[str], now: float, days: int = 21
    ) -> dict[str, list[float | None]]:
        """Per queue, the largest oldest-message age seen each day (oldest first; None: no pass
        recorded that day)."""
        first_hour = (int(now // 86400) - days + 1) * 24
        hours = range(first_hour, int(now // 3600) + 1)
        weeks = sorted({week_and_hour(h)[0] for h in hours})
        pipe = self.r.pipeline(transaction=False)
        for queue in queues:
            for week in weeks:
                pipe.hgetall(f"{self.p}:qwk:{queue}:{week}")
        replies = pipe.execute() if queues else []
        out: dict[str, list[float | None]] = {}
        for i, queue in enumerate(queues):
            by_week = dict(zip(weeks, replies[i * len(weeks) : (i + 1) * len(weeks)], strict=True))
            series: list[float | None] = [None] * days
            for h in hours:
                week, how = week_and_hour(h)
                raw = by_week[week].get(str(how))
                if raw is not None:
                    d = (h - first_hour) // 24
                    series[d] = max(series[d] or 0.0, float(raw))
            out[queue] = series
        return out

    def known(self) -> list[str]:
        """Queues the last monitor pass judged."""
        return sorted(self.r.hkeys(f"{self.p}:queues"))

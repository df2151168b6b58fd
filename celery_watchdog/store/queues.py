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
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .base import Keys

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


class Queues(Keys):
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
        if not docs:
            return
        key = f"{self.p}:queues"
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(key)
        pipe.hset(key, mapping={q: json.dumps(d, default=str) for q, d in docs.items()})
        pipe.expire(key, 86400)
        pipe.execute()

    def latest(self) -> dict[str, dict[str, Any]]:
        """The last judgement of each queue (by the last monitor pass)."""
        out = {}
        for queue, raw in self.r.hgetall(f"{self.p}:queues").items():
            try:
                doc = json.loads(raw)
            except ValueError:
                continue
            if isinstance(doc, dict):
                out[queue] = doc
        return out

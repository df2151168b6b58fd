"""Deliveries: how often each message came back, and the messages refused for it.

Keys ({p} = prefix):
  {p}:dlv:{id}       STRING redeliveries seen of one task id (its first delivery is not
                     counted: most messages are delivered once and cost nothing); TTL the
                     delivery window from the first redelivery (watchdog_delivery_window)
  {p}:refused        ZSET   task id -> when a worker refused it (server time), waiting for the
                     monitor to dead-letter it and alert; capped at REFUSED_MAX
  {p}:refusedinfo    HASH   task id -> JSON facts {name, worker, deliveries, why, kind}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .base import Keys

REFUSED_MAX = 100_000
# Both writes at once, stamped with the server clock; the oldest beyond the cap are dropped
# from the index (their facts with them), never the newest.
_REFUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
local n = redis.call('ZCARD', KEYS[1])
if n > tonumber(ARGV[3]) then
  local old = redis.call('ZRANGE', KEYS[1], 0, n - tonumber(ARGV[3]) - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - tonumber(ARGV[3]) - 1)
  redis.call('HDEL', KEYS[2], unpack(old))
end
return now
"""


class Deliveries(Keys):
    def count(self, task_id: str, window: float) -> int:
        """One more redelivery of ``task_id``: how many there have been within the window."""
        key = f"{self.p}:dlv:{task_id}"
        pipe = self.r.pipeline(transaction=True)
        pipe.set(key, 0, nx=True, ex=max(1, int(window)))
        pipe.incr(key)
        return int(pipe.execute()[1])

    def refuse(self, task_id: str, facts: Mapping[str, Any]) -> None:
        """A worker did not run this message: the monitor dead-letters it and alerts once."""
        keys = [f"{self.p}:refused", f"{self.p}:refusedinfo"]
        self.r.eval(_REFUSE, 2, *keys, task_id, json.dumps(dict(facts), default=str), REFUSED_MAX)

    def refused_pending(self, limit: int = 1000) -> list[tuple[str, dict[str, Any]]]:
        ids = self.r.zrange(f"{self.p}:refused", 0, limit - 1)
        if not ids:
            return []
        infos = self.r.hmget(f"{self.p}:refusedinfo", ids)
        out = []
        for task_id, raw in zip(ids, infos, strict=True):
            try:
                info = json.loads(raw) if raw else {}
            except ValueError:
                info = {}
            out.append((task_id, info if isinstance(info, dict) else {}))
        return out

    def refused_done(self, *task_ids: str) -> None:
        if task_ids:
            pipe = self.r.pipeline(transaction=True)
            pipe.zrem(f"{self.p}:refused", *task_ids)
            pipe.hdel(f"{self.p}:refusedinfo", *task_ids)
            pipe.execute()

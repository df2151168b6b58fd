"""What the monitor claims and works through: claims, stops, lost runs, passes.

Keys ({p} = prefix):
  {p}:lost / :lostinfo   runs that ended lost, waiting for the monitor (written by flush.lua)
  {p}:claim:{what}       STRING SET NX: one monitor acts on one (run, verdict); TTL 1 day
  {p}:terminating        ZSET runkey -> when to escalate SIGTERM to SIGKILL; entries removed
                         when handled, and capped by the running runs it refers to
  {p}:terminfo           HASH runkey -> JSON {task_id, worker}
  {p}:monitor            HASH the last completed pass {at, duration, due, findings, host}; TTL 7 d
  {p}:pass:started       STRING server time the last beat-sent pass started; TTL 1 day
  {p}:pass:lock          STRING held while a beat-sent pass runs; TTL a few intervals
  {p}:cancel:{id}        STRING the cancel flag a run's heartbeat reads; TTL 1 hour
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .base import Keys

_BEGIN_PASS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local started = tonumber(redis.call('GET', KEYS[1]) or '')
if started and now - started < tonumber(ARGV[1]) then return 0 end
if not redis.call('SET', KEYS[2], now, 'NX', 'EX', tonumber(ARGV[2])) then return 0 end
redis.call('SET', KEYS[1], now, 'EX', 86400)
return 1
"""
CLAIM_TTL = 86400
CANCEL_TTL = 3600


class MonitorKeys(Keys):
    def claim_many(self, whats: list[str], ttl: int = CLAIM_TTL) -> list[bool]:
        """One round trip of SET NX: each ``what`` is won by exactly one caller."""
        pipe = self.r.pipeline(transaction=False)
        for what in whats:
            pipe.set(f"{self.p}:claim:{what}", "1", nx=True, ex=ttl)
        return [bool(won) for won in pipe.execute()]

    def claimed_many(self, whats: list[str]) -> list[bool]:
        pipe = self.r.pipeline(transaction=False)
        for what in whats:
            pipe.exists(f"{self.p}:claim:{what}")
        return [bool(n) for n in pipe.execute()]

    def stop_many(self, runs: list[tuple[str, str, str | None]], grace_until: float) -> None:
        """For (runkey, task id, worker): the cancel flag, and when to escalate to SIGKILL."""
        if not runs:
            return
        pipe = self.r.pipeline(transaction=False)
        for runkey, task_id, worker in runs:
            pipe.set(f"{self.p}:cancel:{task_id}", "1", ex=CANCEL_TTL)
            pipe.zadd(f"{self.p}:terminating", {runkey: grace_until})
            pipe.hset(
                f"{self.p}:terminfo", runkey, json.dumps({"task_id": task_id, "worker": worker})
            )
        pipe.execute()

    def terminating_due(self, now: float) -> list[tuple[str, dict[str, Any]]]:
        runkeys = self.r.zrangebyscore(f"{self.p}:terminating", "-inf", now)
        if not runkeys:
            return []
        infos = self.r.hmget(f"{self.p}:terminfo", runkeys)
        return [(k, json.loads(i) if i else {}) for k, i in zip(runkeys, infos, strict=True)]

    def terminating_done(self, *runkeys: str) -> None:
        if runkeys:
            pipe = self.r.pipeline(transaction=True)
            pipe.zrem(f"{self.p}:terminating", *runkeys)
            pipe.hdel(f"{self.p}:terminfo", *runkeys)
            pipe.execute()

    def lost_pending(self, limit: int = 1000) -> list[tuple[str, dict[str, Any]]]:
        runkeys = self.r.zrange(f"{self.p}:lost", 0, limit - 1)
        if not runkeys:
            return []
        infos = self.r.hmget(f"{self.p}:lostinfo", runkeys)
        return [(k, json.loads(i)) for k, i in zip(runkeys, infos, strict=True) if i]

    def lost_done(self, *runkeys: str) -> None:
        if runkeys:
            pipe = self.r.pipeline(transaction=True)
            pipe.zrem(f"{self.p}:lost", *runkeys)
            pipe.hdel(f"{self.p}:lostinfo", *runkeys)
            pipe.execute()

    def begin_pass(self, min_gap: float, ttl: float) -> bool:
        """Claim the next pass: False while one runs or one started less than ``min_gap`` ago."""
        keys = [f"{self.p}:pass:started", f"{self.p}:pass:lock"]
        return bool(self.r.eval(_BEGIN_PASS, 2, *keys, repr(min_gap), int(ttl)))

    def end_pass(self) -> None:
        self.r.delete(f"{self.p}:pass:lock")

    def record_pass(self, doc: Mapping[str, Any]) -> None:
        key = f"{self.p}:monitor"
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(key, mapping={k: str(v) for k, v in doc.items()})
        pipe.expire(key, 7 * 86400)
        pipe.execute()

    def last_pass(self) -> dict[str, str]:
        return dict(self.r.hgetall(f"{self.p}:monitor"))

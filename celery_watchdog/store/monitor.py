"""What the monitor reads and claims: due runs, lost runs, claims, passes, learned budgets.

Keys ({p} = prefix):
  {p}:running            ZSET runkey -> when it becomes suspect (written by flush.lua)
  {p}:host:{worker}      SET  runkeys open on a worker (written by flush.lua)
  {p}:lost / :lostinfo   runs that ended lost, waiting for the monitor (written by flush.lua)
  {p}:claim:{what}       STRING SET NX: one monitor acts on one (run, verdict); TTL 1 day
  {p}:terminating        ZSET runkey -> when to escalate SIGTERM to SIGKILL; entries removed
                         when handled, and capped by the running runs it refers to
  {p}:terminfo           HASH runkey -> JSON {task_id, worker}
  {p}:monitor            HASH the last completed pass {at, duration, due, findings, host}; TTL 7 d
  {p}:pass:started       STRING server time the last beat-sent pass started; TTL 1 day
  {p}:pass:lock          STRING held while a beat-sent pass runs; TTL a few intervals
  {p}:budgets            HASH task name -> "soft,hard" learned from history; TTL 1 day
  {p}:cpu:{worker}       HASH "{id}|{pid}" -> CPU % (written by snapshot.lua)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..model.records import Run
from .runs import RunStore

_RESCHEDULE = (Path(__file__).resolve().parent / "lua" / "reschedule.lua").read_text()
# Only an existing task document gets the verdict: a new key would have no TTL.
_MARK = """if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'verdict', ARGV[1], 'verdict_reason', ARGV[2]) end"""
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


class MonitorStore(RunStore):
    def due(self, now: float, limit: int = 1000) -> list[Run]:
        """Runs whose deadline has passed, most overdue first: cost grows with what is due."""
        keys = self.r.zrangebyscore(
            f"{self.p}:running", "-inf", now, start=0, num=limit, withscores=True
        )
        return self.load_runs(keys)

    def runs_of_host(self, hostname: str) -> list[Run]:
        runkeys = sorted(self.r.smembers(f"{self.p}:host:{hostname}"))
        pipe = self.r.pipeline(transaction=False)
        for runkey in runkeys:
            pipe.zscore(f"{self.p}:running", runkey)
        scores = pipe.execute()
        return self.load_runs(
            [(k, s) for k, s in zip(runkeys, scores, strict=True) if s is not None]
        )

    def online_workers(self) -> set[str]:
        """Hosts whose snapshot is alive, without reading the snapshots themselves."""
        hosts = self.r.zrange(f"{self.p}:workers", 0, -1)
        pipe = self.r.pipeline(transaction=False)
        for host in hosts:
            pipe.hget(f"{self.p}:worker:{host}", "state")
        return {h for h, state in zip(hosts, pipe.execute(), strict=True) if state == "online"}

    def offline_workers(self) -> list[str]:
        hosts = self.r.zrange(f"{self.p}:workers", 0, -1)
        online = self.online_workers()
        return [h for h in hosts if h not in online]

    def cpu_of(
        self, runs: list[tuple[str, str, int | None]]
    ) -> dict[tuple[str, int | None], float]:
        """CPU % of the children running (host, task id, pid), from their worker's snapshot."""
        pipe = self.r.pipeline(transaction=False)
        for host, task_id, pid in runs:
            pipe.hget(f"{self.p}:cpu:{host}", f"{task_id}|{pid}")
        return {
            (task_id, pid): float(v)
            for (_, task_id, pid), v in zip(runs, pipe.execute(), strict=True)
            if v is not None
        }

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

    def mark_verdicts(self, verdicts: list[tuple[str, str, str]]) -> None:
        """(task id, kind, reason): kept on the task document once the run ended."""
        if not verdicts:
            return
        script = self.r.register_script(_MARK)
        pipe = self.r.pipeline(transaction=False)
        for task_id, kind, reason in verdicts:
            script(keys=[f"{self.p}:task:{task_id}"], args=[kind, reason], client=pipe)
        pipe.execute()

    def running_many(self, runkeys: list[str]) -> list[bool]:
        pipe = self.r.pipeline(transaction=False)
        for runkey in runkeys:
            pipe.zscore(f"{self.p}:running", runkey)
        return [score is not None for score in pipe.execute()]

    def reschedule_many(self, moves: list[tuple[str, float, float]]) -> None:
        """(runkey, seen, deadline): move each deadline unless a flush moved it meanwhile."""
        if not moves:
            return
        script = self.r.register_script(_RESCHEDULE)
        pipe = self.r.pipeline(transaction=False)
        for runkey, seen, deadline in moves:
            script(keys=[f"{self.p}:running"], args=[runkey, repr(seen), repr(deadline)],
                   client=pipe)  # fmt: skip
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

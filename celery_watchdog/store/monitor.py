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
  {p}:budgets            HASH task name -> "soft,hard" learned from history; TTL 1 day
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..records import Run
from .runs import RunStore

_RESCHEDULE = (Path(__file__).resolve().parent.parent / "lua" / "reschedule.lua").read_text()
CLAIM_TTL = 86400


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

    def claim(self, what: str, ttl: int = CLAIM_TTL) -> bool:
        """True for exactly one caller per ``what``, however many monitors run at once."""
        return bool(self.r.set(f"{self.p}:claim:{what}", "1", nx=True, ex=ttl))

    def mark_verdict(self, task_id: str, kind: str, reason: str) -> None:
        """Keep the verdict on the task document, so it still shows once the run ended."""
        key = f"{self.p}:task:{task_id}"
        if self.r.exists(key):
            self.r.hset(key, mapping={"verdict": kind, "verdict_reason": reason})

    def claimed(self, what: str) -> bool:
        return bool(self.r.exists(f"{self.p}:claim:{what}"))

    def reschedule(self, runkey: str, seen: float, deadline: float) -> bool:
        """Move a run's deadline unless a flush moved it since we read it (compare-and-set)."""
        return bool(
            self.r.eval(_RESCHEDULE, 1, f"{self.p}:running", runkey, repr(seen), repr(deadline))
        )

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

    def terminating_add(self, runkey: str, at: float, info: Mapping[str, Any]) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.zadd(f"{self.p}:terminating", {runkey: at})
        pipe.hset(f"{self.p}:terminfo", runkey, json.dumps(info))
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

    def is_running(self, runkey: str) -> bool:
        return self.r.zscore(f"{self.p}:running", runkey) is not None

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

"""Per task name: counts over time, recent runtimes, last outcomes, and learned budgets.

Keys ({p} = prefix; ``lua/flush.lua`` writes all but the budgets):
  {p}:names               ZSET task name -> last seen (capped)
  {p}:name:{name}         HASH last success/failure/error
  {p}:s5:{name}:{bucket}  HASH outcome counts per 5 minutes
  {p}:s1h:{name}:{bucket} HASH outcome counts per hour
  {p}:rt:{name}           LIST last 1000 runtimes (ms)
  {p}:budgets             HASH task name -> "soft,hard" learned from history; TTL 1 day
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..model.records import NameStats
from .base import Keys


class Names(Keys):
    def recent(self, limit: int = 500) -> list[str]:
        """Task names, most recently seen first."""
        return list(self.r.zrevrange(f"{self.p}:names", 0, limit - 1))

    def stats(self, names: Iterable[str], now: float) -> dict[str, NameStats]:
        names = list(names)
        b5, b1h = int(now // 300), int(now // 3600)
        pipe = self.r.pipeline(transaction=False)
        for name in names:
            for b in range(b5 - 11, b5 + 1):
                pipe.hgetall(f"{self.p}:s5:{name}:{b}")
            for b in range(b1h - 23, b1h + 1):
                pipe.hgetall(f"{self.p}:s1h:{name}:{b}")
            pipe.lrange(f"{self.p}:rt:{name}", 0, -1)
            pipe.hgetall(f"{self.p}:name:{name}")
        replies = pipe.execute()
        per = 12 + 24 + 2
        out = {}
        for i, name in enumerate(names):
            chunk = replies[i * per : (i + 1) * per]
            out[name] = NameStats.from_replies(name, chunk[:12], chunk[12:36], chunk[36], chunk[37])
        return out

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

"""Workers: their snapshots, liveness, the pulse of the store, CPU, and the watchdog's own errors.

Keys ({p} = prefix; ``lua/snapshot.lua`` writes most of them, ``lua/flush.lua`` the faults):
  {p}:worker:{hostname}   HASH {ts, data, state}: the last snapshot of one worker
  {p}:workers             ZSET hostname -> last seen
  {p}:pulse / {p}:outage  STRING when any worker last reported / when reports resumed after a gap
  {p}:cpu:{hostname}      HASH "{task id}|{pid}" -> CPU % of the child running it
  {p}:faults:{worker}:{b} HASH the watchdog's own errors by kind per 5 minutes
  {p}:faultlast:{worker}  HASH kind -> JSON {at, text, pid} of the last one
  {p}:faulty              ZSET worker -> last error report
"""

from __future__ import annotations

import json
from typing import Any

from ..model import storable
from ..model.records import Evidence, NameStats, WorkerInfo, number
from .base import RUNNING_TTL, Keys, lua

_NOTE_SILENCE = """
local pulse = tonumber(redis.call('GET', ARGV[1]) or '') or 0
local outage = tonumber(redis.call('GET', ARGV[2]) or '') or 0
if outage < pulse or outage == 0 then redis.call('SET', ARGV[2], ARGV[3], 'EX', 86400) end
"""


class Workers(Keys):
    def __init__(self, client: Any, prefix: str) -> None:
        super().__init__(client, prefix)
        self._snapshot = client.register_script(lua("snapshot.lua"))

    def write_snapshot(
        self, hostname: str, snapshot: dict[str, Any], ttl: float, online: bool,
        gap: float | None = None,
    ) -> float:  # fmt: skip
        """Write a worker's snapshot; ``gap``: silence of every worker that means an outage."""
        data = json.dumps(storable.tree(snapshot), default=str, separators=(",", ":"))
        state = "online" if online else "offline"
        gap_arg = "" if gap is None else gap
        args: list[str | float] = [self.p, hostname, data, ttl, RUNNING_TTL, state, gap_arg]
        return float(self._snapshot(args=args))

    def evidence(self) -> Evidence:
        """When any worker last wrote a snapshot, and when snapshots last resumed after a gap."""
        pulse, outage = self.r.mget(f"{self.p}:pulse", f"{self.p}:outage")
        return Evidence(number(pulse), number(outage))

    def note_silence(self, now: float) -> None:
        """The monitor found every worker silent: evidence is doubtful from ``now`` (first
        notice only; the outage mark moves only when snapshots resume or silence is new)."""
        self.r.eval(_NOTE_SILENCE, 0, f"{self.p}:pulse", f"{self.p}:outage", repr(now))

    def all(self) -> list[WorkerInfo]:
        """Every worker seen in the last day, most recently seen first."""
        hosts = self.r.zrevrange(f"{self.p}:workers", 0, -1, withscores=True)
        pipe = self.r.pipeline(transaction=False)
        for host, _ in hosts:
            pipe.hgetall(f"{self.p}:worker:{host}")
        docs = pipe.execute()
        return [
            WorkerInfo.from_doc(host, seen, doc)
            for (host, seen), doc in zip(hosts, docs, strict=True)
        ]

    def faults(self, now: float, limit: int = 100) -> dict[str, dict[str, dict[str, Any]]]:
        """The watchdog's own errors per source (worker) and kind: count in the last hour,
        the last one's text and time (written by ``flush.lua``'s "faults" events)."""
        sources = self.r.zrevrangebyscore(f"{self.p}:faulty", "+inf", now - 86400, 0, limit)
        b5 = int(now // 300)
        pipe = self.r.pipeline(transaction=False)
        for source in sources:
            for b in range(b5 - 11, b5 + 1):
                pipe.hgetall(f"{self.p}:faults:{source}:{b}")
            pipe.hgetall(f"{self.p}:faultlast:{source}")
        replies = pipe.execute() if sources else []
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for i, source in enumerate(sources):
            *buckets, last = replies[i * 13 : (i + 1) * 13]
            counts = NameStats.from_replies(source, buckets, (), {}).last_hour
            kinds: dict[str, dict[str, Any]] = {}
            for kind, raw in last.items():
                try:
                    doc = json.loads(raw)
                except ValueError:
                    doc = {}
                kinds[kind] = {"count_1h": counts.get(kind, 0), "last": doc.get("text"),
                               "last_at": doc.get("at"), "pid": doc.get("pid")}  # fmt: skip
            out[source] = kinds
        return out

    def online(self) -> set[str]:
        """Hosts whose snapshot is alive, without reading the snapshots themselves."""
        hosts = self.r.zrange(f"{self.p}:workers", 0, -1)
        pipe = self.r.pipeline(transaction=False)
        for host in hosts:
            pipe.hget(f"{self.p}:worker:{host}", "state")
        return {h for h, state in zip(hosts, pipe.execute(), strict=True) if state == "online"}

    def offline(self) -> list[str]:
        hosts = self.r.zrange(f"{self.p}:workers", 0, -1)
        online = self.online()
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

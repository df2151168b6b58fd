"""Runs, tasks, workers and per-name statistics: the recorder's and the views' keys.

Writers (the recorder, the worker bootstep) send one script call per batch; readers (views,
the CLI, the monitor) get plain records back. The key maps live at the top of each
``lua/*.lua`` file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import redis

from .. import faults
from ..model.records import Evidence, NameStats, Run, WorkerInfo, number

_LUA = Path(__file__).resolve().parent / "lua"
RUNNING_TTL = 7 * 86400  # a run's keys outlive any sane task; the snapshot keeps them alive
NAMES_MAX = 5000  # task names tracked at most (each has a handful of small keys)


def connect(url: str) -> redis.Redis:
    """A client that gives up fast: the watchdog must never make the watched work wait."""
    return redis.Redis.from_url(
        url,
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
        health_check_interval=30,
        decode_responses=True,
    )


class Written(NamedTuple):
    """What ``flush.lua`` did with a batch."""

    cancelled: list[str]  # live task ids whose cancel flag is set
    rejected: list[str]  # "index: error" of each event it could not apply (1-based)


@dataclass(frozen=True)
class Limits:
    """The memory bounds a batch is written with (from :class:`~.config.Settings`)."""

    retention: float
    max_finished: int


class RunStore:
    p: str
    r: Any

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        # Typed loosely: redis-py's stubs cannot express decode_responses=True (str replies).
        self.r: Any = client
        self.p = prefix
        self.unreadable = 0  # records skipped by readers since the caller last reset it
        self._flush = client.register_script((_LUA / "flush.lua").read_text())
        self._snapshot = client.register_script((_LUA / "snapshot.lua").read_text())

    # -- writes ------------------------------------------------------------------------------

    def write_batch(
        self, events: Sequence[Mapping[str, Any]], live: Sequence[str], limits: Limits
    ) -> Written:
        """Apply recorder events in one round trip; a malformed event is rejected alone."""
        batch = {
            "cfg": {
                "running_ttl": RUNNING_TTL,
                "retention": int(limits.retention),
                "max_finished": limits.max_finished,
                "names_max": NAMES_MAX,
            },
            "events": list(events),
            "live": list(live),
        }
        payload = json.dumps(batch, default=str, separators=(",", ":"))
        cancelled, rejected = self._flush(args=[self.p, payload])
        return Written(list(cancelled), list(rejected))

    def write_snapshot(
        self, hostname: str, snapshot: dict[str, Any], ttl: float, online: bool,
        gap: float | None = None,
    ) -> float:  # fmt: skip
        """Write a worker's snapshot; ``gap``: silence of every worker that means an outage."""
        data = json.dumps(snapshot, default=str, separators=(",", ":"))
        state = "online" if online else "offline"
        args: list[str | float] = [self.p, hostname, data, ttl, RUNNING_TTL, state,
                                   "" if gap is None else gap]
        return float(self._snapshot(args=args))

    def evidence(self) -> Evidence:
        """When any worker last wrote a snapshot, and when snapshots last resumed after a gap."""
        pulse, outage = self.r.mget(f"{self.p}:pulse", f"{self.p}:outage")
        return Evidence(number(pulse), number(outage))

    def note_silence(self, now: float) -> None:
        """The monitor found every worker silent: evidence is doubtful from ``now`` (first
        notice only; the outage mark moves only when snapshots resume or silence is new)."""
        self.r.eval(_NOTE_SILENCE, 0, f"{self.p}:pulse", f"{self.p}:outage", repr(now))

    def now(self) -> float:
        """The one clock: the Redis server's."""
        sec, usec = self.r.time()
        return sec + usec / 1e6

    def running(self, limit: int = 1000) -> list[Run]:
        """Runs in progress, most overdue first."""
        keys = self.r.zrange(f"{self.p}:running", 0, limit - 1, withscores=True)
        return self.load_runs(keys, forget_stale=True)

    def load_runs(self, keys: list[tuple[str, float]], forget_stale: bool = False) -> list[Run]:
        """Run records for (runkey, deadline) pairs, in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for runkey, _ in keys:
            pipe.hgetall(f"{self.p}:run:{runkey}")
            pipe.hgetall(f"{self.p}:task:{runkey.split('|', 1)[0]}")
        replies = pipe.execute()
        runs, stale = [], []
        for i, (runkey, deadline) in enumerate(keys):
            run_doc, task_doc = replies[2 * i], replies[2 * i + 1]
            if run_doc:
                run = self._readable(task_doc, run_doc, deadline, runkey)
                if run is not None:
                    runs.append(run)
            else:
                stale.append(runkey)  # its keys expired (worker gone for days): forget it
        if stale and forget_stale:
            self.r.zrem(f"{self.p}:running", *stale)
        return runs

    def _readable(
        self, task_doc: dict[str, str], run_doc: dict[str, str], deadline: float | None,
        what: str,
    ) -> Run | None:  # fmt: skip
        """A record as a Run, or None (counted, reported) when it cannot be read: one bad
        record must never stop a pass or a command."""
        try:
            return Run.from_docs(task_doc, run_doc, deadline=deadline)
        except Exception as exc:
            self.unreadable += 1
            faults.report("record", exc, f"cannot read the record of {what}: {exc}")
            return None

    def open_runs_of(self, hostname: str, pid: int) -> list[tuple[str, str]]:
        """(task id, name) of runs still open for one child process (its buffer may be lost)."""
        found = []
        match = f"*|{glob_escape(hostname)}|{pid}"
        for runkey, _ in self.r.zscan_iter(f"{self.p}:running", match=match):
            name = self.r.hget(f"{self.p}:run:{runkey}", "name")
            found.append((runkey.split("|", 1)[0], name or ""))
        return found

    def finished(self, limit: int = 100) -> list[Run]:
        """Recently finished runs, newest first."""
        ids = self.r.zrevrange(f"{self.p}:finished", 0, limit - 1)
        pipe = self.r.pipeline(transaction=False)
        for task_id in ids:
            pipe.hgetall(f"{self.p}:task:{task_id}")
        found = [self._readable(doc, {}, None, task_id)
                 for task_id, doc in zip(ids, pipe.execute(), strict=True) if doc]  # fmt: skip
        return [run for run in found if run is not None]

    def task(self, task_id: str) -> list[Run]:
        """Every known run of one task id: the running ones, else its last record."""
        runkeys = sorted(self.r.smembers(f"{self.p}:runs:{task_id}"))
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(f"{self.p}:task:{task_id}")
        for runkey in runkeys:
            pipe.hgetall(f"{self.p}:run:{runkey}")
            pipe.zscore(f"{self.p}:running", runkey)
        task_doc, *rest = pipe.execute()
        found = [
            self._readable(task_doc, rest[2 * i], rest[2 * i + 1], runkeys[i])
            for i in range(len(runkeys))
            if rest[2 * i]
        ]
        runs = [run for run in found if run is not None]
        if not runs and task_doc:
            last = self._readable(task_doc, {}, None, task_id)
            runs += [last] if last is not None else []
        return runs

    def find_task_ids(self, prefix: str, limit: int = 10) -> list[str]:
        """Task ids starting with ``prefix`` (a unique prefix is enough, as with git hashes)."""
        found: list[str] = []
        start = len(self.p) + len(":task:")
        for key in self.r.scan_iter(match=f"{self.p}:task:{glob_escape(prefix)}*", count=1000):
            found.append(key[start:])
            if len(found) >= limit:
                break
        return found

    def workers(self) -> list[WorkerInfo]:
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
            counts = NameStats.from_replies(source, buckets, (), (), {}).last_hour
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

    def task_names(self, limit: int = 500) -> list[str]:
        return list(self.r.zrevrange(f"{self.p}:names", 0, limit - 1))

    def name_stats(self, names: Iterable[str], now: float) -> dict[str, NameStats]:
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


_NOTE_SILENCE = """
local pulse = tonumber(redis.call('GET', ARGV[1]) or '') or 0
local outage = tonumber(redis.call('GET', ARGV[2]) or '') or 0
if outage < pulse or outage == 0 then redis.call('SET', ARGV[2], ARGV[3], 'EX', 86400) end
"""


def glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)

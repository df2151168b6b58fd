"""Runs and their task documents: what the recorder writes and every reader loads.

Keys ({p} = prefix; the full map is at the top of ``lua/flush.lua``, which writes them):
  {p}:task:{id}      HASH  Flower-shaped task document
  {p}:run:{runkey}   HASH  one execution (id|host|slot)
  {p}:runs:{id}      SET   runkeys of an id now running
  {p}:running        ZSET  runkey -> deadline (when it becomes suspect)
  {p}:finished       ZSET  id -> finish time
  {p}:host:{worker}  SET   runkeys open on one worker
Writers send one script call per batch; readers get plain records back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from .. import faults
from ..model.records import Run
from .base import RUNNING_TTL, Keys, glob_escape, lua

NAMES_MAX = 5000  # task names tracked at most (each has a handful of small keys)
# Only an existing task document gets the verdict: a new key would have no TTL.
_MARK = """if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'verdict', ARGV[1], 'verdict_reason', ARGV[2]) end"""


class Written(NamedTuple):
    """What ``flush.lua`` did with a batch."""

    cancelled: list[str]  # live task ids whose cancel flag is set
    rejected: list[str]  # "index: error" of each event it could not apply (1-based)


@dataclass(frozen=True)
class Limits:
    """The memory bounds a batch is written with (from :class:`~.config.Settings`)."""

    retention: float
    max_finished: int
    window: float = 3 * 86400  # watchdog_delivery_window: inputs' failures counted this long


class Runs(Keys):
    def __init__(self, client: Any, prefix: str) -> None:
        super().__init__(client, prefix)
        self.unreadable = 0  # records skipped by readers since the caller last reset it
        self._flush = client.register_script(lua("flush.lua"))
        self._reschedule = client.register_script(lua("reschedule.lua"))
        self._mark = client.register_script(_MARK)

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
                "window": int(limits.window),
                "names_max": NAMES_MAX,
            },
            "events": list(events),
            "live": list(live),
        }
        payload = json.dumps(batch, default=str, separators=(",", ":"))
        cancelled, rejected = self._flush(args=[self.p, payload])
        return Written(list(cancelled), list(rejected))

    def running(self, limit: int = 1000) -> list[Run]:
        """Runs in progress, most overdue first."""
        return self.load(self.running_keys(limit), forget_stale=True)

    def running_keys(self, limit: int = 1000) -> list[tuple[str, float]]:
        """(runkey, deadline) of runs in progress, most overdue first: ``{id}|{worker}|{slot}``
        tells copies of one task id apart without reading their records."""
        return list(self.r.zrange(f"{self.p}:running", 0, limit - 1, withscores=True))

    def load(self, keys: list[tuple[str, float]], forget_stale: bool = False) -> list[Run]:
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

    def open_of(self, hostname: str, pid: int) -> list[tuple[str, str]]:
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

    def of_task(self, task_id: str) -> list[Run]:
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

    def cursor(self, task_id: str) -> str | None:
        """The last cursor (JSON text) a run of this task id recorded."""
        value = self.r.hget(f"{self.p}:task:{task_id}", "cursor")
        return value if isinstance(value, str) else None

    def find_task_ids(self, prefix: str, limit: int = 10) -> list[str]:
        """Task ids starting with ``prefix`` (a unique prefix is enough, as with git hashes)."""
        found: list[str] = []
        start = len(self.p) + len(":task:")
        for key in self.r.scan_iter(match=f"{self.p}:task:{glob_escape(prefix)}*", count=1000):
            found.append(key[start:])
            if len(found) >= limit:
                break
        return found

    # -- what the monitor reads and moves ------------------------------------------------

    def due(self, now: float, limit: int = 1000) -> list[Run]:
        """Runs whose deadline has passed, most overdue first: cost grows with what is due."""
        keys = self.r.zrangebyscore(
            f"{self.p}:running", "-inf", now, start=0, num=limit, withscores=True
        )
        return self.load(keys)

    def of_host(self, hostname: str) -> list[Run]:
        runkeys = sorted(self.r.smembers(f"{self.p}:host:{hostname}"))
        pipe = self.r.pipeline(transaction=False)
        for runkey in runkeys:
            pipe.zscore(f"{self.p}:running", runkey)
        scores = pipe.execute()
        return self.load([(k, s) for k, s in zip(runkeys, scores, strict=True) if s is not None])

    def running_many(self, runkeys: list[str]) -> list[bool]:
        pipe = self.r.pipeline(transaction=False)
        for runkey in runkeys:
            pipe.zscore(f"{self.p}:running", runkey)
        return [score is not None for score in pipe.execute()]

    def reschedule_many(self, moves: list[tuple[str, float, float]]) -> None:
        """(runkey, seen, deadline): move each deadline unless a flush moved it meanwhile."""
        if not moves:
            return
        pipe = self.r.pipeline(transaction=False)
        for runkey, seen, deadline in moves:
            args = [runkey, repr(seen), repr(deadline)]
            self._reschedule(keys=[f"{self.p}:running"], args=args, client=pipe)
        pipe.execute()

    def mark_verdicts(self, verdicts: list[tuple[str, str, str]]) -> None:
        """(task id, kind, reason): kept on the task document once the run ended."""
        if not verdicts:
            return
        pipe = self.r.pipeline(transaction=False)
        for task_id, kind, reason in verdicts:
            self._mark(keys=[f"{self.p}:task:{task_id}"], args=[kind, reason], client=pipe)
        pipe.execute()

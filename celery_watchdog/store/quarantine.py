"""Quarantined inputs: fingerprints that failed deterministically, parked until released.

Keys ({p} = prefix; ``lua/flush.lua`` adds an input when it failed ``quarantine_after`` times
as different task ids, and bumps the version):
  {p}:quarantine          HASH fp -> JSON {name, label, reason, error, at, failures}
  {p}:quarantined         ZSET fp -> when quarantined (the index; capped at 10000)
  {p}:quarantine:parked   HASH fp -> copies parked since it was quarantined; TTL 30 days
  {p}:quarantine:byname   HASH task name -> failures of its quarantined inputs (a name's
                          failures that are already paged as one input)
  {p}:quarantine:v        STRING a version, bumped on every change: workers reload the
                          quarantined inputs only when it moved
  {p}:quarantine:seen     STRING the latest quarantine time the monitor has alerted about
  {p}:qgone:{fp}          STRING JSON {by, at, how}: why an input left quarantine; TTL 7 days
  {p}:fp:{fp}, {p}:fp:{fp}:ids   one input's failures (written by flush.lua; reset on release)
"""

from __future__ import annotations

import json
from typing import Any

from .base import Keys, glob_escape

GONE_TTL = 7 * 86400


def _doc(raw: str | None) -> dict[str, Any]:
    try:
        doc = json.loads(raw) if raw else {}
    except ValueError:
        doc = {}
    return doc if isinstance(doc, dict) else {}


class Quarantine(Keys):
    def version(self) -> str:
        return str(self.r.get(f"{self.p}:quarantine:v") or "0")

    def all(self, limit: int = 10000) -> dict[str, dict[str, Any]]:
        """fp -> its document, newest first."""
        fps = self.r.zrevrange(f"{self.p}:quarantined", 0, limit - 1)
        if not fps:
            return {}
        raws = self.r.hmget(f"{self.p}:quarantine", fps)
        parked = self.r.hmget(f"{self.p}:quarantine:parked", fps)
        return {
            fp: {**_doc(raw), "fp": fp, "parked": int(n or 0)}
            for fp, raw, n in zip(fps, raws, parked, strict=True)
            if raw
        }

    def failures_by_name(self, names: list[str]) -> dict[str, int]:
        """Per task name, the failures of its quarantined inputs (already paged as one)."""
        if not names:
            return {}
        values = self.r.hmget(f"{self.p}:quarantine:byname", names)
        return {n: max(0, int(v)) for n, v in zip(names, values, strict=True) if v}

    def note_parked(self, fp: str) -> None:
        key = f"{self.p}:quarantine:parked"
        pipe = self.r.pipeline(transaction=False)
        pipe.hincrby(key, fp, 1)
        pipe.expire(key, 30 * 86400)
        pipe.execute()

    def get(self, fp: str) -> dict[str, Any] | None:
        raw = self.r.hget(f"{self.p}:quarantine", fp)
        parked = self.r.hget(f"{self.p}:quarantine:parked", fp)
        return {**_doc(raw), "fp": fp, "parked": int(parked or 0)} if raw else None

    def find(self, prefix: str, limit: int = 10) -> list[str]:
        found = []
        for fp, _ in self.r.zscan_iter(f"{self.p}:quarantined", match=glob_escape(prefix) + "*"):
            found.append(fp)
            if len(found) >= limit:
                break
        return found

    def release(self, fps: list[str], by: str, how: str, at: float) -> int:
        """Let these inputs run again; their failure counts start over. Returns how many."""
        if not fps:
            return 0
        docs = [_doc(raw) for raw in self.r.hmget(f"{self.p}:quarantine", fps)]
        pipe = self.r.pipeline(transaction=True)
        for doc in docs:
            if doc.get("name"):
                n = doc.get("failures")
                pipe.hincrby(f"{self.p}:quarantine:byname", str(doc["name"]),
                             -int(n) if isinstance(n, int) else 0)  # fmt: skip
        pipe.hdel(f"{self.p}:quarantine", *fps)
        pipe.zrem(f"{self.p}:quarantined", *fps)
        pipe.hdel(f"{self.p}:quarantine:parked", *fps)
        for fp in fps:
            pipe.delete(f"{self.p}:fp:{fp}", f"{self.p}:fp:{fp}:ids")
            pipe.set(f"{self.p}:qgone:{fp}", json.dumps({"by": by, "how": how, "at": at}),
                     ex=GONE_TTL)  # fmt: skip
        pipe.incr(f"{self.p}:quarantine:v")
        return int(pipe.execute()[sum(1 for d in docs if d.get("name"))])

    def gone(self, fps: list[str]) -> list[dict[str, Any] | None]:
        if not fps:
            return []
        raws = self.r.mget([f"{self.p}:qgone:{fp}" for fp in fps])
        return [_doc(raw) or None for raw in raws]

    def new_since_seen(self, limit: int = 1000) -> tuple[list[tuple[str, dict[str, Any]]], float]:
        """Inputs quarantined after the last one the monitor alerted about, and their time."""
        seen = float(self.r.get(f"{self.p}:quarantine:seen") or 0)
        found = self.r.zrangebyscore(f"{self.p}:quarantined", f"({seen!r}", "+inf", 0, limit,
                                     withscores=True)  # fmt: skip
        if not found:
            return [], seen
        raws = self.r.hmget(f"{self.p}:quarantine", [fp for fp, _ in found])
        docs = [({**_doc(raw), "fp": fp}) for (fp, _), raw in zip(found, raws, strict=True)]
        return [(d["fp"], d) for d in docs], max(score for _, score in found)

    def mark_seen(self, at: float) -> None:
        """Move the monitor's mark forward (never back: two monitors may race)."""
        self.r.eval(_MAX_SET, 1, f"{self.p}:quarantine:seen", repr(at))


_MAX_SET = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '') or 0
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1], 'EX', 30 * 86400) end
"""

"""Pauses: task names and queues held by a person, the messages held meanwhile, the audit.

Keys ({p} = prefix):
  {p}:paused            HASH "task:NAME" | "queue:Q" -> JSON {by, at, until, note}; a pause
                        ends by ``resume`` or at ``until`` (the monitor resumes it)
  {p}:paused:v          STRING a version, bumped on every change: workers reload on change
  {p}:pauselog          LIST  JSON {action, target, by, at, until, note}, newest first;
                        capped at 1000, TTL 90 days
  {p}:held:{target}     LIST  JSON original messages held by one pause, oldest first; TTL 30
                        days from the last one held (resume releases them before that)
  {p}:heldids:{target}  SET   their task ids: a message delivered again is held once
  {p}:heldtargets       SET   the targets that held messages (for the monitor's sweep)
"""

from __future__ import annotations

import json
from typing import Any

from .base import Keys

HELD_TTL = 30 * 86400
# Held only while the pause stands (checked in the same step): 0 when it ended meanwhile.
_HOLD = """
if redis.call('HEXISTS', KEYS[3], ARGV[4]) == 0 then return 0 end
if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then redis.call('RPUSH', KEYS[1], ARGV[2]) end
redis.call('EXPIRE', KEYS[1], ARGV[3]); redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[4], ARGV[4]); redis.call('EXPIRE', KEYS[4], ARGV[3])
return redis.call('LLEN', KEYS[1])
"""


def _doc(raw: Any) -> dict[str, Any]:
    try:
        doc = json.loads(raw) if raw else {}
    except ValueError:
        doc = {}
    return doc if isinstance(doc, dict) else {}


class Pauses(Keys):
    def all(self) -> dict[str, dict[str, Any]]:
        return {
            t: {**_doc(raw), "target": t} for t, raw in self.r.hgetall(f"{self.p}:paused").items()
        }

    def version(self) -> str:
        return str(self.r.get(f"{self.p}:paused:v") or "0")

    def pause(self, target: str, by: str, at: float, until: float | None, note: str) -> None:
        doc = {"by": by, "at": at, "until": until, "note": note}
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(f"{self.p}:paused", target, json.dumps(doc))
        pipe.incr(f"{self.p}:paused:v")
        self._log(pipe, {"action": "pause", "target": target, **doc})
        pipe.execute()

    def resume(self, target: str, by: str, at: float, how: str = "resume") -> bool:
        """False when it was not paused (nothing changes)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hdel(f"{self.p}:paused", target)
        pipe.incr(f"{self.p}:paused:v")
        self._log(pipe, {"action": how, "target": target, "by": by, "at": at})
        return bool(pipe.execute()[0])

    def log(self, limit: int = 50) -> list[dict[str, Any]]:
        return [_doc(raw) for raw in self.r.lrange(f"{self.p}:pauselog", 0, limit - 1)]

    def _log(self, pipe: Any, entry: dict[str, Any]) -> None:
        key = f"{self.p}:pauselog"
        pipe.lpush(key, json.dumps(entry, default=str))
        pipe.ltrim(key, 0, 999)
        pipe.expire(key, 90 * 86400)

    def hold(self, target: str, task_id: str, message: dict[str, Any]) -> int:
        """Keep a message held by a pause (once per task id): how many it holds, 0 when the
        pause has ended (then it is not held: it runs)."""
        keys = [f"{self.p}:held:{target}", f"{self.p}:heldids:{target}", f"{self.p}:paused",
                f"{self.p}:heldtargets"]  # fmt: skip
        data = json.dumps(message, default=str)
        return int(self.r.eval(_HOLD, 4, *keys, task_id, data, HELD_TTL, target))

    def holding(self) -> list[str]:
        """Targets that held messages at some point (their lists may be empty by now)."""
        return sorted(self.r.smembers(f"{self.p}:heldtargets"))

    def take(self, target: str) -> dict[str, Any] | None:
        """The oldest held message, taken out (one caller gets each), or None."""
        raw = self.r.lpop(f"{self.p}:held:{target}")
        return _doc(raw) or None if raw else None

    def put_back(self, target: str, message: dict[str, Any]) -> None:
        """A message that could not be published goes back first in line."""
        self.r.lpush(f"{self.p}:held:{target}", json.dumps(message, default=str))

    def released(self, target: str, task_id: str) -> None:
        self.r.srem(f"{self.p}:heldids:{target}", task_id)

    def held_counts(self, targets: list[str]) -> dict[str, int]:
        if not targets:
            return {}
        pipe = self.r.pipeline(transaction=False)
        for target in targets:
            pipe.llen(f"{self.p}:held:{target}")
        return {t: int(c) for t, c in zip(targets, pipe.execute(), strict=True)}

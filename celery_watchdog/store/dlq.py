"""The dead-letter queue.

Keys ({p} = prefix):
  {p}:dlq         ZSET   task id -> dead-lettered at; capped at DLQ_MAX (oldest dropped).
  {p}:dlq:{id}    HASH   one entry: plain string fields, JSON for "message" and "audit";
                  TTL dlq_retention.
  {p}:dlqlock:{id} STRING a replay in progress (SET NX, short TTL): one replayer at a time.
  {p}:dlqgone:{id} STRING JSON {how, by, at}: why an entry left the queue; TTL 7 days.
"""

from __future__ import annotations

import json
from typing import Any

from .base import Keys, glob_escape

DLQ_MAX = 10000
DLQ_RETENTION = 14 * 86400
_JSON_FIELDS = ("message", "audit")
# An entry's fields but its message (read-only; one key), and the message's size.
_WITHOUT_MESSAGE = """
local want = {}
for _, k in ipairs(redis.call('HKEYS', KEYS[1])) do
  if k ~= 'message' then want[#want + 1] = k end
end
if #want == 0 then return {} end
local values = redis.call('HMGET', KEYS[1], unpack(want))
local out = {}
for i, k in ipairs(want) do out[#out + 1] = k; out[#out + 1] = values[i] end
out[#out + 1] = 'message_size'
out[#out + 1] = tostring(redis.call('HSTRLEN', KEYS[1], 'message'))
return out
"""


class DeadLetters(Keys):
    def add(self, entry: dict[str, Any], retention: int = DLQ_RETENTION) -> None:
        """Store one entry keyed by its task id (``entry["id"]``); the oldest beyond DLQ_MAX go."""
        self.add_many([entry], retention)

    def add_many(self, entries: list[dict[str, Any]], retention: int = DLQ_RETENTION) -> None:
        """Store entries in one round trip, then drop the oldest beyond DLQ_MAX."""
        if not entries:
            return
        pipe = self.r.pipeline(transaction=True)
        for entry in entries:
            task_id = entry["id"]
            key = f"{self.p}:dlq:{task_id}"
            fields = {
                k: json.dumps(v, default=str) if k in _JSON_FIELDS else str(v)
                for k, v in entry.items()
                if v is not None
            }
            pipe.delete(key)
            pipe.hset(key, mapping=fields)
            pipe.expire(key, retention)
            pipe.zadd(f"{self.p}:dlq", {task_id: float(entry.get("dead_lettered_at") or 0)})
        pipe.zcard(f"{self.p}:dlq")
        excess = pipe.execute()[-1] - DLQ_MAX
        if excess > 0:
            old = self.r.zrange(f"{self.p}:dlq", 0, excess - 1)
            self.delete(*old)

    def ids(self, offset: int = 0, limit: int = 100) -> list[str]:
        """Entry ids, newest first (entries whose hash expired are dropped from the index)."""
        ids = list(self.r.zrevrange(f"{self.p}:dlq", offset, offset + limit - 1))
        pipe = self.r.pipeline(transaction=False)
        for task_id in ids:
            pipe.exists(f"{self.p}:dlq:{task_id}")
        alive = pipe.execute()
        gone = [i for i, ok in zip(ids, alive, strict=True) if not ok]
        if gone:
            self.r.zrem(f"{self.p}:dlq", *gone)
        return [i for i, ok in zip(ids, alive, strict=True) if ok]

    def count(self) -> int:
        return int(self.r.zcard(f"{self.p}:dlq"))

    def get(self, task_id: str) -> dict[str, Any] | None:
        return self.get_many([task_id])[0]

    def get_many(
        self, task_ids: list[str], with_message: bool = True
    ) -> list[dict[str, Any] | None]:
        """Entries in the order asked, None for those gone (one round trip).

        ``with_message=False``: without the original message (which may be megabytes: a list
        of entries must not load every payload), its size in ``message_size`` instead.
        """
        pipe = self.r.pipeline(transaction=False)
        for task_id in task_ids:
            key = f"{self.p}:dlq:{task_id}"
            if with_message:
                pipe.hgetall(key)
            else:
                pipe.eval(_WITHOUT_MESSAGE, 1, key)
        replies = pipe.execute() if task_ids else []
        if not with_message:
            replies = [dict(zip(r[::2], r[1::2], strict=True)) if r else {} for r in replies]
        out: list[dict[str, Any] | None] = []
        for doc in replies:
            for k in _JSON_FIELDS:
                if k in doc:
                    doc[k] = json.loads(doc[k])
            out.append(dict(doc) if doc else None)
        return out

    def find(self, prefix: str, limit: int = 10) -> list[str]:
        """Entry ids starting with ``prefix`` (a unique prefix is enough)."""
        found = []
        for task_id, _ in self.r.zscan_iter(f"{self.p}:dlq", match=glob_escape(prefix) + "*"):
            found.append(task_id)
            if len(found) >= limit:
                break
        return found

    def lock(self, task_id: str, ttl: int = 60) -> bool:
        """Claim the right to replay one entry now (two replayers never publish it twice)."""
        return bool(self.r.set(f"{self.p}:dlqlock:{task_id}", "1", nx=True, ex=ttl))

    def unlock(self, task_id: str) -> None:
        self.r.delete(f"{self.p}:dlqlock:{task_id}")

    def update(self, task_id: str, **fields: Any) -> None:
        """Set fields of an existing entry (e.g. ``state``, ``audit``); no-op if it is gone."""
        key = f"{self.p}:dlq:{task_id}"
        values = {
            k: json.dumps(v, default=str) if k in _JSON_FIELDS else str(v)
            for k, v in fields.items()
        }
        pipe = self.r.pipeline(transaction=True)
        pipe.exists(key)
        pipe.hset(key, mapping=values)
        exists, _ = pipe.execute()
        if not exists:  # HSET created it: undo, an expired entry stays expired
            self.r.delete(key)

    def mark_gone(self, task_ids: list[str], how: str, by: str, at: float) -> None:
        """Say why entries left the queue (``purged`` by someone): their incidents resolve
        with it."""
        if task_ids:
            doc = json.dumps({"how": how, "by": by, "at": at})
            pipe = self.r.pipeline(transaction=False)
            for task_id in task_ids:
                pipe.set(f"{self.p}:dlqgone:{task_id}", doc, ex=7 * 86400)
            pipe.execute()

    def gone(self, task_ids: list[str]) -> list[dict[str, Any] | None]:
        if not task_ids:
            return []
        raws = self.r.mget([f"{self.p}:dlqgone:{task_id}" for task_id in task_ids])
        return [json.loads(raw) if raw else None for raw in raws]

    def delete(self, *task_ids: str) -> int:
        if not task_ids:
            return 0
        pipe = self.r.pipeline(transaction=True)
        pipe.zrem(f"{self.p}:dlq", *task_ids)
        for task_id in task_ids:
            pipe.delete(f"{self.p}:dlq:{task_id}")
        return int(pipe.execute()[0])

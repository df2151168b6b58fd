"""Original messages of long runs: what a requeue or a dead-letter entry is made from.

Keys ({p} = prefix):
  {p}:msg:{id}  STRING JSON original message (body base64, content type/encoding, headers,
                delivery info), saved by a worker's main process for runs still active after
                one snapshot interval; TTL RUNNING_TTL, deleted when the run ends (kept 1 day
                after a lost or revoked end: the monitor reads it, then forgets it).
"""

from __future__ import annotations

import json
from typing import Any

from .base import Keys


class Messages(Keys):
    def save(self, messages: dict[str, dict[str, Any]], ttl: int) -> None:
        """Keep the original message of each run (first writer wins; one round trip)."""
        if not messages:
            return
        pipe = self.r.pipeline(transaction=False)
        for task_id, doc in messages.items():
            pipe.set(f"{self.p}:msg:{task_id}", json.dumps(doc, default=str), nx=True, ex=ttl)
        pipe.execute()

    def forget(self, task_ids: list[str]) -> None:
        """The monitor decided what to do with these runs: their saved messages can go."""
        if task_ids:
            self.r.delete(*(f"{self.p}:msg:{task_id}" for task_id in task_ids))

    def get(self, task_id: str) -> dict[str, Any] | None:
        raw = self.r.get(f"{self.p}:msg:{task_id}")
        return json.loads(raw) if raw else None

    def get_many(self, task_ids: list[str]) -> list[dict[str, Any] | None]:
        if not task_ids:
            return []
        raws = self.r.mget([f"{self.p}:msg:{task_id}" for task_id in task_ids])
        return [json.loads(raw) if raw else None for raw in raws]

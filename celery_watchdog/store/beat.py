"""Beat entries as the watchdog sees them: when each task was last sent by beat, when each
entry was first seen, and the last judgement of each entry.

Keys ({p} = prefix):
  {p}:beat:sent      HASH task name -> JSON {at, id}: the last message beat sent for it
                     (written by ``lua/flush.lua`` from beat's own recorder); TTL 30 days
  {p}:beat:seen      HASH entry -> when a monitor pass first saw the entry; TTL 30 days
  {p}:beat:health    HASH entry -> JSON of its last judgement; TTL 1 day
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .base import Keys, load_docs, save_docs

TTL = 30 * 86400


class Beat(Keys):
    def sent(self, tasks: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Per task name, beat's last dispatch of it: {at, id}."""
        if not tasks:
            return {}
        out = {}
        for task, raw in zip(tasks, self.r.hmget(f"{self.p}:beat:sent", list(tasks)), strict=True):
            try:
                doc = json.loads(raw) if raw else None
            except ValueError:
                doc = None
            if isinstance(doc, dict):
                out[task] = doc
        return out

    def first_seen(self, entries: Sequence[str], now: float) -> dict[str, float]:
        """When each entry was first seen (now, for a new one)."""
        if not entries:
            return {}
        key = f"{self.p}:beat:seen"
        pipe = self.r.pipeline(transaction=False)
        for entry in entries:
            pipe.hsetnx(key, entry, repr(now))
        pipe.hmget(key, list(entries))
        pipe.expire(key, TTL)
        *_, seen, _ = pipe.execute()
        return {e: float(s) if s else now for e, s in zip(entries, seen, strict=True)}

    def save(self, docs: Mapping[str, Mapping[str, Any]]) -> None:
        save_docs(self.r, f"{self.p}:beat:health", docs, 86400)

    def latest(self) -> dict[str, dict[str, Any]]:
        return load_docs(self.r, f"{self.p}:beat:health")

"""Alert delivery status per channel: did the last page reach anyone?

Keys ({p} = prefix):
  {p}:alerts:channels   HASH "{channel}|last" -> JSON of its last delivery, "{channel}|ok" and
                        "{channel}|failed" -> counts; TTL 7 days from the last delivery
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .base import Keys

STATUS_TTL = 7 * 86400


class Channels(Keys):
    def record(self, results: Sequence[tuple[str, bool, str | None, float]]) -> None:
        """(channel, ok, error, at) per delivery: last outcome and counts per channel."""
        if not results:
            return
        key = f"{self.p}:alerts:channels"
        pipe = self.r.pipeline(transaction=False)
        for channel, ok, error, at in results:
            last = {"ok": ok, "error": error, "at": at}
            if ok:
                pipe.hset(key, f"{channel}|last_ok", repr(at))
            else:
                pipe.hset(key, f"{channel}|last_error", json.dumps(last))
            pipe.hset(key, f"{channel}|last", json.dumps(last))
            pipe.hincrby(key, f"{channel}|{'ok' if ok else 'failed'}", 1)
        pipe.expire(key, STATUS_TTL)
        pipe.execute()

    def status(self) -> dict[str, dict[str, Any]]:
        """Per channel: last delivery {ok, error, at}, delivered and failed counts."""
        out: dict[str, dict[str, Any]] = {}
        for field_, raw in self.r.hgetall(f"{self.p}:alerts:channels").items():
            channel, _, what = field_.rpartition("|")
            doc = out.setdefault(channel, {"channel": channel, "delivered": 0, "failed": 0})
            if what in ("last", "last_error"):
                doc[what] = json.loads(raw)
            elif what == "last_ok":
                doc[what] = float(raw)
            elif what == "ok":
                doc["delivered"] = int(raw)
            elif what == "failed":
                doc["failed"] = int(raw)
        return out

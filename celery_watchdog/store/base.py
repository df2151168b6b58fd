"""What every key family shares: the client, the prefix, and how to match part of a key."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

import redis

LUA = Path(__file__).resolve().parent / "lua"
V = TypeVar("V")
WEEK_HOURS = 168
EPOCH_HOUR = 72  # 1970-01-01 00:00 UTC was a Thursday: hour 72 of its week (Monday = hour 0)
RUNNING_TTL = 7 * 86400  # a run's keys outlive any sane task; the snapshot keeps them alive


def connect(url: str, timeout: float = 2.0) -> redis.Redis:
    """A client that gives up fast: the watchdog must never make the watched work wait."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        decode_responses=True,
    )


def week_and_hour(hour: int) -> tuple[int, int]:
    """The week (since the Monday before the epoch) and the hour of that week of an hour since
    the epoch: how the per-hour-of-week keys ("what is normal at this hour") are named."""
    hours = hour + EPOCH_HOUR
    return hours // WEEK_HOURS, hours % WEEK_HOURS


def lua(name: str) -> str:
    return (LUA / name).read_text()


class Keys:
    """One key family: every key it reads or writes starts with ``{p}:``."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        # Typed loosely: redis-py's stubs cannot express decode_responses=True (str replies).
        self.r: Any = client
        self.p = prefix


class ForPeriod(Generic[V]):
    """Values that cannot change while a period lasts (the weeks before this hour, 5-minute
    buckets already closed): kept per key until the period changes, then forgotten."""

    def __init__(self) -> None:
        self._period: object = None
        self._values: dict[str, V] = {}

    def of(self, period: object) -> dict[str, V]:
        """The values kept for ``period`` (empty when it is a new one); fill it in place."""
        if period != self._period:
            self._period, self._values = period, {}
        return self._values


def glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def save_docs(client: Any, key: str, docs: Mapping[str, Mapping[str, Any]], ttl: int) -> None:
    """Replace the JSON documents kept in one hash (field -> document), with a TTL."""
    if not docs:
        return
    pipe = client.pipeline(transaction=True)
    pipe.delete(key)
    pipe.hset(key, mapping={k: json.dumps(d, default=str) for k, d in docs.items()})
    pipe.expire(key, ttl)
    pipe.execute()


def load_docs(client: Any, key: str) -> dict[str, dict[str, Any]]:
    """The JSON documents of one hash; a field that is not a JSON object is skipped."""
    out = {}
    for field, raw in client.hgetall(key).items():
        try:
            doc = json.loads(raw)
        except ValueError:
            continue
        if isinstance(doc, dict):
            out[field] = doc
    return out

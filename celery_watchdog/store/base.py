"""What every key family shares: the client, the prefix, and how to match part of a key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis

LUA = Path(__file__).resolve().parent / "lua"
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


def lua(name: str) -> str:
    return (LUA / name).read_text()


class Keys:
    """One key family: every key it reads or writes starts with ``{p}:``."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        # Typed loosely: redis-py's stubs cannot express decode_responses=True (str replies).
        self.r: Any = client
        self.p = prefix


def glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)

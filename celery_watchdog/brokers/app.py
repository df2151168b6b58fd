"""The queues of one Celery app, read from whichever broker it uses."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis

from . import amqp_queues, redis_queues
from .model import QueueDepth, failed
from .redis_layout import Layout, text

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://", "librabbitmq://")
_clients: dict[str, redis.Redis] = {}  # one client per broker URL and process
BOUND_MAX = 1000  # binding tables read at most (exchanges): each names the queues bound to it
BOUND_TTL = 30.0  # seconds the bound queues found are kept (per broker, per process)
_bound: dict[tuple[str, str], tuple[float, list[str]]] = {}


def read_app(
    app: Any, names: Sequence[str], *, management_url: str | None = None, sample: int = 50
) -> dict[str, QueueDepth]:
    """Depth, oldest messages and reserved count of each queue of ``app``'s broker."""
    url = str(app.conf.broker_url or "")
    if url.startswith(REDIS_SCHEMES):
        options = app.conf.broker_transport_options or {}
        return redis_queues.read(_client(url), names, options, sample=sample)
    if url.startswith(AMQP_SCHEMES):
        return amqp_queues.read(url, names, management_url=management_url)
    scheme = url.split("://", 1)[0] or "none"
    return {n: failed(n, f"queues of a {scheme!r} broker are not read") for n in names}


def _client(url: str) -> redis.Redis:
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(
            url, socket_timeout=2.0, socket_connect_timeout=2.0
        )
    return client


def bound_queues(app: Any) -> list[str]:
    """Queues the broker knows of, beyond those the app declares: on Redis, those in kombu's
    binding tables (a queue created on first publish is bound there), but not Celery's own
    (remote control, events, replies). Empty on error.

    Finding the tables is a SCAN of the broker's keyspace (80 ms with 100k keys), so what it
    found is kept for :data:`BOUND_TTL` seconds: a new queue shows up within that."""
    url = str(app.conf.broker_url or "")
    if not url.startswith(REDIS_SCHEMES):
        return []
    options = app.conf.broker_transport_options or {}
    key = (url, repr(sorted(options.items())) if isinstance(options, dict) else "")
    cached = _bound.get(key)
    if cached is not None and time.monotonic() - cached[0] < BOUND_TTL:
        return list(cached[1])
    try:
        layout = Layout.from_options(options)
        client = _client(url)
        match = layout.binding_table("*")
        found_keys = client.scan_iter(match=match, count=1000)
        tables = [k for _, k in zip(range(BOUND_MAX), found_keys, strict=False)]
        tables = [k for k in tables if not _celerys_own(text(k).rsplit(".binding.", 1)[-1])]
        pipe = client.pipeline(transaction=False)
        for key_ in tables:
            pipe.smembers(key_)
        found = set()
        for members in pipe.execute() if tables else []:
            for member in members:
                row = text(member).split(layout.sep)
                if len(row) == 3 and row[2] and not _celerys_own(row[2]):
                    found.add(row[2])
    except (redis.RedisError, OSError, TypeError, ValueError):
        return []
    _bound[key] = (time.monotonic(), sorted(found))
    return sorted(found)


def _celerys_own(name: str) -> bool:
    """Celery's remote-control, reply and event exchanges and queues: not work queues."""
    return name.endswith(".pidbox") or name.startswith("celeryev")

"""Reserved messages per queue on a Redis broker: the unacked hash, routed as kombu does.

kombu's ``QoS.append`` stores a delivered, unacked message in the ``unacked`` hash as
``[envelope, exchange, routing_key]`` (and its delivery time in ``unacked_index``); to
restore it, ``Channel._lookup`` routes it through the exchange's binding table
``_kombu.binding.<exchange>``, whose members are ``routing_key<sep>pattern<sep>queue``.
The hash is scanned, never loaded whole: at most :data:`RESERVED_SCAN` entries per call.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

import redis
from redis.client import NEVER_DECODE

from ..model.masking import one_line
from ..model.redis_errors import reason
from .redis_layout import Layout, failed_reply, pipeline, text

#: At most this many unacked entries are read per call: ``reserved`` is a lower bound beyond.
RESERVED_SCAN = 10_000
_SCAN_BATCH = 500
_MAX_EXCHANGES = 100


def reserved(
    client: redis.Redis, layout: Layout, names: list[str]
) -> tuple[dict[str, int], str | None]:
    """Unacked messages per queue, routed back the way kombu restores them."""
    routes: Counter[tuple[str, str]] = Counter()
    key = layout.prefix + layout.unacked_key
    cursor, scanned = 0, 0
    scan: Any = client.execute_command  # for NEVER_DECODE, as in redis_layout.pipeline
    try:
        while True:
            cursor, batch = scan("HSCAN", key, cursor, "COUNT", _SCAN_BATCH, **{NEVER_DECODE: []})
            for value in batch.values():
                route = _route(value)
                if route is not None:
                    routes[route] += 1
            scanned += len(batch)
            if not cursor or scanned >= RESERVED_SCAN:
                break
    except redis.ResponseError as exc:  # the key holds something else than a hash
        return {}, f"{one_line(key)}: {reason(exc)}"
    tables = _binding_tables(client, layout, sorted({ex for ex, _ in routes if ex}))
    counts = dict.fromkeys(names, 0)
    for (exchange, routing_key), count in routes.items():
        for queue in _lookup(tables, exchange, routing_key):
            if queue in counts:
                counts[queue] += count
    return counts, None


def _route(value: bytes | str) -> tuple[str, str] | None:
    try:
        entry = json.loads(value)
    except (TypeError, ValueError):
        return None
    if isinstance(entry, list) and len(entry) == 3:
        _, exchange, routing_key = entry
        if isinstance(exchange, str) and isinstance(routing_key, str):
            return exchange, routing_key
    return None


def _binding_tables(
    client: redis.Redis, layout: Layout, exchanges: list[str]
) -> dict[str, list[tuple[str, str, str]]]:
    exchanges = exchanges[:_MAX_EXCHANGES]
    keys = [layout.binding_table(exchange) for exchange in exchanges]
    tables: dict[str, list[tuple[str, str, str]]] = {}
    for exchange, members in zip(exchanges, pipeline(client, keys, "SMEMBERS"), strict=True):
        if failed_reply(members):
            continue  # kombu would not find this table either: nothing routes there
        rows = (text(member).split(layout.sep) for member in members)
        tables[exchange] = [(row[0], row[1], row[2]) for row in rows if len(row) == 3]
    return tables


def _lookup(tables: Mapping[str, list[tuple[str, str, str]]], exchange: str, rk: str) -> set[str]:
    """kombu's ``Channel._lookup``: the anonymous exchange routes to the queue named by the
    routing key; a direct binding matches the key exactly, a topic binding by its pattern
    (a fanout exchange is not told apart: its messages count only where the key matches)."""
    if not exchange:
        return {rk}
    return {
        queue for rkey, pattern, queue in tables.get(exchange, []) if _matches(rkey, pattern, rk)
    }


def _matches(rkey: str, pattern: str, routing_key: str) -> bool:
    if not pattern:
        return rkey == routing_key
    try:
        return re.match(pattern, routing_key) is not None
    except re.error:
        return False

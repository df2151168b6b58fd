"""Depth, oldest messages and reserved count of Celery queues on a Redis broker, read-only.

It mirrors kombu's Redis transport (``kombu/transport/redis.py``, 5.x) and never pops, acks
or rewrites anything:

- a queue is one list per priority step: ``Channel._q_for_pri`` maps step ``s`` to ``<queue>``
  when ``s`` is 0, else ``<queue><sep><s>``, and every key gets ``global_keyprefix``;
- ``_put`` LPUSHes and ``_get``/BRPOP pop from the right, trying the steps in order, so a
  list's oldest message is at index -1 and the last step's list is served last;
- a message is the JSON envelope ``{"body", "content-encoding", "content-type", "headers",
  "properties"}``; Celery's protocol-2 ``headers`` carry ``id`` and ``task``;
- a delivered, unacked message sits in the ``unacked`` hash (see :mod:`.redis_reserved`).

Round trips for any number of queues: one LLEN pipeline, one LRANGE pipeline over the
non-empty lists, an HSCAN of the unacked hash bounded to ``RESERVED_SCAN`` entries, and
one SMEMBERS pipeline for the exchanges those entries name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from ..model.masking import one_line
from ..model.redis_errors import TIMEOUT, UNREACHABLE, classify, reason
from .model import HeadMessage, QueueDepth, failed, stamp_of, unique
from .redis_layout import Layout, failed_reply, pipeline
from .redis_reserved import reserved as read_reserved


def read(
    client: redis.Redis,
    names: Sequence[str],
    transport_options: Mapping[str, Any],
    *,
    sample: int = 50,
) -> dict[str, QueueDepth]:
    """Depth, head, up to ``sample`` oldest messages and reserved count of each queue.

    ``transport_options`` is the app's ``broker_transport_options``. Never raises for a bad
    message, a key of the wrong type or a broker that is down: that goes into ``error``.

    The head is the oldest message over all priority lists: stamped messages (:data:`HEADER`)
    are ordered by their stamps and come before unstamped ones, whose age is unknown; among
    unstamped ones the list kombu serves last comes first (its messages wait while the
    others are drained), then the list's own order. ``oldest`` follows the same order.
    """
    names = unique(names)
    try:
        layout = Layout.from_options(transport_options or {})
    except (TypeError, ValueError) as exc:
        return {n: failed(n, f"unusable broker_transport_options: {reason(exc)}") for n in names}
    try:
        return _read(client, layout, names, max(sample, 0))
    except (redis.RedisError, OSError) as exc:
        kind = classify(exc)
        what = "unreachable" if kind in (UNREACHABLE, TIMEOUT) else f"error ({kind})"
        return {n: failed(n, f"redis broker {what}: {reason(exc)}") for n in names}


def _read(
    client: redis.Redis, layout: Layout, names: list[str], sample: int
) -> dict[str, QueueDepth]:
    lists = {name: layout.lists(name) for name in names}
    keys = list(dict.fromkeys(key for name in names for key in lists[name]))
    lengths = dict(zip(keys, pipeline(client, keys, "LLEN"), strict=True))
    waiting = [key for key in keys if isinstance(lengths[key], int) and lengths[key] > 0]
    take = max(sample, 1)  # LRANGE -n -1 ends with LINDEX -1: the head needs no other call
    entries = dict(zip(waiting, pipeline(client, waiting, "LRANGE", -take, -1), strict=True))
    reserved, reserved_error = read_reserved(client, layout, names)
    found: dict[str, QueueDepth] = {}
    for name in names:
        replies = [(key, lengths[key]) for key in lists[name]]
        replies += [(key, entries[key]) for key in lists[name] if key in entries]
        errors = [f"{one_line(key)}: {reason(v)}" for key, v in replies if failed_reply(v)]
        if reserved_error:
            errors.append(reserved_error)
        oldest = _oldest(lists[name], entries)
        found[name] = QueueDepth(
            name=name,
            messages=sum(n for key in lists[name] if isinstance(n := lengths[key], int)),
            reserved=None if reserved_error else reserved.get(name),
            consumers=None,  # Redis has no notion of a consumer; the workers' snapshots do
            head=oldest[0] if oldest else None,
            oldest=oldest[:sample],
            error="; ".join(dict.fromkeys(errors)) or None,
        )
    return found


def _oldest(keys: list[str], entries: Mapping[str, Any]) -> list[HeadMessage]:
    ranked: list[tuple[tuple[bool, float, int, int], HeadMessage]] = []
    for rank, key in enumerate(keys):
        sampled = entries.get(key)
        if not isinstance(sampled, list):
            continue
        for position, entry in enumerate(reversed(sampled)):  # index -1 (oldest) first
            message = parse_message(entry, key)
            if message is not None:
                stamp = message.published_at
                order = (stamp is None, stamp or 0.0, -rank, position)
                ranked.append((order, message))
    ranked.sort(key=lambda pair: pair[0])
    return [message for _, message in ranked]


def parse_message(entry: bytes | str, key: str) -> HeadMessage | None:
    """The envelope kombu LPUSHed, or ``None`` when it is not one (counted, never fatal)."""
    try:
        payload = json.loads(entry)
    except (TypeError, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    if not isinstance(payload, dict):
        return None
    headers = payload.get("headers") or {}
    properties = payload.get("properties")  # kombu's Message cannot do without it either
    if not isinstance(headers, dict) or not isinstance(properties, dict):
        return None
    task_id = _str(headers.get("id")) or _str(properties.get("correlation_id"))
    return HeadMessage(task_id, _str(headers.get("task")), stamp_of(headers), key, headers)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None

"""What a monitor learns about one broker queue: plain frozen data, no I/O.

Both transports fill the same shapes, so a caller never asks which broker it is reading:
it gets a :class:`QueueDepth` per queue name, with facts where the transport can tell and
``None`` where it cannot (Redis cannot count consumers; RabbitMQ cannot show a waiting
message without taking it off the queue).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..model.events import PUBLISHED_AT

#: The message header a producer stamps with its publish time (epoch seconds, a float).
#: Neither Celery's protocol 2 nor kombu's Redis envelope carries a publish time, so without
#: this stamp the age of a waiting message cannot be known.
HEADER = PUBLISHED_AT


@dataclass(frozen=True)
class HeadMessage:
    """One waiting message, as far as its envelope tells (the body is never decoded)."""

    task_id: str | None
    task_name: str | None
    #: The producer's stamp (:data:`HEADER`), in its clock; ``None`` when not stamped.
    published_at: float | None
    #: Where it waits: the Redis list key (``global_keyprefix`` included).
    priority_list: str
    headers: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class QueueDepth:
    """The facts about one queue; ``error`` says what could not be read (one line)."""

    name: str
    #: Messages waiting (ready) in the broker; 0 and meaningless when the broker was not read.
    messages: int
    #: Delivered to a consumer and not yet acknowledged (prefetched or running); ``None`` when
    #: the transport cannot tell (RabbitMQ without its management API).
    reserved: int | None
    #: Consumers the broker knows of; ``None`` on Redis (ask the workers' snapshots instead).
    consumers: int | None
    #: The oldest waiting message; ``None`` when empty or when the transport cannot peek.
    head: HeadMessage | None
    #: Up to ``sample`` oldest waiting messages, oldest first ("who waits").
    oldest: list[HeadMessage] = field(default_factory=list)
    #: Seconds since RabbitMQ's ``head_message_timestamp``, measured with the local clock.
    oldest_age_api: float | None = None
    error: str | None = None


def failed(name: str, error: str) -> QueueDepth:
    """A queue that could not be read at all."""
    return QueueDepth(name, 0, None, None, None, [], None, error)


def stamp_of(headers: Mapping[str, Any]) -> float | None:
    """The publish stamp in ``headers``, or ``None`` when absent or not a finite number."""
    value = headers.get(HEADER)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        stamp = float(value)
    except ValueError:
        return None
    return stamp if math.isfinite(stamp) else None


def unique(names: Iterable[str]) -> list[str]:
    """``names`` without repeats, in their order (a bare string is one name, not letters)."""
    if isinstance(names, str):
        names = [names]
    return list(dict.fromkeys(names))

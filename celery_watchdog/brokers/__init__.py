"""What the broker knows about Celery's queues: depth, oldest waiting messages, reserved
messages and consumers, read cheaply and without touching any message.

- :func:`redis_queues.read` for a Redis broker (the layout kombu's Redis transport uses);
- :func:`amqp_queues.read` for RabbitMQ (passive declares, the management API if given);
- :func:`queue_names` for the queues an app declares.

Each returns a :class:`QueueDepth` per queue name and never raises for a broker problem:
what could not be read is said in ``QueueDepth.error``.
"""

from __future__ import annotations

from . import amqp_queues, redis_queues
from .app import bound_queues, read_app
from .model import HEADER, HeadMessage, QueueDepth
from .names import queue_names

__all__ = [
    "HEADER", "HeadMessage", "QueueDepth", "amqp_queues", "bound_queues", "queue_names",
    "read_app",
    "redis_queues",
]  # fmt: skip

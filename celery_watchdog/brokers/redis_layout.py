"""Where kombu's Redis transport keeps a queue's messages, and one-round-trip reads of them.

Mirrors ``kombu/transport/redis.py`` (5.x): option names and defaults come from kombu's own
``Channel`` class, so a kombu that changed them would change them here too.
"""

from __future__ import annotations

from bisect import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis
from kombu.transport.redis import Channel as KombuChannel
from redis.client import NEVER_DECODE


@dataclass(frozen=True)
class Layout:
    """Where kombu keeps a queue's messages, from the broker transport options.

    The option names and defaults are kombu's own (``Channel.from_transport_options`` and the
    ``Channel`` class attributes), read from the installed kombu so they cannot drift.
    """

    steps: tuple[int, ...]
    sep: str
    prefix: str
    unacked_key: str

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Layout:
        steps = tuple(int(s) for s in options.get("priority_steps", KombuChannel.priority_steps))
        if not steps:
            raise ValueError("priority_steps is empty")
        return cls(
            steps=steps,
            sep=str(options.get("sep", KombuChannel.sep)),
            prefix=str(options.get("global_keyprefix", KombuChannel.global_keyprefix)),
            unacked_key=str(options.get("unacked_key", KombuChannel.unacked_key)),
        )

    def lists(self, queue: str) -> list[str]:
        """The queue's list keys, prefixed, in the order kombu serves them."""
        keys = (self._q_for_pri(queue, step) for step in self.steps)
        return [self.prefix + key for key in dict.fromkeys(keys)]

    def _q_for_pri(self, queue: str, pri: int) -> str:
        # kombu's Channel.priority and _q_for_pri, quirks included (bisect on the steps as
        # given, "if pri" so step 0 is the bare name).
        pri = self.steps[bisect(self.steps, pri) - 1]
        return f"{queue}{self.sep}{pri}" if pri else queue

    def binding_table(self, exchange: str) -> str:
        return self.prefix + KombuChannel.keyprefix_queue % (exchange,)


def failed_reply(reply: object) -> bool:
    return isinstance(reply, Exception)


def pipeline(client: redis.Redis, keys: list[str], command: str, *args: Any) -> list[Any]:
    """One round trip for ``command`` on every key; replies undecoded (a client that decodes
    would raise on one non-UTF-8 entry and lose the whole read); a command that fails
    (WRONGTYPE) comes back as its exception, in place."""
    if not keys:
        return []
    with client.pipeline(transaction=False) as pipe:
        # Only execute_command can pass NEVER_DECODE, and redis-py leaves it untyped.
        send: Any = pipe.execute_command
        for key in keys:
            send(command, key, *args, **{NEVER_DECODE: []})
        return list(pipe.execute(raise_on_error=False))


def text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value

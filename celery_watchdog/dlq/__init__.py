"""Dead-letter entries: what the monitor keeps of a run it removed, and their safe replay.

An entry is addressed by the original task id (a unique prefix is enough). Its fields:

- ``id``, ``name``, ``queue``: the original task id, task name and the queue it came from;
- ``message``: the original message as the worker's main process saved it (``task``, ``id``,
  ``body`` = base64 of the raw body as sent, ``content_type``, ``content_encoding``, ``headers`` =
  the full request dict, ``exchange``, ``routing_key``, ``priority``). Absent when the run was
  removed before the worker saved it (runs are saved after one snapshot interval): such an
  entry is shown but cannot be replayed. It holds the original (secret) arguments, so it is
  never part of a shown document, only of a replay or ``export --include-messages``;
- ``verdict``, ``reason``: the monitor's verdict (stuck, lost, poison…) and why, in words;
- ``args``, ``kwargs``: the redacted previews recorded for the run (safe to show);
- ``first_error``, ``last_error``, ``traceback``: the errors seen, the last one's traceback;
- ``deliveries``, ``worker``, ``pid``, ``step``, ``processed``, ``total``: where it was;
- ``started``, ``last_heartbeat``, ``dead_lettered_at``: Redis-server-clock timestamps;
- ``idempotent``: the task declared ``idempotent=True``;
- ``state``: ``dead``, or ``replayed`` once a replay published it (it then replays again only
  with ``force``); ``audit``: ``{at, action: "replayed", new_task_id, queue, forced}`` records.

A replay decodes the original body and publishes the same task with the original arguments
and links under a new task id (the monitor revoked the old one, so every worker would drop
it), with the header ``watchdog_replay_of`` naming the old id. A replay whose publish fails
leaves the entry exactly as it was.
"""

from __future__ import annotations

from .entry import DeadLetter, entries, export, get, make_entry, purge, resolve
from .replay import (
    HELD_HEADER,
    REPLAY_HEADER,
    ReplayResult,
    publish_original,
    replay,
    replay_candidates,
)

__all__ = [
    "HELD_HEADER", "REPLAY_HEADER", "DeadLetter", "ReplayResult", "entries", "export", "get",
    "make_entry", "publish_original", "purge", "replay", "replay_candidates", "resolve",
]  # fmt: skip

"""What a person asks of the cluster or does to it, shared by the CLI and the status server.

The CLI commands and the HTTP endpoints are two doors to the same room: the documents that
need the broker or the dead letters (:mod:`.documents`) and every change a person makes
(:mod:`.incidents`, :mod:`.pauses`, :mod:`.quarantine`, :mod:`.revoke`, :mod:`.dlq`) live here
once, so ``--json`` and the API never drift and a change is checked the same way whichever
door it came through. Pure documents (no Celery) are in :mod:`..views`.

A request that cannot be done as asked raises :class:`Refused` (the CLI prints it as one
line, the server answers it as a 4xx JSON error); an unknown id raises
:class:`..model.ids.TaskLookupError`.
"""

from __future__ import annotations

INVALID, CONFLICT = "invalid", "conflict"


class Refused(Exception):
    """Cannot be done as asked: ``kind`` is :data:`INVALID` (the request is wrong: fix it) or
    :data:`CONFLICT` (the thing is not in a state that allows it: already resolved…)."""

    def __init__(self, message: str, kind: str = CONFLICT) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind

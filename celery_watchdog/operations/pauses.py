"""A person pauses or resumes a task name or a queue; the store keeps the pause audit."""

from __future__ import annotations

from typing import Any

from ..model.humanize import parse_duration
from ..monitor import pauses
from ..runtime import Watchdog
from ..store import Store
from . import INVALID, Refused


def target(name: str | None, queue: str | None) -> str:
    """``task:NAME`` or ``queue:Q``: exactly one of them must be given."""
    if bool(name) == bool(queue):
        raise Refused("give a task name, or a queue (one of them)", INVALID)
    return f"task:{name}" if name else f"queue:{queue}"


def pause(
    wd: Watchdog, store: Store, what: str, *, by: str, for_: str | None = None, note: str = ""
) -> float | None:
    """Pause ``what`` (see :func:`target`), until ``for_`` from now (``30m``) or a resume;
    returns when it ends on its own (None: on resume)."""
    until = None
    if for_:
        try:
            until = store.now() + parse_duration(for_)
        except ValueError as exc:
            raise Refused(f"for: {exc}", INVALID) from exc
    pauses.pause(wd, store, what, by=by, until=until, note=note)
    return until


def resume(wd: Watchdog, store: Store, what: str, *, by: str) -> dict[str, Any]:
    """End a pause and publish what it held: ``{resumed, released, failed}``."""
    done = pauses.resume(wd, store, what, by=by)
    if not done["resumed"] and not done["released"]:
        raise Refused(f"{what} is not paused")
    return done

"""Resume, not restart: a run's cursor (``heartbeat(cursor=...)``) reaches its next attempt.

The cursor is JSON text kept with the run in Redis (the task document keeps the last one). It
travels to the next attempt in the message header ``watchdog_resume_from``:

- a Celery retry: the header is set on the running request, and ``Task.retry()`` copies the
  request's headers into the retry's message;
- a requeue by the monitor and a dead-letter replay: they publish the original message again
  with the header (read from the run's record or the entry);
- a redelivery of the same message (its child died): nothing could change the message, so
  the task document's cursor is read from Redis, once, when ``resume_from`` is first asked.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

from .. import faults
from ..dlq.replay import RESUME_HEADER
from . import signals

if TYPE_CHECKING:
    from ..runtime import Watchdog

MAX = 8000  # characters of JSON: a cursor says where the work got to, not the work itself
UNSET: Any = object()
_CACHE = "_watchdog_resume_from"


def dumps(value: Any, name: str) -> str | None:
    """The cursor as JSON text, or None (reported) when it is not JSON or too big."""
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        faults.report("cursor", exc, f"{name}: heartbeat(cursor=) must be JSON-able: {exc}")
        return None
    if len(text) > MAX:
        why = f"{name}: a cursor of {len(text)} characters is over {MAX}: not kept"
        faults.report("cursor", ValueError("too big"), why)
        return None
    return text


def carry(task: Any, text: str | None) -> None:
    """Put the cursor where ``Task.retry()`` copies it from: the running request's headers."""
    request = getattr(task, "request", None)
    if text is None or request is None:
        return
    try:
        original(request, signals.watchdog_of(task))  # what this attempt resumed from, before
        # its own cursor replaces it
        headers = getattr(request, "headers", None)
        request.headers = {**(headers if isinstance(headers, dict) else {}), RESUME_HEADER: text}
    except Exception as exc:  # an odd request object: the cursor is still kept in Redis
        faults.report("cursor", exc, f"cannot carry the cursor to a retry: {exc}")


def resume_from(task: Any) -> Any:
    """The cursor this attempt starts from (None on a first run); read once per attempt."""
    request = getattr(task, "request", None)
    if request is None:
        return None
    text = original(request, signals.watchdog_of(task))
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def original(request: Any, wd: Watchdog | None = None) -> str | None:
    cached = getattr(request, _CACHE, UNSET)
    if cached is not UNSET:
        return cached
    text = _header(request)
    if text is None and wd is not None and _again(request):
        try:
            text = wd.recorder.store.runs.cursor(request.id)
        except Exception as exc:  # Redis out: the work starts over rather than fail
            faults.report("cursor", exc, f"cannot read the cursor of {request.id}: {exc}")
    with contextlib.suppress(Exception):  # an odd request: asked again next time
        setattr(request, _CACHE, text)
    return text


def _header(request: Any) -> str | None:
    getter = getattr(request, "get", None)
    value = getter(RESUME_HEADER) if callable(getter) else None
    if value is None:
        headers = getattr(request, "headers", None)
        value = headers.get(RESUME_HEADER) if isinstance(headers, dict) else None
    return value if isinstance(value, str) else None


def _again(request: Any) -> bool:
    """Not a first attempt: a retry, or the same message delivered again."""
    delivery = getattr(request, "delivery_info", None) or {}
    return bool(getattr(request, "retries", 0) or delivery.get("redelivered"))

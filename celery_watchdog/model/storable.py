"""Make what a task controls storable before it leaves the process. Pure, no I/O.

Everything a task hands the watchdog (exception text, step names, heartbeat counters and
details, results) is hostile input: a lone surrogate (what ``surrogateescape`` decoding
produces) makes Redis's JSON decoder reject a whole batch, a NaN counter made every monitor
pass fail, a 10**400 counter becomes ``inf`` in Lua. Each event is cleaned field by field,
so one bad value costs that value, never the run, the batch or the pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# Lua numbers are doubles: integers beyond 2**53 lose precision, far beyond they become inf.
MAX_INT = 2**53
# Characters kept per field (the rest is cut, marked); anything else gets DEFAULT_LIMIT.
LIMITS: Mapping[str, int] = {
    "step": 200, "name": 200, "worker": 255, "queue": 255, "exception": 1000,
    "traceback": 8000, "details": 4000, "context": 4000, "result": 4000, "args": 4000,
    "kwargs": 4000, "stack": 200_000, "id": 255, "cursor": 8000,
}  # fmt: skip
DEFAULT_LIMIT = 2000


def text(value: object, limit: int = DEFAULT_LIMIT) -> str:
    """``value`` as a string Redis and JSON accept: lone surrogates escaped, cut at ``limit``."""
    try:
        s = value if isinstance(value, str) else str(value)
    except Exception:
        s = f"<{type(value).__name__} (str() failed)>"
    if len(s) > limit:
        s = s[: max(0, limit - 1)] + "…"
    return clean(s)


def clean(s: str) -> str:
    """Text Redis and JSON take as it is: lone surrogates shown as ``\\udce9``, no NUL bytes."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: keep it visible, as its escape
        s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    return s.replace("\x00", "") if "\x00" in s else s


def number(value: object) -> int | float | None:
    """A finite number Lua keeps exactly, else None (bool, NaN, ±inf, huge, not a number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -MAX_INT <= value <= MAX_INT else None
    if isinstance(value, float):
        return value if math.isfinite(value) and abs(value) <= MAX_INT else None
    return None


def count(value: object) -> int | None:
    """A progress counter (``processed``/``total``): a whole number >= 0, else None."""
    n = number(value)
    if n is None or n < 0:
        return None
    return int(n)


def value(key: str, v: Any) -> Any:
    if v is None:
        return v
    if isinstance(v, str) and v.isascii() and len(v) <= LIMITS.get(key, DEFAULT_LIMIT):
        return v  # the common case, decided cheaply
    if isinstance(v, (bool, int, float)):
        return v if isinstance(v, bool) else number(v)
    if isinstance(v, str):
        return text(v, LIMITS.get(key, DEFAULT_LIMIT))
    if isinstance(v, list) and key == "runtimes":
        return [n for n in v if number(n) is not None]
    return text(v, LIMITS.get(key, DEFAULT_LIMIT))


def event(e: dict[str, Any]) -> dict[str, Any]:
    """A flush event with every field storable (non-storable numbers dropped, text fixed)."""
    out = {}
    for key, v in e.items():
        cleaned = value(key, v)
        if cleaned is not None or v is None:
            out[key] = cleaned
    for key in ("processed", "total"):
        if key in out and out[key] is not None:
            out[key] = count(out[key])
    return out


def tree(value: Any, limit: int = DEFAULT_LIMIT) -> Any:
    """A JSON-shaped value (a worker's snapshot) with every string, key or value, storable:
    a task name with a lone surrogate must not make Redis's JSON decoder refuse it whole."""
    if isinstance(value, str):
        return value if value.isascii() and len(value) <= limit else text(value, limit)
    if isinstance(value, dict):
        return {tree(k, limit) if isinstance(k, str) else k: tree(v, limit)
                for k, v in value.items()}  # fmt: skip
    if isinstance(value, (list, tuple)):
        return [tree(v, limit) for v in value]
    if isinstance(value, float):
        return number(value)
    return value

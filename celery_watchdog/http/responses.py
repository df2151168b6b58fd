"""JSON out, and every error as JSON: ``{"error": "one line"}`` with a 4xx/5xx status, never
a traceback page (the server's log has the traceback of a real bug, nothing else does).

The JSON is strict (no NaN, which other parsers reject) and cannot become markup: ``<``, ``>``
and ``&`` are written as ``\\u003c``… escapes, which every JSON parser reads back unchanged, so
a task argument like ``<script>`` stays inert even where a page embeds the JSON.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..config import ConfigError
from ..model import redis_errors
from ..model.humanize import finite
from ..model.ids import TaskLookupError
from ..model.masking import one_line
from ..operations import INVALID, Refused

logger = logging.getLogger("celery_watchdog.http")
_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})
MAX_ERROR = 300


class JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        text = json.dumps(finite(content), default=str, allow_nan=False, ensure_ascii=True,
                          separators=(",", ":"))  # fmt: skip
        return text.translate(_ESCAPES).encode("ascii")


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSON:
    text = one_line(message)
    if len(text) > MAX_ERROR:
        text = text[: MAX_ERROR - 1] + "…"
    return JSON({"error": text}, status_code=status, headers=headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return error(exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def lookup_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TaskLookupError)
    return error(404, exc.message)


async def refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refused)
    return error(400 if exc.kind == INVALID else 409, exc.message)


async def redis_down(request: Request, exc: Exception) -> Response:
    """Redis unreachable, refusing, full or read-only: 503 and what to do, password masked."""
    return error(503, redis_errors.describe(exc))


async def config_error(request: Request, exc: Exception) -> Response:
    # A task's options are resolved on first use: a bad one surfaces on the request that
    # first judges that task. Its message names the option, never a secret value.
    return error(500, f"invalid configuration: {exc}")


async def internal_error(request: Request, exc: Exception) -> Response:
    logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error(500, "internal error (the server's log has the details)")


EXCEPTION_HANDLERS = {
    HTTPException: http_error,
    TaskLookupError: lookup_error,
    Refused: refused,
    redis.RedisError: redis_down,
    ConfigError: config_error,
    Exception: internal_error,
}

"""Reading request parameters as Flower does (``terminate=true``, ``limit=10``,
``received_start=2024-05-01 10:00``), with one-line 400s for junk instead of 500s."""

from __future__ import annotations

import datetime
import json
import math
import time
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request

from .security import read_form

MAX_TEXT = 2048  # a parameter longer than this is a mistake or an attack
_TRUE = ("y", "yes", "t", "true", "on", "1")
_FALSE = ("n", "no", "f", "false", "off", "0")
FLOWER_TIME = "%Y-%m-%d %H:%M"


def bad(message: str) -> HTTPException:
    return HTTPException(400, message)


def text(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if len(value) > MAX_TEXT:
        raise bad(f"{name}: longer than {MAX_TEXT} characters")
    return value


def flag(params: Mapping[str, str], name: str, default: bool = False) -> bool:
    """Flower's booleans (``strtobool``): true/false, yes/no, on/off, 1/0."""
    value = params.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise bad(f"{name}: expected true or false, got {value[:40]!r}")


def integer(params: Mapping[str, str], name: str, *, minimum: int = 0) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise bad(f"{name}: expected a whole number, got {value[:40]!r}") from None
    if number < minimum:
        raise bad(f"{name}: expected at least {minimum}")
    return number


def seconds(params: Mapping[str, str], name: str, *, maximum: float) -> float | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        raise bad(f"{name}: expected seconds, got {value[:40]!r}") from None
    if not math.isfinite(number) or number < 0:
        raise bad(f"{name}: expected seconds (0 or more)")
    return min(number, maximum)


def flower_time(params: Mapping[str, str], name: str) -> float | None:
    """``%Y-%m-%d %H:%M`` in the server's local time, as Flower reads it (``time.mktime``)."""
    value = params.get(name)
    if not value:
        return None
    try:
        parsed = datetime.datetime.strptime(value, FLOWER_TIME)
        return time.mktime(parsed.timetuple())
    except (ValueError, OverflowError):
        raise bad(f"{name}: expected {FLOWER_TIME} (e.g. 2024-05-01 13:30)") from None


async def post_params(request: Request) -> dict[str, str]:
    """A POST's parameters from its query string, form body or JSON object body (the page
    sends forms or JSON, scripts often only a query string); the body wins on a clash."""
    params = dict(request.query_params)
    form = await read_form(request)
    if form is not None:
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
        return params
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        body = await request.body()
        if body:
            try:
                doc = json.loads(body)
            except (ValueError, RecursionError):
                raise bad("the body is not valid JSON") from None
            if not isinstance(doc, dict):
                raise bad("the JSON body must be an object")
            params.update({str(k): _scalar(v) for k, v in doc.items() if v is not None})
    return params


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise bad("JSON body values must be strings, numbers or booleans")

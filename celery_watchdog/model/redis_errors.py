"""What went wrong with Redis, in words a person can act on.

"cannot reach Redis" was printed for every Redis error, so a wrong password, a full Redis
(``maxmemory``) and a read-only replica all read like a network problem. :func:`classify`
tells them apart from the exception alone (its type, redis-py's ``status_code``, or the
server's reply text when a Lua script or a pipeline wrapped it in a plain ``ResponseError``);
:func:`describe` says it in one masked line. Pure: no I/O.
"""

from __future__ import annotations

import re

import redis

from .masking import mask_url, mask_urls, one_line

UNREACHABLE, TIMEOUT, AUTH = "unreachable", "timeout", "auth"
OUT_OF_MEMORY, READ_ONLY, ERROR = "out_of_memory", "read_only", "error"
KINDS = (UNREACHABLE, TIMEOUT, AUTH, OUT_OF_MEMORY, READ_ONLY, ERROR)
REASON_CHARS = 200

_AUTH_TYPES: tuple[type[BaseException], ...] = (
    redis.AuthenticationError,
    redis.exceptions.AuthorizationError,
    redis.exceptions.AuthenticationWrongNumberOfArgsError,
    redis.exceptions.NoPermissionError,
)
# The server's reply codes and texts, for when they arrive inside another error's message
# (a script's redis.call error is a ResponseError "Error running script …: -OOM …").
_AUTH_TEXT = re.compile(
    r"\b(WRONGPASS|NOAUTH|NOPERM)\b|invalid password|invalid username-password pair"
    r"|Authentication required|called without any password configured"
)
_OOM_TEXT = re.compile(r"\bOOM command not allowed|used memory > 'maxmemory'")
_READ_ONLY_TEXT = re.compile(r"\bREADONLY\b|can't write against a read only replica")
# redis-py prefixes a pipeline's error with the failed command and its arguments: data.
_PIPELINE_PREFIX = re.compile(r"^Command # \d+ \(.*?\) of pipeline caused error: ", re.S)


def classify(exc: BaseException) -> str:
    """One of :data:`KINDS`; an exception chained to a Redis error counts as that error."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(seen) < 5 and current not in seen:
        seen.append(current)
        kind = _classify_one(current)
        if kind != ERROR:
            return kind
        current = current.__cause__ or current.__context__
    return ERROR


def _classify_one(exc: BaseException) -> str:
    text = _reply(exc)
    if isinstance(exc, _AUTH_TYPES) or _AUTH_TEXT.search(text):
        return AUTH
    if isinstance(exc, redis.exceptions.OutOfMemoryError) or _OOM_TEXT.search(text):
        return OUT_OF_MEMORY
    if isinstance(exc, redis.exceptions.ReadOnlyError) or _READ_ONLY_TEXT.search(text):
        return READ_ONLY
    # socket.timeout is TimeoutError; redis.TimeoutError is not a builtin one.
    if isinstance(exc, (redis.TimeoutError, TimeoutError)):
        return TIMEOUT
    if isinstance(exc, (redis.ConnectionError, ConnectionError)):
        return UNREACHABLE
    return ERROR


def _reply(exc: BaseException) -> str:
    """The server's reply as sent: redis-py strips the code (``WRONGPASS``) into status_code."""
    code = getattr(exc, "status_code", None)
    text = str(exc)
    return f"{code} {text}" if isinstance(code, str) and code else text


def reason(exc: BaseException) -> str:
    """The exception's own text, safe to print: one line, URLs masked, a pipeline's failed
    command (with its arguments) left out, cut to :data:`REASON_CHARS`."""
    try:
        text = one_line(mask_urls(_PIPELINE_PREFIX.sub("", str(exc)))).strip()
    except Exception:  # an exception whose str() raises still gets described by its type
        text = ""
    if len(text) > REASON_CHARS:
        text = text[: REASON_CHARS - 1] + "…"
    return text or type(exc).__name__


def describe(exc: BaseException, url: str | None = None) -> str:
    """One line: where, what went wrong, and what to do about it; the URL's password masked."""
    kind = classify(exc)
    at = f"Redis at {mask_url(url)}" if url else "Redis (watchdog_redis_url)"
    cls = type(exc).__name__
    if kind == UNREACHABLE:
        return (
            f"cannot reach {at}: {reason(exc)} ({cls}): check that Redis runs there and that "
            "watchdog_redis_url points to it"
        )
    if kind == TIMEOUT:
        return (
            f"{at} did not answer in time ({cls}): check the network to it, its load, "
            "and watchdog_redis_url"
        )
    if kind == AUTH:
        return _describe_auth(exc, at, cls)
    if kind == OUT_OF_MEMORY:
        return (
            f"{at} is out of memory (maxmemory reached): the watchdog cannot write; "
            "free memory or raise maxmemory"
        )
    if kind == READ_ONLY:
        return (
            f"{at} is a read-only replica (READONLY): the watchdog cannot write there; "
            "point watchdog_redis_url at the primary"
        )
    return f"{at} answered with an error ({cls}): {reason(exc)}"


def _describe_auth(exc: BaseException, at: str, cls: str) -> str:
    text = _reply(exc)
    if "NOPERM" in text or isinstance(exc, redis.exceptions.NoPermissionError):
        return (
            f"{at} does not let this user run a command the watchdog needs ({cls}: "
            f"{reason(exc)}): allow it in the user's ACL"
        )
    if "NOAUTH" in text or "Authentication required" in text:
        return f"{at} requires a password ({cls}): add it to watchdog_redis_url"
    if "without any password configured" in text or "no password is set" in text:
        return (
            f"{at} has no password set but watchdog_redis_url gives one ({cls}): "
            "remove it from the URL, or set requirepass on the server"
        )
    return f"{at} refused the password ({cls}): check watchdog_redis_url"

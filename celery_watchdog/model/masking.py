"""Showing a value in an error or a log: no password, no token, no second line, nothing huge.

Pure and never raising: used where something already went wrong (a bad setting, a Redis
error), so it must not become a second problem.
"""

from __future__ import annotations

import re

SHOWN_CHARS = 200  # a bad value is shown cut to this: it may be a whole pasted document


_SECRET_PARAM = re.compile(r"pass|pwd|token|secret|key|sig|auth|cred", re.I)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def mask_url(url: str) -> str:
    """``url`` with its password and tokens replaced by ``***``; scheme, user, host, port,
    path (db) and the other query parameters kept. Pure; never raises."""
    try:
        return _mask_url(url)
    except Exception:  # a URL too odd to take apart is hidden whole rather than shown raw
        return "***"


def _mask_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    # The userinfo ends at the last "@" before the path and before the first "=": a password
    # may hold "?" or "#" unencoded, while the query may hold e-mail addresses (smtp ?to=a@b).
    head = rest.split("/", 1)[0]
    at = head.rfind("@", 0, head.find("=") if "=" in head else len(head))
    userinfo, rest = (head[:at], rest[at + 1 :]) if at >= 0 else ("", rest)
    if ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    cut = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    host, tail = rest[:cut], rest[cut:]
    tail, hash_sign, fragment = tail.partition("#")
    path, question, query = tail.partition("?")
    path = _mask_path(scheme.lower(), path)
    query = "&".join(_mask_param(pair) for pair in query.split("&")) if query else query
    fragment = "***" if fragment else fragment
    netloc = f"{userinfo}@{host}" if at >= 0 else host
    return f"{scheme}://{netloc}{path}{question}{query}{hash_sign}{fragment}"


def _mask_path(scheme: str, path: str) -> str:
    """Webhook URLs carry their token in the path (Slack: ``/services/T…/B…/<token>``)."""
    segments = path.split("/")
    if scheme.startswith("slack+") and len([s for s in segments if s]) >= 2:
        last = max(i for i, s in enumerate(segments) if s)
        segments[last] = "***"
    elif scheme.startswith("webhook+"):
        segments = ["***" if _looks_like_token(s) else s for s in segments]
    return "/".join(segments)


def _looks_like_token(segment: str) -> bool:
    return (
        len(segment) >= 16
        and any(c.isdigit() for c in segment)
        and any(c.isalpha() for c in segment)
    )


def _mask_param(pair: str) -> str:
    name, eq, value = pair.partition("=")
    return f"{name}=***" if eq and value and _SECRET_PARAM.search(name) else pair


def mask_urls(text: str) -> str:
    """``text`` with every URL in it passed through :func:`mask_url`."""
    return _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)


def one_line(text: str) -> str:
    """Line breaks become spaces and other control characters escapes: an error is one line,
    and a value cannot move the cursor or retitle the terminal that prints it."""
    text = re.sub(r"[\r\n\t]+", " ", text)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)


def shown_value(value: object, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` as an error may show it: URLs masked, one line, at most ``limit``."""
    try:
        text = one_line(mask_urls(repr(value)))
    except Exception:  # a value whose repr raises is still refused, just not shown
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""The one outbound HTTP helper every channel uses, and the error that says if a retry helps.

A retry helps when the receiver or the network failed (5xx, 408, 429, timeouts, refused or
reset connections) and cannot help when the request itself is wrong (any other 4xx).
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from dataclasses import dataclass

USER_AGENT = "celery-watchdog"


class DeliveryError(Exception):
    """A channel could not deliver an alert; ``retryable`` says whether trying again can help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes


def post(
    url: str, body: bytes, *, headers: dict[str, str] | None = None, timeout: float = 10.0
) -> Response:
    """POST ``body``; a 2xx answer returns, anything else raises :class:`DeliveryError`."""
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("User-Agent", USER_AGENT)
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    where = shown(url)
    try:
        with urllib.request.urlopen(request, timeout=max(0.01, timeout)) as answer:
            return Response(answer.status, answer.read(65536))
    except urllib.error.HTTPError as exc:
        detail = _read(exc)
        retryable = exc.code >= 500 or exc.code in (408, 429)
        raise DeliveryError(f"{where} answered {exc.code}{detail}", retryable=retryable) from None
    except urllib.error.URLError as exc:
        raise DeliveryError(f"{where} unreachable: {exc.reason}", retryable=True) from None
    except TimeoutError:
        raise DeliveryError(f"{where} timed out after {timeout:.1f} s", retryable=True) from None
    except (ConnectionError, OSError) as exc:
        raise DeliveryError(f"{where} failed: {exc}", retryable=True) from None


def _read(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read(300).decode("utf-8", "replace").strip()
    except Exception:
        return ""
    text = " ".join(text.split())  # an HTML error page, on one line
    return f": {text}" if text else ""


def shown(url: str) -> str:
    """A URL as it may appear in errors, logs and status: scheme and host, no token or secret."""
    # Webhook URLs carry their token in the path or query, mail URLs a password: never echo.
    scheme, sep, rest = url.partition("://")
    if not sep:
        # Not a URL we can take apart ("smtp:user:pw@host", a typo): its first word only.
        head = url.split(":", 1)[0].split("@", 1)[0][:40]
        return head + ("…" if len(head) < len(url) else "")
    host = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}" + ("/…" if rest[len(host) :].strip("/") else "")


def channel_name(url: str) -> str:
    """A channel's name: :func:`shown`, plus a short digest of the hidden part, so that two
    webhooks on one host stay apart in ``status`` without showing their tokens."""
    name = shown(url)
    if name.endswith("/…"):
        name += hashlib.sha256(url.encode()).hexdigest()[:6]
    return name

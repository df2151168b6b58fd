"""``webhook+https://…``: POST the alert's JSON body, signed when the URL has ``?secret=``.

The signature is ``X-Watchdog-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>``,
the scheme GitHub uses, so receivers can reuse their verification code. The secret is taken
out of the URL before anything is sent or shown.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .. import http
from ..http import channel_name, shown
from ..model import Alert

MAX_FIELD_CHARS = 4000
MAX_TEXT_CHARS = 8000


def split_secret(url: str, prefix: str) -> tuple[str, str | None]:
    """``prefix+https://h/p?secret=s&x=1`` -> (``https://h/p?x=1``, ``s``)."""
    target = url[len(prefix) :]
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"alert channel {shown(url)!r} is not valid: expected {prefix}https://host/…"
        )
    query = parse_qsl(parts.query, keep_blank_values=True)
    secret = next((v for k, v in query if k == "secret"), None)
    rest = urlencode([(k, v) for k, v in query if k != "secret"])
    return urlunsplit(parts._replace(query=rest)), secret


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookChannel:
    def __init__(self, url: str) -> None:
        self.url, self.secret = split_secret(url, "webhook+")
        self.name = channel_name(url)

    def send(self, alert: Alert, timeout: float = 10.0) -> None:
        # DESIGN §2's fields, plus ``text``: the same facts as lines a person reads, for
        # receivers that only forward a message.
        doc = {**alert.as_dict(max_chars=MAX_FIELD_CHARS), "text": alert.text(MAX_TEXT_CHARS)}
        body = json.dumps(doc, default=str).encode()
        headers = {"Content-Type": "application/json"}
        if self.secret:
            headers["X-Watchdog-Signature"] = sign(self.secret, body)
        http.post(self.url, body, headers=headers, timeout=timeout)

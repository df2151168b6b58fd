"""Who may read and who may change: tokens, the page's session cookie, CSRF, headers.

Safe by default (issue 14, item 6):

- Reads are open unless ``watchdog_http_read_token`` is set; then they need that token, the
  operator's (``Authorization: Bearer …``), or a session cookie from ``POST /login``.
- Every change needs the operator token (``watchdog_http_token``) as a Bearer token, or an
  operator session cookie *plus* its CSRF token (header ``X-CSRF-Token`` or form field
  ``csrf_token``): a cookie alone is what a cross-site form would carry, so it is never
  enough. With no operator token configured, and under ``--read-only``, every change is
  refused with 403.
- Tokens are compared with :func:`hmac.compare_digest` (constant time).

Sessions are stateless, so replicas need no shared session store: the cookie carries its role,
a random id and when it was issued, signed with a key derived from the configured tokens
(rotating a token ends every session). The CSRF token is an HMAC of the session id with the
same key (double submit, bound to the session, nothing stored).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Any

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .context import context_of

SESSION_COOKIE = "watchdog_session"
SESSION_SECONDS = 12 * 3600  # a working day; then log in again
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
OPERATOR, READER = "operator", "read"
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


# -- tokens ----------------------------------------------------------------------------------


def _tokens(conn: HTTPConnection) -> tuple[str | None, str | None]:
    settings = context_of(conn).wd.settings
    return settings.http_token, settings.http_read_token


def _same(given: str, expected: str | None) -> bool:
    """Constant time whatever the lengths (compare_digest on bytes: any character works)."""
    if expected is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


def _bearer(conn: HTTPConnection) -> str | None:
    """The token of ``Authorization: Bearer <token>``, or None when none is presented."""
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": 'Bearer realm="watchdog"'})


# -- sessions --------------------------------------------------------------------------------


def _key(conn: HTTPConnection) -> bytes | None:
    """The signing key: derived from the tokens, so every replica has it and rotating a
    token ends every session. None when no token is set (nobody can log in)."""
    operator, reader = _tokens(conn)
    if operator is None and reader is None:
        return None
    material = f"celery-watchdog session v1\0{operator or ''}\0{reader or ''}"
    return hashlib.sha256(material.encode("utf-8")).digest()


def _sign(key: bytes, text: str) -> str:
    digest = hmac.new(key, text.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def new_session(conn: HTTPConnection, role: str) -> str:
    """A signed cookie value ``role.id.issued.signature`` for a fresh session."""
    key = _key(conn)
    assert key is not None and role in (OPERATOR, READER)
    body = f"{role}.{secrets.token_urlsafe(16)}.{int(time.time())}"
    return f"{body}.{_sign(key, body)}"


def _session(conn: HTTPConnection) -> tuple[str, str] | None:
    """``(role, session id)`` of a valid, unexpired session cookie, else None."""
    raw = conn.cookies.get(SESSION_COOKIE)
    key = _key(conn)
    if not raw or key is None or not raw.isascii():
        return None
    body, _, signature = raw.rpartition(".")
    if not hmac.compare_digest(signature.encode("ascii"), _sign(key, body).encode("ascii")):
        return None
    role, _, rest = body.partition(".")
    sid, _, issued = rest.partition(".")
    if role not in (OPERATOR, READER) or not sid or not issued.isdigit():
        return None
    if not 0 <= time.time() - int(issued) < SESSION_SECONDS:
        return None
    # A session outlives no change of role: an operator session needs an operator token now.
    operator, _reader = _tokens(conn)
    if role == OPERATOR and operator is None:
        return None
    return role, sid


def session_role(conn: HTTPConnection) -> str | None:
    """``operator`` or ``read`` for a valid session cookie, else None."""
    session = _session(conn)
    return session[0] if session else None


def csrf_token(conn: HTTPConnection) -> str:
    """The CSRF token the page embeds (``<meta name="csrf-token">``) and sends back in
    ``X-CSRF-Token``; empty when there is no session (then there is nothing to protect)."""
    session, key = _session(conn), _key(conn)
    if session is None or key is None:
        return ""
    return _sign(key, f"csrf.{session[1]}")


def _csrf_ok(conn: HTTPConnection, form: FormData | None) -> bool:
    expected = csrf_token(conn)
    given = conn.headers.get(CSRF_HEADER)
    if given is None and form is not None:
        value = form.get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    return bool(expected) and given is not None and _same(given, expected)


async def read_form(request: Request) -> FormData | None:
    """Parse a form body once and keep it for :func:`require_operator` (which must stay a
    plain function) to find the ``csrf_token`` field in; None when the body is no form."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in _FORM_TYPES:
        return None
    form = await request.form()
    request.state.form = form
    return form


# -- the checks ------------------------------------------------------------------------------


def _client(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else "unknown"


def require_read(conn: HTTPConnection) -> None:
    """401 when a read token is set and neither it, the operator token nor a session is
    presented; reads are open when no read token is set."""
    operator, reader = _tokens(conn)
    if reader is None:
        return
    token = _bearer(conn)
    if token is not None:
        if _same(token, reader) or _same(token, operator):
            return
        raise _unauthorized("wrong token")
    if _session(conn) is not None:
        return
    raise _unauthorized("a token is required: Authorization: Bearer <watchdog_http_read_token>")


def require_operator(conn: HTTPConnection) -> str:
    """Allow a change or raise: 403 under ``--read-only`` or without an operator token set;
    401 without credentials or with a wrong token; 403 for the read token, a read session,
    or an operator session without its CSRF token. Returns who acted, for the audit line."""
    ctx = context_of(conn)
    if ctx.read_only:
        raise HTTPException(403, "this server is read-only (--read-only): no changes")
    operator, reader = _tokens(conn)
    if operator is None:
        raise HTTPException(403, "changes are disabled: watchdog_http_token is not set")
    token = _bearer(conn)
    if token is not None:
        if _same(token, operator):
            return f"operator token from {_client(conn)}"
        if _same(token, reader):
            raise HTTPException(403, "the read token cannot change anything")
        raise _unauthorized("wrong token")
    session = _session(conn)
    if session is None:
        raise _unauthorized("the operator token is required: Authorization: Bearer <token>")
    role, sid = session
    if role != OPERATOR:
        raise HTTPException(403, "this session may only read: log in with the operator token")
    form = getattr(conn.state, "form", None)
    if not _csrf_ok(conn, form if isinstance(form, FormData) else None):
        raise HTTPException(403, "missing or wrong CSRF token (X-CSRF-Token)")
    return f"operator session {sid[:8]} from {_client(conn)}"


def is_operator(conn: HTTPConnection) -> bool:
    """Whether this visitor may change things (the page shows its action buttons only then);
    a session still needs its CSRF token on each change."""
    ctx = context_of(conn)
    operator, _reader = _tokens(conn)
    if ctx.read_only or operator is None:
        return False
    token = _bearer(conn)
    if token is not None:
        return _same(token, operator)
    session = _session(conn)
    return session is not None and session[0] == OPERATOR


def role_for_token(conn: HTTPConnection, token: str) -> str | None:
    """The session role a login token grants: operator, read, or None for a wrong one."""
    operator, reader = _tokens(conn)
    if _same(token, operator):
        return OPERATOR
    if _same(token, reader):
        return READER
    return None


# -- headers ---------------------------------------------------------------------------------


class SecurityHeaders:
    """Sets :data:`SECURITY_HEADERS` on every response (a pure ASGI middleware: streaming
    and errors pass through unchanged), and ``Cache-Control: no-store`` on all but static
    assets, since every answer is live data, some of it behind a token."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                if not static and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

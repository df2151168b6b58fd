"""``POST /login`` (form field ``token``) and ``POST /logout``: the page's session cookie.

The cookie is HttpOnly (scripts cannot read it), SameSite=Strict (no other site's page can
send it) and Secure when the request came over https; see :mod:`.security` for what it holds.
A wrong token answers 401 after a short pause, which makes guessing slow without any state.
"""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from .context import context_of
from .responses import JSON
from .security import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    csrf_token,
    is_operator,
    new_session,
    read_form,
    role_for_token,
    session_role,
)

WRONG_TOKEN_PAUSE = 0.5  # seconds


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


async def login(request: Request) -> Response:
    form = await read_form(request)
    token = form.get("token") if form is not None else None
    if not isinstance(token, str) or not token:
        raise HTTPException(400, "the form field 'token' is required")
    role = role_for_token(request, token)
    if role is None:
        await asyncio.sleep(WRONG_TOKEN_PAUSE)
        raise HTTPException(401, "wrong token")
    response = RedirectResponse(_home(request), status_code=303)
    response.set_cookie(
        SESSION_COOKIE, new_session(request, role), max_age=SESSION_SECONDS, path="/",
        httponly=True, samesite="strict", secure=_secure(request),
    )  # fmt: skip
    return response


async def logout(request: Request) -> Response:
    response = RedirectResponse(_home(request), status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=_secure(request))  # fmt: skip
    return response


def whoami(request: Request) -> Response:
    """What this visitor may do, and the CSRF token its changes must carry (a script that
    logged in with a form reads it here; the page has it in its meta tag). Same-origin only:
    no CORS header lets another site read it."""
    return JSON({
        "role": session_role(request), "operator": is_operator(request),
        "read_only": context_of(request).read_only, "csrf_token": csrf_token(request),
    })  # fmt: skip


def session_routes() -> list[BaseRoute]:
    return [
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/api/watchdog/session", whoami, methods=["GET"]),
    ]


def _home(request: Request) -> str:
    """The page, under the path a proxy mounts the server at (``root_path``)."""
    return str(request.scope.get("root_path") or "").rstrip("/") + "/"

"""The page: one screen product, support and ops read in ten seconds, and a page per task.

- ``GET /`` — what needs attention now (incidents with acknowledge and snooze), queues, runs in
  trouble with where they wait and their progress, dead letters with replay, job types,
  schedules, pauses (:func:`..views.page.page_doc`).
- ``GET /task/{id}`` — one task's whole story (:func:`..views.story.task_story_doc`).
- ``GET /api/watchdog/page`` — the same data as JSON, for scripts.
- ``/static/…`` — the page's one stylesheet and one script (no CDN, nothing inline: the
  Content-Security-Policy allows scripts and styles from this server only). They hold no
  data, so they are served without a token: the sign-in form needs its stylesheet too.

Every value reaches the HTML through Jinja's autoescape, and through :func:`_shown` first:
control characters and lone surrogates a task put in a text show as escapes (as in the CLI).
The script refreshes the page in place: it fetches the same URL and patches what changed.
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

import jinja2
import redis
from markupsafe import Markup
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ..alerts import wording
from ..model import redis_errors
from ..model.humanize import ago, duration, percent, printable
from ..model.ids import TaskLookupError
from ..views.page import page_doc
from ..views.story import task_story_doc
from . import charts, security
from .context import context_of
from .responses import JSON

PACKAGE = "celery_watchdog.http"
REFRESH_SECONDS = 5  # how often the script fetches the page again (it says so in the footer)


# Health and states in the page's words (a badge always says its word: colour is never the
# only signal).
WORDS = {
    "ok": "ok", "slow": "slow", "stuck": "stuck", "overtime": "over its time limit",
    "lost": "lost", "poison": "keeps crashing", "duplicate": "running twice",
    "backlog": "backlog", "stalled": "stalled", "paused": "paused", "empty": "empty",
    "late": "late", "missed": "missed", "skipped": "skipped", "dead": "set aside",
    "open": "open", "acknowledged": "acknowledged", "snoozed": "snoozed",
    "resolved": "resolved", "replayed": "replayed", "failing": "failing",
    "started": "running", "success": "succeeded", "failure": "failed", "revoked": "stopped",
    "retry": "retrying", "pending": "waiting", "received": "received",
    "P1": "P1 urgent", "P2": "P2 soon", "P3": "P3 when convenient",
}  # fmt: skip


# -- rendering -------------------------------------------------------------------------------


def fraction(processed: Any, total: Any) -> dict[str, int] | None:
    """What a ``<progress>`` bar shows: done of total (clamped: a task's counters are hostile
    input) and the percentage, rounded down (full only when done); None without a total."""
    done, whole = _number(processed), _number(total)
    if done is None or whole is None or whole <= 0:
        return None
    value = int(min(max(done, 0.0), whole))
    return {"value": value, "max": int(whole), "percent": int(100 * value // whole)}


def _shown(value: Any) -> Any:
    """What a ``{{ … }}`` prints: text with terminal controls and lone surrogates escaped
    (an encoder would fail on the latter), None as nothing; markup from macros untouched."""
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return value


def _iso(ts: Any) -> str:
    if not isinstance(ts, (int, float)) or not math.isfinite(ts):
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _utc(ts: Any) -> str:
    if not isinstance(ts, (int, float)) or not math.isfinite(ts):
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(PACKAGE, "templates"),
        autoescape=jinja2.select_autoescape(("html", "svg"), default=True),
        finalize=_shown, trim_blocks=True, lstrip_blocks=True,
    )  # fmt: skip
    env.filters.update(
        iso=_iso, utc=_utc, duration=lambda s: duration(_number(s)),
        percent=lambda r: percent(_number(r)), number=_number,
        ago=lambda ts, now: ago(_number(ts), now) if _number(ts) is not None else "never",
    )  # fmt: skip
    env.filters.update(who=wording.who, done=wording.done)
    env.globals.update(age_chart=charts.age_chart, fraction=fraction, words=WORDS,
                       refresh_seconds=REFRESH_SECONDS)  # fmt: skip
    return env


@functools.cache
def _asset_version(name: str) -> str:
    """A digest of a static file: its URL changes when it does, so no browser keeps an old one."""
    data = resources.files(PACKAGE).joinpath("static").joinpath(name).read_bytes()
    return hashlib.sha256(data).hexdigest()[:12]


def _render(
    request: Request, template: str, status_code: int = 200,
    headers: Mapping[str, str] | None = None, **values: Any,
) -> Response:  # fmt: skip
    ctx = context_of(request)
    root = str(request.scope.get("root_path", "")).rstrip("/")
    settings = ctx.wd.settings
    base = {
        "root": root,
        "asset": lambda name: f"{root}/static/{name}?v={_asset_version(name)}",
        "csrf": security.csrf_token(request),
        "operator": security.is_operator(request),
        # A cookie (perhaps expired): offer to sign out. "Signed in to read" is only said where
        # reading needs a token, since there the read check has just accepted the session.
        "signed_in": bool(request.cookies.get(security.SESSION_COOKIE)),
        "reads_need_token": settings.http_read_token is not None,
        "read_only": ctx.read_only,
        "can_sign_in": settings.http_token is not None and not ctx.read_only,
        "app_name": ctx.app.main or "Celery",
    }
    html = _environment().get_template(template).render(**base, **values)
    return HTMLResponse(html, status_code=status_code, headers=headers)


def _store_down(request: Request, exc: Exception) -> Response:
    """503 with what is wrong with the watchdog's Redis, in one masked line."""
    why = redis_errors.describe(exc, context_of(request).wd.settings.redis_url)
    return _render(request, "error.html", 503, title="The watchdog's records cannot be read",
                   message=why, now=None)  # fmt: skip


def _html(endpoint: Callable[[Request], Response]) -> Callable[[Request], Response]:
    """An HTML endpoint: the read check first (a person without a session gets the sign-in
    form, status 401), and an unreachable Redis as a 503 page that says why. (The JSON
    endpoint leaves both to the server's JSON error handlers.)"""

    @functools.wraps(endpoint)
    def guarded(request: Request) -> Response:
        try:
            security.require_read(request)
        except HTTPException as exc:
            if exc.status_code != 401:
                raise
            return _render(request, "signin.html", 401, exc.headers, now=None)
        try:
            return endpoint(request)
        except redis.RedisError as exc:
            return _store_down(request, exc)

    return guarded


# -- endpoints -------------------------------------------------------------------------------


@_html
def page(request: Request) -> Response:
    ctx = context_of(request)
    store = ctx.store()
    now = store.now()
    return _render(request, "index.html", doc=page_doc(store, ctx.wd, now), now=now)


@_html
def task_page(request: Request) -> Response:
    ctx = context_of(request)
    store = ctx.store()
    now = store.now()
    wanted = str(request.path_params["task_id"])
    try:
        story = task_story_doc(store, ctx.wd, wanted, now)
    except TaskLookupError as exc:
        return _render(request, "error.html", 404, title="No such task", message=str(exc),
                       now=now)  # fmt: skip
    return _render(request, "task.html", story=story, now=now)


def page_json(request: Request) -> Response:
    security.require_read(request)
    ctx = context_of(request)
    store = ctx.store()
    return JSON(page_doc(store, ctx.wd, store.now()))


def page_routes() -> list[BaseRoute]:
    """``/``, ``/task/{task_id}``, ``/api/watchdog/page`` and the page's ``/static`` files."""
    return [
        Route("/", page, methods=["GET"], name="page"),
        Route("/task/{task_id}", task_page, methods=["GET"], name="task_page"),
        Route("/api/watchdog/page", page_json, methods=["GET"], name="page_json"),
        Mount("/static", app=StaticFiles(packages=[(PACKAGE, "static")]), name="static"),
    ]

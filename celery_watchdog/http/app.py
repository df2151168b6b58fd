"""The status server's app factory: :func:`create_app`.

``celery -A proj watchdog serve`` calls it with the app of ``-A``. Any ASGI server can call
it too, naming the app in the environment::

    CELERY_WATCHDOG_APP=proj uvicorn --factory celery_watchdog.http.app:create_app
    # gunicorn -k uvicorn.workers.UvicornWorker 'celery_watchdog.http.app:create_app()'

``CELERY_WATCHDOG_APP`` takes what ``celery -A`` takes (``proj``, ``proj.celery:app``);
``CELERY_WATCHDOG_READ_ONLY=true`` refuses every change. The server keeps no state: every
answer is read from Redis, so any number of replicas behind a load balancer agree. A bad
setting stops start-up with a ConfigError naming it, as the CLI does.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.app.utils import find_app
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from ..config import ConfigError
from ..operations.opening import open_runtime
from .api_flower import flower_routes
from .api_watchdog import watchdog_routes
from .context import ServerContext
from .health import health_routes
from .metrics import metrics_routes
from .page import page_routes
from .responses import EXCEPTION_HANDLERS
from .security import SecurityHeaders
from .session import session_routes

APP_ENV = "CELERY_WATCHDOG_APP"
READ_ONLY_ENV = "CELERY_WATCHDOG_READ_ONLY"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def create_app(app: Celery | None = None, *, read_only: bool = False) -> Starlette:
    """The ASGI app serving ``app`` (default: the app named by ``CELERY_WATCHDOG_APP``);
    ``read_only`` (or ``CELERY_WATCHDOG_READ_ONLY``) refuses every change with 403."""
    if app is None:
        app = load_app(os.environ.get(APP_ENV))
    read_only = read_only or _env_flag(READ_ONLY_ENV)
    wd = open_runtime(app)
    if wd is None:
        raise ConfigError("watchdog_enabled", False, "True: the status server serves the watchdog")
    routes: list[BaseRoute] = [
        *health_routes(), *session_routes(), *flower_routes(), *watchdog_routes(),
        *metrics_routes(), *page_routes(),
    ]  # fmt: skip
    server = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    server.state.ctx = ServerContext(app=app, wd=wd, read_only=read_only)
    return server


def load_app(name: str | None) -> Celery:
    """The Celery app a ``celery -A`` argument names, found the way ``celery -A`` finds it."""
    if not name or not name.strip():
        raise ConfigError(APP_ENV, name, "the Celery app to serve, as celery -A takes it "
                          "(proj, or proj.celery:app)")  # fmt: skip
    try:
        found = find_app(name.strip())
    except (ImportError, AttributeError) as exc:
        raise ConfigError(APP_ENV, name, f"an importable Celery app ({type(exc).__name__}: "
                          f"{exc})") from exc  # fmt: skip
    if not isinstance(found, Celery):
        raise ConfigError(APP_ENV, name, "the name of a Celery app instance")
    return found


def _env_flag(name: str) -> bool:
    raw = os.environ.get(name, "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(name, raw, "true or false")

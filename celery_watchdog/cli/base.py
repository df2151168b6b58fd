"""``celery -A proj watchdog …``: the status commands (entry point group ``celery.commands``).

Celery loads CLI plugins before it parses ``-A`` (DESIGN §4), so nothing here imports or
builds the user's app at import time: the app is ``ctx.obj.app`` when a command runs.
Read commands print aligned text for people, or with ``--json`` the Flower-shaped documents
of :mod:`..views`. Errors a person can fix (a bad setting, Redis unreachable, refusing the
password, full or read-only, an unknown task id) print one line saying what to do and exit
non-zero; never a traceback. No URL is printed with its password.

Other command modules add their commands to :data:`watchdog` and open the runtime with
:func:`open_session`, which gives them the same error handling.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click
import redis
from celery.bin.base import CeleryCommand, CeleryOption

from ..config import ConfigError
from ..model import redis_errors
from ..model.humanize import finite
from ..model.masking import mask_url
from ..operations import INVALID, Refused
from ..operations.opening import open_runtime
from ..runtime import Watchdog
from ..store import Store
from ..views import documents as views
from ..views.status import status_doc
from . import render

F = TypeVar("F", bound=Callable[..., Any])
HUMAN_ROWS = 50  # `tasks` without --limit shows this many rows to people (JSON gets all)
EXIT_USAGE = 2  # configuration and connection problems, like click's usage errors


class WatchdogError(click.ClickException):
    """A problem the person at the terminal can fix; printed as one line."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        # click >= 8.5 types exit_code as a ClassVar; click reads it from the instance.
        setattr(self, "exit_code", exit_code)  # noqa: B010


def who() -> str:
    """The person at the terminal, as recorded in audits and resolutions."""
    try:
        return getpass.getuser()
    except Exception:
        return "someone"


@dataclass
class Session:
    wd: Watchdog
    store: Store
    url: str  # masked: safe to print


def open_session(ctx: click.Context) -> Session:
    """The watchdog runtime and a store for the app of ``celery -A``; cached per invocation."""
    root = ctx.find_root()
    session: Session | None = root.meta.get("celery_watchdog.session")
    if session is not None:
        return session
    app = ctx.obj.app
    try:
        wd = open_runtime(app)
    except ConfigError as exc:
        hint = "" if app.main not in (None, "default") else " (did you pass -A proj?)"
        raise config_error(exc, hint) from exc
    except ImportError as exc:
        raise WatchdogError(f"cannot import the app's task modules: {exc}", EXIT_USAGE) from exc
    if wd is None:
        raise WatchdogError(
            "the watchdog is disabled for this app (watchdog_enabled=False)", EXIT_USAGE
        )
    assert wd.settings.redis_url is not None  # Watchdog() refuses to exist without one
    session = Session(wd, wd.store(), mask_url(wd.settings.redis_url))
    root.meta["celery_watchdog.session"] = session
    return session


def config_error(exc: ConfigError, hint: str = "") -> WatchdogError:
    """ConfigError's text is already one line, masked and cut (see config.ConfigError)."""
    return WatchdogError(f"invalid configuration: {exc}{hint}", EXIT_USAGE)


class WatchdogCommand(CeleryCommand):
    """Turns the errors a person can fix into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except views.TaskLookupError as exc:
            raise WatchdogError(exc.message) from exc
        except Refused as exc:
            raise WatchdogError(exc.message, EXIT_USAGE if exc.kind == INVALID else 1) from exc
        except ConfigError as exc:  # e.g. a task's options, resolved on first use
            raise config_error(exc) from exc
        except redis.RedisError as exc:
            session: Session | None = ctx.find_root().meta.get("celery_watchdog.session")
            # session.url is already masked; describe() masks again, harmlessly.
            message = redis_errors.describe(exc, session.url if session else None)
            raise WatchdogError(message, EXIT_USAGE) from exc


def json_option(fn: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, cls=CeleryOption, help_group="Output Options",
        help="Print the Flower-compatible JSON document instead of a table.",
    )(fn)  # fmt: skip


def echo_json(doc: Any) -> None:
    # Strict JSON: no NaN or Infinity that other parsers reject (a task controls some values).
    click.echo(json.dumps(finite(doc), indent=2, default=str, allow_nan=False))


@click.group(name="watchdog", cls=click.Group)
@click.pass_context
def watchdog(ctx: click.Context, **_: Any) -> None:
    """See whether tasks are slow, failed or stuck, and what to do next."""


@watchdog.command(cls=WatchdogCommand)
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Per task name: running runs by health, success rates, p95 runtime, last outcomes."""
    session = open_session(ctx)
    now = session.store.now()
    doc = status_doc(session.store, session.wd, now=now)
    echo_json(doc) if as_json else click.echo(render.status_text(doc, now))


def _check_health(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    bad = [h for h in value.split(",") if h.strip().lower() not in views.HEALTHS]
    if bad:
        raise click.BadParameter(f"{', '.join(bad)}: expected one of {', '.join(views.HEALTHS)}")
    return value


@watchdog.command(cls=WatchdogCommand)
@click.option(
    "--state",
    cls=CeleryOption,
    help_group="Filters",
    help="Celery state: STARTED, SUCCESS, FAILURE, REVOKED… (comma list).",
)
@click.option(
    "--taskname",
    cls=CeleryOption,
    help_group="Filters",
    help="Task name, or a glob such as 'reports.*'.",
)
@click.option(
    "--workername", cls=CeleryOption, help_group="Filters", help="Worker hostname, or a glob."
)
@click.option(
    "--health",
    cls=CeleryOption,
    callback=_check_health,
    help_group="Filters",
    help=f"Watchdog verdict: {' | '.join(views.HEALTHS)} (comma list).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    cls=CeleryOption,
    help_group="Filters",
    help="Show at most this many tasks.",
)
@json_option
@click.pass_context
def tasks(
    ctx: click.Context, state: str | None, taskname: str | None, workername: str | None,
    health: str | None, limit: int | None, as_json: bool,
) -> None:  # fmt: skip
    """Running tasks (most overdue first), then recently finished ones."""
    session = open_session(ctx)
    now = session.store.now()
    doc = views.tasks_doc(
        session.store, session.wd, state=state, taskname=taskname, workername=workername,
        limit=limit, health=health, now=now,
    )  # fmt: skip
    if as_json:
        echo_json(doc)
    else:
        click.echo(render.tasks_text(doc, now, shown=limit or HUMAN_ROWS))


@watchdog.command(cls=WatchdogCommand)
@click.argument("task_id")
@json_option
@click.pass_context
def task(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """One task: where it is, what it did last, and why it is judged so (a unique id prefix
    is enough)."""
    session = open_session(ctx)
    now = session.store.now()
    doc = views.task_doc(session.store, session.wd, task_id, now=now)
    echo_json(doc) if as_json else click.echo(render.task_text(doc, now))


@watchdog.command(cls=WatchdogCommand)
@json_option
@click.pass_context
def workers(ctx: click.Context, as_json: bool) -> None:
    """Workers that reported in the last day, with their active tasks."""
    session = open_session(ctx)
    now = session.store.now()
    doc = views.workers_doc(session.store, now=now)
    echo_json(doc) if as_json else click.echo(render.workers_text(doc, now))

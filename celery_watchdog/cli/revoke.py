"""``celery -A proj watchdog revoke TASK_ID [--terminate] [--signal SIGTERM]``: Celery's revoke
(as Flower's ``POST /api/task/revoke``), by id or unique prefix of a recorded one."""

from __future__ import annotations

import click
from celery.bin.base import CeleryOption

from ..model.humanize import printable
from ..operations.revoke import revoke as revoke_task
from .base import WatchdogCommand, open_session, watchdog


@watchdog.command(cls=WatchdogCommand)
@click.argument("task_id")
@click.option("--terminate", is_flag=True, cls=CeleryOption, help_group="Revoke Options",
              help="Also signal the process running it (prefork pool only).")  # fmt: skip
@click.option("--signal", "signal_", default="SIGTERM", show_default=True, cls=CeleryOption,
              help_group="Revoke Options", help="The signal --terminate sends.")  # fmt: skip
@click.pass_context
def revoke(ctx: click.Context, task_id: str, terminate: bool, signal_: str) -> None:
    """Revoke a task: workers discard it; with --terminate, stop it where it runs."""
    session = open_session(ctx)
    done = revoke_task(session.wd, session.store, task_id, terminate=terminate, signal=signal_)
    how = f" and signalled it with {done.signal}" if terminate else ""
    text = f"Revoked {done.task_id}{how}."
    if not done.known:
        text += " (No record of it yet: a worker discards it when it arrives.)"
    click.echo(printable(text))

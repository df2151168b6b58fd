"""``celery watchdog pause | resume``: hold a task type or a queue without touching code.

``pause NAME [--for 30m] [--note …]``: messages of task NAME are held (acknowledged, not run,
not lost; their results stay PENDING) until ``resume NAME``, which publishes each again under
its own id, once. ``pause --queue Q``: no worker consumes Q (its messages wait in the broker).
A pause with ``--for`` ends on its own. Every change is in the audit (``pause --list``).
"""

from __future__ import annotations

from typing import Any

import click
from celery.bin.base import CeleryOption

from ..model.humanize import NONE, ago, cut, printable, table
from ..operations import Refused
from ..operations import pauses as pause_actions
from ..views.pauses import pauses_doc
from .base import (
    EXIT_USAGE,
    WatchdogCommand,
    WatchdogError,
    echo_json,
    json_option,
    open_session,
    watchdog,
    who,
)


def _target(name: str | None, queue: str | None) -> str:
    try:
        return pause_actions.target(name, queue)
    except Refused:  # the CLI's words: the queue is an option here
        raise WatchdogError("give a task name, or --queue Q (one of them)", EXIT_USAGE) from None


@watchdog.command(cls=WatchdogCommand)
@click.argument("name", required=False)
@click.option("--queue", cls=CeleryOption, help_group="Pause Options",
              help="Pause a queue: no worker consumes it until resumed.")  # fmt: skip
@click.option("--for", "for_", cls=CeleryOption, help_group="Pause Options",
              help="End the pause on its own after this long (e.g. 30m).")  # fmt: skip
@click.option("--note", default="", cls=CeleryOption, help_group="Pause Options",
              help="Why (kept in the audit).")  # fmt: skip
@click.option("--list", "show", is_flag=True, cls=CeleryOption, help_group="Pause Options",
              help="List the pauses, what they hold, and the audit.")  # fmt: skip
@json_option
@click.pass_context
def pause(ctx: click.Context, name: str | None, queue: str | None, for_: str | None, note: str,
          show: bool, as_json: bool) -> None:  # fmt: skip
    """Hold a task name's messages (or stop a queue) until resumed."""
    session = open_session(ctx)
    if show:
        _show(session.store, as_json)
        return
    target = _target(name, queue)
    until = pause_actions.pause(session.wd, session.store, target, by=who(), for_=for_,
                                note=note)  # fmt: skip
    ends = f", until {ago(until, session.store.now())}" if until else ""
    click.echo(printable(f"Paused {target}{ends}. Workers apply it within a snapshot interval; "
                         "held messages run once on resume."))  # fmt: skip


@watchdog.command(cls=WatchdogCommand)
@click.argument("name", required=False)
@click.option("--queue", cls=CeleryOption, help_group="Pause Options", help="Resume a queue.")
@click.pass_context
def resume(ctx: click.Context, name: str | None, queue: str | None) -> None:
    """End a pause: held messages are published again, each once, oldest first."""
    session = open_session(ctx)
    target = _target(name, queue)
    done = pause_actions.resume(session.wd, session.store, target, by=who())
    text = f"Resumed {target}: {done['released']} held message(s) published again."
    if done["failed"]:
        text += f" Stopped at a failed publish ({done['failed']}): run resume again."
    click.echo(printable(text))


def _show(store: Any, as_json: bool) -> None:
    now = store.now()
    doc = pauses_doc(store, now)
    if as_json:
        echo_json(doc)
        return
    docs, log = doc["paused"], doc["audit"]
    rows = [[cut(d["target"], 40), d.get("by") or NONE, ago(d.get("at"), now),
             ago(d["until"], now) if d.get("until") else "resume", d["held"],
             cut(d.get("note"), 40) or NONE] for d in docs]  # fmt: skip
    text = (
        table(["PAUSED", "BY", "SINCE", "UNTIL", "HELD", "NOTE"], rows)
        if rows
        else "Nothing is paused."
    )
    audit = [[ago(e.get("at"), now), e.get("action"), cut(e.get("target"), 40), e.get("by") or NONE]
             for e in log]  # fmt: skip
    if audit:
        text += "\n\nAudit:\n" + table(["WHEN", "ACTION", "TARGET", "BY"], audit)
    click.echo(printable(text))

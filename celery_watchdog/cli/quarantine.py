"""``celery watchdog quarantine list | show FP | release FP``: inputs parked because they fail.

An input (a task name plus a hash of its arguments, or of ``fingerprint_args``) that failed
the same deterministic way ``quarantine_after`` times as different task ids is quarantined:
workers park its later copies in the dead-letter queue without running them. Release it once
the data or the code is fixed (a dead-letter replay of a parked copy releases it too).
A fingerprint is addressed by a unique prefix, as with git hashes.
"""

from __future__ import annotations

from typing import Any

import click

from ..model.humanize import ago, cut, fields, finite, printable, table
from ..model.ids import unique_id
from .base import (
    WatchdogCommand,
    WatchdogError,
    echo_json,
    json_option,
    open_session,
    watchdog,
    who,
)


def _resolve(store: Any, wanted: str) -> str:
    wanted = wanted.strip()
    if not wanted:
        raise WatchdogError("a fingerprint (or a unique prefix of one) is required")
    return unique_id(wanted, store.quarantine.find(wanted), "quarantined input")


@watchdog.group(name="quarantine", cls=click.Group)
def quarantine() -> None:
    """Inputs that fail the same way every time, parked until released."""


@quarantine.command(name="list", cls=WatchdogCommand)
@json_option
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """Quarantined inputs, newest first."""
    session = open_session(ctx)
    now = session.store.now()
    found = list(session.store.quarantine.all().values())
    if as_json:
        echo_json(finite({"quarantined": found, "timestamp": now}))
        return
    if not found:
        click.echo("No quarantined inputs.")
        return
    rows = [
        [d["fp"], cut(d.get("name"), 36), cut(d.get("label"), 40), d.get("reason") or "-",
         d.get("failures") or "-", d.get("parked", 0), ago(d.get("at"), now)]
        for d in found
    ]  # fmt: skip
    headers = ["FINGERPRINT", "TASK", "INPUT", "REASON", "FAILED", "PARKED", "SINCE"]
    click.echo(printable(table(headers, rows)))


@quarantine.command(cls=WatchdogCommand)
@click.argument("fingerprint")
@json_option
@click.pass_context
def show(ctx: click.Context, fingerprint: str, as_json: bool) -> None:
    """One quarantined input: what failed, how, and how many copies are parked."""
    session = open_session(ctx)
    now = session.store.now()
    doc = session.store.quarantine.get(_resolve(session.store, fingerprint))
    if doc is None:
        raise WatchdogError(f"{fingerprint} is no longer quarantined")
    if as_json:
        echo_json(finite(doc))
        return
    app = ctx.obj.app.main or "proj"
    click.echo(printable(fields([
        ("Fingerprint", doc["fp"]), ("Task", doc.get("name")), ("Input", doc.get("label")),
        ("Reason", doc.get("reason")), ("Error", doc.get("error")),
        ("Failed", f"{doc.get('failures')} times, as different task ids"),
        ("Quarantined", ago(doc.get("at"), now)), ("Parked", f"{doc.get('parked', 0)} copies"),
        ("Next step", f"fix the cause, then: celery -A {app} watchdog quarantine release "
                      f"{doc['fp']} (parked copies: celery -A {app} watchdog dlq list)"),
    ])))  # fmt: skip


@quarantine.command(cls=WatchdogCommand)
@click.argument("fingerprint")
@click.pass_context
def release(ctx: click.Context, fingerprint: str) -> None:
    """Let an input run again (parked copies stay in the dead-letter queue: replay them)."""
    session = open_session(ctx)
    fp = _resolve(session.store, fingerprint)
    done = session.store.quarantine.release([fp], who(), "released", session.store.now())
    if not done:
        raise WatchdogError(f"{fp} is no longer quarantined")
    click.echo(f"Released {fp}: new copies of this input run again; workers see it within a "
               "snapshot interval.")  # fmt: skip

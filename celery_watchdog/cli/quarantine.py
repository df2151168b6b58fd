"""``celery watchdog quarantine list | show FP | release FP``: inputs parked because they fail.

An input (a task name plus a hash of its arguments, or of ``fingerprint_args``) that failed
the same deterministic way ``quarantine_after`` times as different task ids is quarantined:
workers park its later copies in the dead-letter queue without running them. Release it once
the data or the code is fixed (a dead-letter replay of a parked copy releases it too).
A fingerprint is addressed by a unique prefix, as with git hashes.
"""

from __future__ import annotations

import click

from ..model.humanize import ago, cut, fields, printable, table
from ..operations.quarantine import release as release_input
from ..views.quarantine import quarantine_doc, quarantined_doc
from .base import (
    WatchdogCommand,
    echo_json,
    json_option,
    open_session,
    watchdog,
    who,
)


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
    doc = quarantine_doc(session.store, now)
    if as_json:
        echo_json(doc)
        return
    found = doc["quarantined"]
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
    doc = quarantined_doc(session.store, fingerprint)
    if as_json:
        echo_json(doc)
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
    fp = release_input(session.store, fingerprint, by=who())
    click.echo(f"Released {fp}: new copies of this input run again; workers see it within a "
               "snapshot interval.")  # fmt: skip

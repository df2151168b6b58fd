"""``celery watchdog incidents | ack | snooze | resolve | test-alert``.

An incident is addressed by its id; a unique prefix is enough (as with git hashes). ``ack``
stops the reminders, ``snooze`` pauses them for a while, ``resolve`` closes the incident and
says so through the channels. ``test-alert`` sends a labelled test through each channel and
exits 1 if any of them failed: test every alert before trusting it.
"""

from __future__ import annotations

import time
from typing import Any

import click
from celery.bin.base import CeleryOption

from ..alerts import Alert, Channel, channel_from_url
from ..alerts.notify import router_of, send
from ..model.humanize import finite, printable
from ..operations import incidents as incident_actions
from ..views.incidents import SCAN, incidents_doc
from . import render_incidents
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


def _note_option(fn: Any) -> Any:
    return click.option(
        "--note", default="", cls=CeleryOption, help_group="Incident Options",
        help="Why (kept with the incident and shown by `incidents`).",
    )(fn)  # fmt: skip


@watchdog.command(cls=WatchdogCommand)
@click.option(
    "--all", "show_all", is_flag=True, cls=CeleryOption, help_group="Incident Options",
    help="Also list resolved incidents (kept for 7 days).",
)  # fmt: skip
@json_option
@click.pass_context
def incidents(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """Open incidents (acknowledged and snoozed too), most recent first."""
    session = open_session(ctx)
    now = session.store.now()
    if as_json:
        echo_json(incidents_doc(session.store, now, show_all=show_all))
        return
    found = session.store.incidents.recent(SCAN)
    shown = found if show_all else [i for i in found if i.active]
    click.echo(render_incidents.list_text(shown, now, show_all=show_all))


@watchdog.command(cls=WatchdogCommand)
@click.argument("incident_id")
@_note_option
@click.pass_context
def ack(ctx: click.Context, incident_id: str, note: str) -> None:
    """Acknowledge an incident: someone is on it, stop the reminders."""
    _set(ctx, incident_id, "acknowledged", note=note)


@watchdog.command(cls=WatchdogCommand)
@click.argument("incident_id")
@click.argument("for_", metavar="DURATION")
@_note_option
@click.pass_context
def snooze(ctx: click.Context, incident_id: str, for_: str, note: str) -> None:
    """Pause an incident's reminders for DURATION (90s, 30m, 2h, 1d)."""
    _set(ctx, incident_id, "snoozed", note=note, for_=for_)


def _set(
    ctx: click.Context, incident_id: str, state: str, *, note: str, for_: str | None = None
) -> None:
    store = open_session(ctx).store
    done = incident_actions.change(store, incident_id, state, by=who(), note=note, for_=for_)
    click.echo(render_incidents.changed(done.incident, state, done.until, done.now))


@watchdog.command(cls=WatchdogCommand)
@click.argument("incident_id")
@_note_option
@click.pass_context
def resolve(ctx: click.Context, incident_id: str, note: str) -> None:
    """Close an incident by hand and say so through its channels."""
    session = open_session(ctx)
    incident, notices = incident_actions.resolve(
        session.wd, session.store, incident_id, by=who(), note=note
    )
    click.echo(printable(f"incident {incident.id} resolved"))
    for line in render_incidents.deliveries(notices):
        click.echo(line)


@watchdog.command(name="test-alert", cls=WatchdogCommand)
@click.option(
    "--channel", "wanted", multiple=True, cls=CeleryOption, help_group="Alert Options",
    help="Only this channel: a configured channel's name or URL, or any channel URL to try "
         "(repeatable). Default: every configured channel.",
)  # fmt: skip
@json_option
@click.pass_context
def test_alert(ctx: click.Context, wanted: tuple[str, ...], as_json: bool) -> None:
    """Send a labelled test alert through each channel; print delivered or failed (exit 1)."""
    session = open_session(ctx)
    channels = _channels(session.wd, wanted)
    alert = Alert.test(time.time(), app_name=session.wd.app.main or "proj")
    notices = send(session.wd, session.store, [alert], channels=channels)
    results = [d for n in notices for d in n.deliveries]
    if as_json:
        echo_json(finite({"deliveries": [
            {"channel": d.channel, "ok": d.ok, "error": d.error, "attempts": d.attempts,
             "elapsed_ms": d.elapsed_ms} for d in results
        ]}))  # fmt: skip
    else:
        for line in render_incidents.deliveries(notices):
            click.echo(line)
    ctx.exit(0 if results and all(d.ok for d in results) else 1)


def _channels(wd: Any, wanted: tuple[str, ...]) -> list[Channel]:
    router = router_of(wd)
    configured = router.every()
    if not wanted:
        return configured
    out = []
    for want in wanted:
        match = [c for c in configured if c.name == want] or router.built(want)
        if not match:
            try:
                match = [channel_from_url(want)]
            except ValueError as exc:
                names = printable(", ".join(c.name for c in configured))
                raise WatchdogError(f"{exc} (configured channels: {names})", EXIT_USAGE) from exc
        out.extend(match)
    return out

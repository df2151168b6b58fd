"""``celery watchdog schedules``: every beat entry (and ``max_silence`` task), its last dispatch,
last success, next due and health — a dead-man's switch per entry."""

from __future__ import annotations

from typing import Any

import click

from ..model.humanize import NONE, ago, cut, printable, table
from ..operations.documents import schedules_doc
from .base import WatchdogCommand, echo_json, json_option, open_session, watchdog


@watchdog.command(cls=WatchdogCommand)
@json_option
@click.pass_context
def schedules(ctx: click.Context, as_json: bool) -> None:
    """Beat entries and max_silence tasks: last sent, last success, next due, health."""
    session = open_session(ctx)
    now = session.store.now()
    doc = schedules_doc(session.wd, session.store, now)
    if as_json:
        echo_json(doc)
        return
    docs = doc["schedules"]
    click.echo(schedules_text(docs, now))


def schedules_text(docs: list[dict[str, Any]], now: float) -> str:
    if not docs:
        return "No beat entries, and no task with max_silence."

    def when(ts: Any) -> str:
        return NONE if ts is None else ago(ts, now)

    rows = [
        [cut(d["entry"], 32), cut(d["task"], 36), cut(d.get("schedule"), 24),
         when(d.get("last_dispatched")), when(d.get("last_succeeded")),
         NONE if d.get("next_due") is None else ago(d["next_due"], now),
         d["health"].upper() if d.get("kind") else d["health"], cut(d.get("what"), 70)]
        for d in docs
    ]  # fmt: skip
    headers = ["ENTRY", "TASK", "SCHEDULE", "LAST SENT", "LAST SUCCESS", "NEXT DUE", "HEALTH",
               "WHAT"]  # fmt: skip
    return printable(table(headers, rows))

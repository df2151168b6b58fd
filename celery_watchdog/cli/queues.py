"""``celery watchdog queues``: depth, the oldest waiting message and health of every queue."""

from __future__ import annotations

from typing import Any

import click

from ..model.humanize import NONE, ago, cut, duration, printable, table
from ..operations.documents import queues_doc
from .base import WatchdogCommand, echo_json, json_option, open_session, watchdog


@watchdog.command(cls=WatchdogCommand)
@json_option
@click.pass_context
def queues(ctx: click.Context, as_json: bool) -> None:
    """Each queue: waiting, reserved, oldest waiting, consumers, completions, health."""
    session = open_session(ctx)
    now = session.store.now()
    # Flower's /api/queues/length shape plus ours, read from the broker now.
    doc = queues_doc(session.wd, session.store, now)
    if as_json:
        echo_json(doc)
        return
    docs = doc["active_queues"]
    click.echo(queues_text(docs, now))


def _done(per_min: float, normal_per_hour: float | None) -> str:
    """Completions per minute now, and (in brackets) normally at this hour of the week."""
    return f"{per_min:g}" + ("" if normal_per_hour is None else f" ({normal_per_hour / 60:.2g})")


def queues_text(docs: list[dict[str, Any]], now: float) -> str:
    if not docs:
        return "No queues found (none declared, consumed or holding messages)."
    rows = []
    for d in docs:
        oldest = d["oldest_age"]
        shown = (
            NONE
            if oldest is None
            else (">" if d["oldest_age_is_lower_bound"] else "") + (duration(oldest))
        )
        consumers = ", ".join(c["worker"].split("@", 1)[0] for c in d["consumers"]) or "none"
        usual = d.get("normal_oldest_age")
        last = d["last_completed_age"]
        rows.append([
            cut(d["name"], 30), d["messages"], NONE if d["reserved"] is None else d["reserved"],
            shown, NONE if usual is None else duration(usual), cut(consumers, 30),
            _done(d["completed_per_min"], d.get("normal_completed_per_hour")),
            NONE if last is None else ago(now - last, now), d["health"].upper()
            if d["kind"] else d["health"], cut(d["error"] or d["summary"], 70),
        ])  # fmt: skip
    headers = ["QUEUE", "WAITING", "RESERVED", "OLDEST", "NORMAL", "CONSUMERS", "DONE/MIN",
               "LAST DONE", "HEALTH", "SUMMARY"]  # fmt: skip
    return printable(table(headers, rows))

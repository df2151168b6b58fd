"""``celery watchdog report [--since 7d]``: the weekly check as one command."""

from __future__ import annotations

from typing import Any

import click
from celery.bin.base import CeleryOption

from ..model.humanize import (
    NONE,
    cut,
    duration,
    finite,
    parse_duration,
    printable,
    sparkline,
    table,
)
from ..views.report import report_doc
from .base import WatchdogCommand, WatchdogError, echo_json, json_option, open_session, watchdog


@watchdog.command(cls=WatchdogCommand)
@click.option("--since", default="7d", cls=CeleryOption, help_group="Report Options",
              help="The period: 7d (default), 14d, 1d … (up to 28 days).")  # fmt: skip
@json_option
@click.pass_context
def report(ctx: click.Context, since: str, as_json: bool) -> None:
    """The weekly check: queue trends, failures and retries, new reasons, incidents."""
    try:
        seconds = parse_duration(since)
    except ValueError as exc:
        raise WatchdogError(f"--since: {exc}", exit_code=2) from exc
    session = open_session(ctx)
    doc = report_doc(session.store, session.wd, since=seconds)
    if as_json:
        echo_json(finite(doc))
    else:
        click.echo(report_text(doc))


def took(value: float | None) -> str:
    return NONE if value is None else duration(value)


def report_text(doc: dict[str, Any]) -> str:
    days = doc["days"]
    parts = [f"The last {days} day(s), oldest day first."]
    queues = [
        [cut(q["name"], 30), sparkline(q["oldest_by_day"]), took(q["max_oldest"]),
         "RISING 2 WEEKS" if q["rising_two_weeks"] else ""]
        for q in doc["queues"]
    ]  # fmt: skip
    parts.append(
        "Queues: oldest waiting message per day\n"
        + (table(["QUEUE", "TREND", "WORST", ""], queues) if queues else "  none recorded")
    )
    tasks = [
        [cut(t["name"], 44), t["runs"], t["failures"], sparkline(t["failures_by_day"]),
         t["retries"], sparkline(t["retries_by_day"]), ", ".join(t["new_reasons"]) or NONE]
        for t in doc["tasks"][:20]
    ]  # fmt: skip
    parts.append("Tasks: failures and retries per day, reasons new this period\n" + (
        table(["TASK", "RUNS", "FAILED", "TREND", "RETRIED", "TREND", "NEW REASONS"], tasks)
        if tasks else "  none recorded"))  # fmt: skip
    inc = doc["incidents"]
    head = (
        f"Incidents: {inc['opened']} opened, {inc['still_open']} still open; median time "
        f"to acknowledge {took(inc['median_to_acknowledge'])}, to resolve "
        f"{took(inc['median_to_resolve'])} (longest {took(inc['max_to_resolve'])})"
    )
    top = [
        [i["id"], i["severity"], i["kind"], cut(i["task_name"], 36), i["count"],
         duration(i["open_for"]), i["state"], cut(i["summary"], 60)]
        for i in inc["top"]
    ]  # fmt: skip
    parts.append(head + ("\n" + table(["ID", "SEV", "KIND", "TASK", "COUNT", "OPEN FOR", "STATE",
                                       "SUMMARY"], top) if top else ""))  # fmt: skip
    return printable("\n\n".join(parts))

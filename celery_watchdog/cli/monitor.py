"""``celery watchdog check`` (one monitor pass) and ``monitor`` (passes in a loop).

``check`` suits cron and container probes: exit 0 when healthy, 1 when the pass found
something (or the watchdog had been blind), 2 when it could not run (bad settings, Redis down).
"""

from __future__ import annotations

import time
from typing import Any

import click
from celery.bin.base import CeleryOption

from ..model import redis_errors
from ..model.humanize import finite, printable
from ..monitor.check import PassReport, run_pass
from .base import WatchdogCommand, echo_json, json_option, open_session, watchdog


def _render(report: PassReport) -> str:
    """The pass as lines; names, reasons and errors come from tasks: printed escaped."""
    lines = []
    if report.blind:
        lines.append(f"WATCHDOG WAS BLIND: {report.blind}")
    head = f"{report.due} due, {len(report.findings)} finding(s), {report.duration * 1000:.0f} ms"
    lines.append(head)
    for f in report.findings:
        lines.append(
            f"  {f.kind.upper():9} {f.run.name}[{f.run.task_id}] on {f.run.worker or '?'}: "
            f"{f.reason}; action: {f.action}" + (f" ({f.detail})" if f.detail else "")
        )
        if f.diagnosis:
            lines.append(f"            where it waits: {f.diagnosis}")
    for n in report.notices:
        sent = ", ".join(
            f"{d.channel}: " + ("delivered" if d.ok else f"FAILED ({d.error})")
            for d in n.deliveries
        )
        incident = n.alert.incident
        lines.append(
            f"  alert {n.alert.severity} {incident.notice} {n.alert.kind} [incident "
            f"{incident.id}]: {n.alert.summary} -> {sent or 'no channel'}"
        )
    return printable("\n".join(lines))


@watchdog.command(cls=WatchdogCommand)
@json_option
@click.pass_context
def check(ctx: click.Context, as_json: bool) -> None:
    """Run one monitor pass: judge overdue runs, act once, print the findings."""
    session = open_session(ctx)
    report = run_pass(session.wd, session.store)
    echo_json(finite(report.as_dict())) if as_json else click.echo(_render(report))
    ctx.exit(1 if report.findings or report.blind else 0)


@watchdog.command(cls=WatchdogCommand)
@click.option(
    "--interval", type=float, default=None, cls=CeleryOption, help_group="Monitor Options",
    help="Seconds between passes (default: watchdog_check_interval).",
)  # fmt: skip
@click.option(
    "--passes", type=int, default=0, cls=CeleryOption, help_group="Monitor Options",
    help="Stop after this many passes (default: run until interrupted).",
)  # fmt: skip
@click.pass_context
def monitor(ctx: click.Context, interval: float | None, passes: int, **_: Any) -> None:
    """Run monitor passes in a loop (for deployments without beat)."""
    session = open_session(ctx)
    every = interval or session.wd.settings.check_interval
    done = 0
    while not passes or done < passes:
        started = time.monotonic()
        try:
            report = run_pass(session.wd, session.store)
            if report.findings or report.blind or report.notices:
                click.echo(_render(report))
        except Exception as exc:  # keep watching; a Redis blip must not end the loop
            click.echo(printable(f"pass failed: {redis_errors.describe(exc, session.url)}"),
                       err=True)  # fmt: skip
        done += 1
        if passes and done >= passes:
            break
        time.sleep(max(0.0, every - (time.monotonic() - started)))

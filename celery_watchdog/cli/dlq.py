"""``celery watchdog dlq …``: list, show, replay, purge and export dead-letter entries.

An entry is addressed by the original task id; a unique prefix is enough (as with git hashes).
Shown arguments are the redacted previews; only a replay (and ``export --include-messages``)
touches the original message.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click
from celery.bin.base import CeleryOption

from .. import dlq as deadletters
from ..model.humanize import finite
from ..operations.documents import dead_letter, dlq_doc
from . import render_dlq
from .base import (
    EXIT_USAGE,
    HUMAN_ROWS,
    WatchdogCommand,
    WatchdogError,
    echo_json,
    json_option,
    open_session,
    watchdog,
    who,
)


def _task_option(help_text: str) -> Any:
    return click.option("--task", "task", cls=CeleryOption, help_group="Filters", help=help_text)


def _resolve_all(store: Any, prefixes: tuple[str, ...]) -> list[str]:
    """Full ids for every prefix (an unknown or ambiguous one stops before anything happens)."""
    ids = [deadletters.resolve(store, p) for p in prefixes]
    return list(dict.fromkeys(ids))


@watchdog.group(name="dlq", cls=click.Group)
def dlq() -> None:
    """Runs the watchdog removed: see why, replay them safely, purge or export them."""


@dlq.command(name="list", cls=WatchdogCommand)
@_task_option("Task name, or a glob such as 'reports.*'.")
@click.option("--limit", type=click.IntRange(min=1), cls=CeleryOption, help_group="Filters",
              help="Show at most this many entries.")  # fmt: skip
@json_option
@click.pass_context
def list_(ctx: click.Context, task: str | None, limit: int | None, as_json: bool) -> None:
    """Dead-letter entries, newest first."""
    session = open_session(ctx)
    now = session.store.now()
    if as_json:
        echo_json(dlq_doc(session.wd, session.store, task=task, limit=limit))
    else:
        found = deadletters.entries(session.store, task=task, with_message=False)
        rows = limit or HUMAN_ROWS
        redactor = session.wd.redactor
        shown = [e.scrubbed(redactor) for e in found[:rows]]
        click.echo(render_dlq.list_text(shown, now, total=len(found)))


@dlq.command(cls=WatchdogCommand)
@click.argument("entry_id")
@json_option
@click.pass_context
def show(ctx: click.Context, entry_id: str, as_json: bool) -> None:
    """One entry: why it was removed, where it was, its errors and its replays."""
    session = open_session(ctx)
    now = session.store.now()
    entry = dead_letter(session.store, entry_id)
    redactor = session.wd.redactor
    doc = entry.to_doc(redactor)
    if as_json:
        echo_json(doc)
    else:
        click.echo(render_dlq.show_text(entry.scrubbed(redactor), doc, now))


@dlq.command(cls=WatchdogCommand)
@click.argument("entry_ids", nargs=-1)
@click.option(
    "--all",
    "all_",
    is_flag=True,
    cls=CeleryOption,
    help_group="Selection",
    help="Every replayable entry not replayed yet (with --force: replayed ones too).",
)
@_task_option("With --all: only entries of this task name (or glob).")
@click.option(
    "--dry-run",
    is_flag=True,
    cls=CeleryOption,
    help_group="Replay Options",
    help="Show what would be published; publish and change nothing.",
)
@click.option(
    "--queue",
    cls=CeleryOption,
    help_group="Replay Options",
    help="Publish to this queue instead of the original one.",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    cls=CeleryOption,
    help_group="Replay Options",
    help="Publish this many, then pause as --rate requires.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    cls=CeleryOption,
    help_group="Replay Options",
    help="At most this many publishes per second.",
)
@click.option(
    "--force",
    is_flag=True,
    cls=CeleryOption,
    help_group="Replay Options",
    help="Replay entries that were replayed already.",
)
@json_option
@click.pass_context
def replay(
    ctx: click.Context, entry_ids: tuple[str, ...], all_: bool, task: str | None,
    dry_run: bool, queue: str | None, batch: int, rate: float | None, force: bool,
    as_json: bool,
) -> None:  # fmt: skip
    """Publish entries' original tasks again (original arguments, new task ids).

    Each entry replays once unless --force; every replay is recorded in its audit trail.
    Exits 1 when any entry was refused or failed to publish.
    """
    if bool(entry_ids) == all_:
        raise click.UsageError("give entry ids, or --all (not both)")
    if task and not all_:
        raise click.UsageError("--task selects entries for --all; use it with --all")
    session = open_session(ctx)
    store = session.store
    if all_:
        found = deadletters.entries(store, task=task)
        ids = [e.task_id for e in deadletters.replay_candidates(found, force=force)]
        if not ids and not as_json:
            click.echo(render_dlq.nothing_to_replay(found))
    else:
        ids = _resolve_all(store, entry_ids)
    results = deadletters.replay(
        session.wd.app, store, ids, queue=queue, dry_run=dry_run, force=force,
        batch_size=batch, rate=rate, now=store.now(),
    )  # fmt: skip
    if as_json:
        echo_json(finite([r.to_doc() for r in results]))
    elif results:
        click.echo(render_dlq.replay_text(results, dry_run))
    if not all(r.ok for r in results):
        ctx.exit(1)


@dlq.command(cls=WatchdogCommand)
@click.argument("entry_ids", nargs=-1)
@click.option(
    "--all", "all_", is_flag=True, cls=CeleryOption, help_group="Selection", help="Every entry."
)
@click.option(
    "--yes",
    is_flag=True,
    cls=CeleryOption,
    help_group="Selection",
    help="Do not ask for confirmation (needed when not run from a terminal).",
)
@click.pass_context
def purge(ctx: click.Context, entry_ids: tuple[str, ...], all_: bool, yes: bool) -> None:
    """Delete entries for good (they cannot be replayed afterwards)."""
    if bool(entry_ids) == all_:
        raise click.UsageError("give entry ids, or --all (not both)")
    session = open_session(ctx)
    store = session.store
    ids = None if all_ else _resolve_all(store, entry_ids)
    count = store.dlq.count() if ids is None else len(ids)
    what = f"{count} dead-letter entr{'y' if count == 1 else 'ies'}"
    if not yes:
        if not sys.stdin.isatty():
            raise WatchdogError(f"refusing to purge {what} without --yes (no terminal to "
                                "confirm on)", EXIT_USAGE)  # fmt: skip
        click.confirm(f"Delete {what} for good?", abort=True)
    deleted = deadletters.purge(store, ids, by=who())
    click.echo(f"Purged {deleted} dead-letter entr{'y' if deleted == 1 else 'ies'}.")


@dlq.command(cls=WatchdogCommand)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    cls=CeleryOption,
    help_group="Output Options",
    help="Write to this file instead of standard output.",
)
@click.option(
    "--include-messages",
    is_flag=True,
    cls=CeleryOption,
    help_group="Output Options",
    help="Include original messages (unredacted arguments): keep the file secret.",
)
@_task_option("Only entries of this task name (or glob).")
@click.pass_context
def export(
    ctx: click.Context, output: str | None, include_messages: bool, task: str | None
) -> None:
    """Entries as JSON lines, redacted unless --include-messages."""
    session = open_session(ctx)
    redactor = session.wd.redactor
    if output is None:
        deadletters.export(session.store, sys.stdout, redactor, task=task,
                           include_messages=include_messages)  # fmt: skip
        return
    # Owner-only: with --include-messages the file holds the original (secret) arguments.
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as out:
        count = deadletters.export(session.store, out, redactor, task=task,
                                   include_messages=include_messages)  # fmt: skip
    click.echo(f"Exported {count} dead-letter entries to {output}.", err=True)

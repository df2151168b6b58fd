"""The words of an alert: summary, default severity and the next safe step, per kind.

Pure functions of the finding's facts and ``now`` (passed in): a non-engineer reads the result
at 2 a.m., so every phrase says what happened in plain words and ends in something to do.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..model.humanize import duration

KINDS = (
    "stuck", "slow", "overtime", "lost", "poison", "duplicate", "failed", "retry_storm",
    "failure_spike", "queue_backlog", "queue_stalled", "missed_run", "watchdog_blind", "test",
)  # fmt: skip
SEVERITIES = ("P1", "P2", "P3")

# P1 pages now, P2 wants a look within minutes, P3 during work hours.
DEFAULT_SEVERITY: Mapping[str, str] = {
    "lost": "P1", "watchdog_blind": "P1", "missed_run": "P1",
    "stuck": "P2", "poison": "P2", "queue_backlog": "P2", "failed": "P2", "duplicate": "P2",
    "failure_spike": "P2", "retry_storm": "P3", "queue_stalled": "P1",
    "slow": "P3", "overtime": "P3", "test": "P3",
}  # fmt: skip


ACTIONS: Mapping[str, str] = {
    "revoked": "stopped it (revoked)", "dead_lettered": "moved it to the dead-letter queue",
    "requeued": "queued it again", "quarantined": "held it back from workers (quarantined)",
    "none": "nothing: this is an alert only",
}  # fmt: skip


def done(action: str) -> str:
    return ACTIONS.get(action, action.replace("_", " "))


def default_severity(kind: str) -> str:
    return DEFAULT_SEVERITY.get(kind, "P2")


def subject(name: str, step: str | None, context: Mapping[str, str]) -> str:
    """``"Export to PDF (reports.build) for account 12"``: the work, then who it is for."""
    what = f"{step} ({name})" if step else name or "a task"
    return f"{what} for {who(context)}" if context else what


def who(context: Mapping[str, str]) -> str:
    """``"account 12, region eu"``."""
    return ", ".join(f"{_label(key)} {_plain(value)}" for key, value in context.items())


def summary(
    kind: str,
    what: str,
    *,
    quiet_for: float | None,
    running_for: float | None,
    worker: str | None,
    queue: str | None,
    deliveries: int,
    reason: str,
    about_input: bool = False,
) -> str:
    """One line saying what broke and since when (``about_input``: a quarantined input)."""
    if kind == "stuck":
        return f"{what} has made no progress for {duration(quiet_for)}"
    if kind == "slow":
        return f"{what} is taking longer than usual ({duration(running_for)} so far)"
    if kind == "overtime":
        return f"{what} has run past its time limit ({duration(running_for)} so far)"
    if kind == "lost":
        on = f" {worker}" if worker else ""
        return f"{what} was interrupted: its worker{on} stopped while running it"
    if kind == "poison" and about_input:  # a quarantined input (or a copy of it), not a loop
        return f"{what}: {reason}"
    if kind == "poison":
        return (f"{what} was delivered {deliveries} times without finishing: it is set aside "
                "in the dead-letter queue, not run again")  # fmt: skip
    if kind == "duplicate":
        return f"{what} is running twice at the same time"
    if kind == "failed":
        if reason.startswith(("failed ", "gave up")):  # the rule's words say it already
            return f"{what} {reason}"
        return f"{what} failed" + (f": {reason}" if reason else "")
    if kind == "retry_storm":
        return f"{what} keeps retrying and rarely succeeds" + (f": {reason}" if reason else "")
    if kind == "failure_spike":
        return f"{what} is failing more than usual" + (f": {reason}" if reason else "")
    if kind == "queue_backlog":
        return "Work is piling up" + (f": {reason}" if reason else f" in queue {queue or '?'}")
    if kind == "queue_stalled":
        return "Work has stopped" + (f": {reason}" if reason else f" in queue {queue or '?'}")
    if kind == "missed_run":  # the reason names the entry and what did not happen
        return (
            f"Scheduled work missed: {reason}"
            if reason
            else (f"{what} did not run when it was scheduled")
        )
    if kind == "watchdog_blind":
        return "Nobody is watching the background tasks" + (f": {reason}" if reason else "")
    if kind == "test":
        return "Test alert from celery_watchdog: this channel works"
    return f"{what}: {kind}" + (f" ({reason})" if reason else "")


def next_step(
    kind: str,
    action: str,
    *,
    task_id: str,
    idempotent: bool,
    new_task_id: str | None,
    app_name: str,
    replayable: bool = True,
    bucket: str | None = None,
    fingerprint: str | None = None,
) -> str:
    """The next safe thing a person can do, as a command where there is one.

    Only what the system can do is promised: a dead letter without its original message
    cannot be replayed, whatever the task's idempotency.
    """
    cli = f"celery -A {app_name} watchdog"
    if action == "dead_lettered" and not replayable:
        return (
            "cannot be replayed: its original message was not kept; run it again by hand with "
            f"the arguments shown by {cli} dlq show {task_id}"
        )
    if action == "dead_lettered":
        if idempotent:
            return f"safe to replay: task is idempotent — {cli} dlq replay {task_id}"
        return (
            "not idempotent: check for a duplicate charge/side effect before replaying — "
            f"{cli} dlq show {task_id}"
        )
    if action == "requeued":
        return f"requeued as {new_task_id or '?'}; nothing to do unless it fails again"
    if action == "quarantined":
        release = f"{cli} quarantine release {fingerprint or '<fp>'}"
        return f"fix the cause (or the input), then let it run again: {release}"
    if kind == "slow":
        return "no action needed yet; it is still running and is flagged again if it stalls"
    if kind == "duplicate":
        return (
            "two runs of the same message are in flight: make sure it is idempotent "
            "(or raise the broker's visibility_timeout above its longest runtime)"
        )
    if kind == "lost":
        return "the broker delivers it again; nothing to do unless it fails again"
    if action == "revoked":
        return f"it was stopped; find why it stalled before running it again — {cli} task {task_id}"
    if kind in ("stuck", "overtime"):
        return f"still running: stop it if it does not move — {cli} revoke {task_id}"
    if kind in FAILURE_KINDS:
        return _failure_step(bucket, f"{cli} task {task_id}" if task_id else f"{cli} status")
    if kind == "queue_backlog":
        return f"work goes on but too slowly: add workers or concurrency for it — {cli} queues"
    if kind == "queue_stalled":
        return (f"nothing completes: check that a worker consumes it and is not stuck (restart a "
                f"worker that stopped consuming) — {cli} queues")  # fmt: skip
    if kind in ("missed_run", "watchdog_blind"):
        return f"check that celery beat (or {cli} monitor) is running"
    if kind == "test":
        return "nothing to do: this is a test"
    return f"look at it: {cli} task {task_id}"


FAILURE_KINDS = ("failed", "retry_storm", "failure_spike")  # about a task name, not one run
_BY_BUCKET: Mapping[str, str] = {
    "timeout": "a service it calls is slow or down: check it; retries pick the work up once "
    "it is back",
    "connection": "a service it calls is unreachable: check it (and the network); retries "
    "pick the work up once it is back",
    "rate limit": "a service it calls is throttling it: slow the producer or raise the quota",
    "auth": "credentials are refused: renew or fix them, then run the failed tasks again",
    "bad input": "the input is bad: look at the failing task's arguments and fix the data or "
    "its producer; retrying the same input fails the same way",
    "missing record": "what it looks up is not there: check the producer and the data; "
    "retrying the same input fails the same way",
    "code error": "a bug: read the traceback, fix and deploy, then run the failed tasks again",
    "worker lost": "its worker process dies: check memory (the OOM killer) and native crashes",
    "time limit": "it runs out of time: raise its time limit or split the work",
}


def _failure_step(bucket: str | None, look: str) -> str:
    return f"{_BY_BUCKET.get(bucket or '', 'read the error and fix the cause')} — {look}"


def _label(key: str) -> str:
    # "account_id" reads as "account": the id-ness is obvious from the number after it.
    base = key[:-3] if key.endswith("_id") and len(key) > 3 else key
    return base.replace("_", " ")


def _plain(value: str) -> str:
    # Context values arrive as previews (repr): show 'acme' as acme to a reader.
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


GROUP_PHRASES: Mapping[str, str] = {
    "stuck": "stuck", "slow": "running slow", "overtime": "past their time limit",
    "lost": "lost (their worker stopped)", "poison": "crashing their worker",
    "duplicate": "running twice", "failed": "failed",
}  # fmt: skip
SHOWN = 3  # context values named in a grouped summary before "and N more"


def group_summary(
    kind: str, name: str, count: int, steps: list[str | None], contexts: list[Mapping[str, str]]
) -> str:
    """``37 runs of reports.build stuck in 'Export to PDF' — accounts 12, 99, … and 34 more``."""
    text = f"{count} runs of {name} {GROUP_PHRASES.get(kind, kind.replace('_', ' '))}"
    named = {s for s in steps if s}
    if len(named) == 1:
        text += f" in '{named.pop()}'"
    key = next((k for c in contexts for k in c), None)
    if key is None:
        return text
    values = [_plain(c[key]) for c in contexts if key in c]
    shown = ", ".join(values[:SHOWN])
    more = count - min(len(values), SHOWN)
    return f"{text} — {_label(key)}s {shown}" + (f" and {more} more" if more > 0 else "")

"""Send one alert through every channel at once, each within its own deadline.

Each channel runs in its own daemon thread: a receiver that hangs costs its own timeout and
never delays the others. Only errors that say a retry can help are retried, with a short
backoff, and never past the channel's deadline. ``deliver`` never raises: it reports.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..model.humanize import printable
from ..model.redact import scrub
from .channels import Channel
from .http import DeliveryError
from .model import Alert

logger = logging.getLogger("celery_watchdog")
BACKOFF = 0.2  # seconds before the first retry, doubled for each one after
ERROR_CHARS = 500  # an error is shown in status and logs: a receiver's whole page is not


def _error(text: str) -> str:
    # A receiver's answer (or an exception about it) is foreign text that ends up in status,
    # the CLI and the logs: no secret value, no terminal control, and short.
    return printable(scrub(text, ERROR_CHARS))


@dataclass
class Delivery:
    channel: str
    ok: bool = False
    error: str | None = None
    attempts: int = 0
    elapsed_ms: float = 0.0


def _attempt(
    channel: Channel, alert: Alert, result: Delivery, deadline: float, retries: int
) -> None:
    started = time.monotonic()
    try:
        for attempt in range(retries + 1):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            result.attempts = attempt + 1
            try:
                channel.send(alert, timeout=left)
            except DeliveryError as exc:
                result.error = _error(str(exc))
                pause = BACKOFF * 2**attempt
                if not exc.retryable or time.monotonic() + pause >= deadline:
                    break
                time.sleep(pause)
            else:
                result.ok, result.error = True, None
                break
    except Exception as exc:  # a channel bug is reported like any failure, never raised
        result.error = _error(f"{type(exc).__name__}: {exc}")
    result.elapsed_ms = round((time.monotonic() - started) * 1000, 1)


def deliver(
    channels: Sequence[Channel], alert: Alert, *, timeout: float = 10.0, retries: int = 2
) -> list[Delivery]:
    """One :class:`Delivery` per channel, in order; waits at most about ``timeout`` seconds."""
    return deliver_many([(channels, alert)], timeout=timeout, retries=retries)[0]


def deliver_many(
    jobs: Sequence[tuple[Sequence[Channel], Alert]], *, timeout: float = 10.0, retries: int = 2
) -> list[list[Delivery]]:
    """Every (channels, alert) at once: all of them together take about ``timeout`` at most."""
    start = time.monotonic()
    deadline = start + timeout
    work = []
    for channels, alert in jobs:
        for channel in channels:
            result = Delivery(channel=getattr(channel, "name", type(channel).__name__))
            thread = threading.Thread(
                target=_attempt, args=(channel, alert, result, deadline, retries),
                name=f"watchdog-alert-{result.channel}", daemon=True,
            )  # fmt: skip
            thread.start()
            work.append((alert, thread, result))
    out: dict[int, list[Delivery]] = {id(alert): [] for _, alert in jobs}
    for alert, thread, result in work:
        thread.join(max(0.0, deadline - time.monotonic()) + 0.05)
        if thread.is_alive():
            # Blocked in a call without its own timeout: stop waiting and report a snapshot
            # (the thread may still finish later; it is a daemon and touches nothing else).
            late = f"timed out after {timeout:.1f} s" + (
                f" ({result.error})" if result.error else ""
            )
            elapsed = round((time.monotonic() - start) * 1000, 1)
            result = replace(result, ok=False, error=late, elapsed_ms=elapsed)
        out[id(alert)].append(result)
        if not result.ok:
            logger.warning(
                "celery_watchdog: alert %s via %s failed after %d attempt(s): %s",
                alert.kind, result.channel, result.attempts, result.error,
            )  # fmt: skip
    return [out[id(alert)] for _, alert in jobs]

"""Channels: one small class per destination, each with one method, built from a URL.

``channel_from_url`` is what start-up validation calls: a URL it cannot turn into a channel
raises a ValueError naming the URL, so a typo stops start-up instead of muting alerts.
"""

from __future__ import annotations

import importlib.util
from typing import Protocol

from ..http import shown
from ..model import Alert
from .log import LogChannel
from .sentry import SentryChannel
from .slack import SlackChannel
from .smtp import SmtpChannel
from .webhook import WebhookChannel


class Channel(Protocol):
    name: str  # safe to show: no password, token or secret

    def send(self, alert: Alert, timeout: float = 10.0) -> None:
        """Deliver ``alert`` within ``timeout`` seconds or raise DeliveryError."""


def channel_from_url(url: str) -> Channel:
    if not isinstance(url, str) or not url.strip():
        # Never the value itself: a mistyped setting may hold another channel's secret.
        what = repr(url) if isinstance(url, str) else f"of type {type(url).__name__}"
        raise ValueError(f"alert channel {what} is not valid: expected a channel URL")
    if url == "log":
        return LogChannel()
    if url == "sentry":
        return SentryChannel()
    if url.startswith("webhook+"):
        return WebhookChannel(url)
    if url.startswith("slack+"):
        return SlackChannel(url)
    if url.startswith(("smtp://", "smtps://")):
        return SmtpChannel(url)
    if "://" in url and importlib.util.find_spec("apprise") is not None:
        # apprise is an optional extra: its channel module imports it, so only when installed
        from .apprise_url import AppriseChannel

        return AppriseChannel(url)
    raise ValueError(
        f"alert channel {shown(url)!r} is not valid: expected log, sentry, webhook+https://…, "
        "slack+https://…, smtp://…?to=… or an Apprise URL (with apprise installed)"
    )


__all__ = ["Channel", "channel_from_url"]

"""Any other URL: handed to Apprise (Teams, Discord, PagerDuty, Telegram… the long tail)."""

from __future__ import annotations

import apprise

from ..http import DeliveryError, channel_name
from ..model import Alert

MAX_CHARS = 4000  # below the tightest common limit (Discord 2000 is cut by Apprise itself)


class AppriseChannel:
    def __init__(self, url: str) -> None:
        self.apprise = apprise.Apprise()
        self.name = channel_name(url)
        if not self.apprise.add(url):
            raise ValueError(f"alert channel {self.name!r} is not a URL Apprise accepts")

    def send(self, alert: Alert, timeout: float = 10.0) -> None:
        # Apprise has no per-call timeout; deliver() bounds the wait from the outside.
        ok = self.apprise.notify(title=alert.title()[:250], body=alert.text(max_chars=MAX_CHARS))
        if not ok:
            raise DeliveryError(f"{self.name}: Apprise could not notify", retryable=True)

"""Who gets each alert, and how it went: severity routes, delivery, its record, listeners.

:func:`send` delivers a batch of alerts to the channels of their severities all at once
(:func:`~.alerts.deliver.deliver_many`), records each channel's outcome for ``status`` and
hands every alert to the in-process listeners (``celery_watchdog.testing``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the runtime is above alerts; they are handed it
    from ..runtime import Watchdog

from ..store import Store
from . import Alert, Channel, Delivery, channel_from_url
from .deliver import deliver_many

logger = logging.getLogger("celery_watchdog")

# Called with each alert and its deliveries in the process that sent it (celery_watchdog.testing).
listeners: list[Callable[[Alert, list[Delivery]], None]] = []
muted = threading.Event()  # set: alerts reach the listeners only, no channel (tests)


@dataclass(frozen=True)
class Notice:
    """One message sent: the alert and what each channel made of it."""

    alert: Alert
    deliveries: tuple[Delivery, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.alert.kind, "summary": self.alert.summary,
            "severity": self.alert.severity, "incident": self.alert.incident.id,
            "notice": self.alert.incident.notice,
            "deliveries": [
                {"channel": d.channel, "ok": d.ok, "error": d.error, "attempts": d.attempts}
                for d in self.deliveries
            ],
        }  # fmt: skip


class Router:
    """The channels of each severity: ``watchdog_alert_routes``, else ``alert_channels``."""

    def __init__(self, channels: Sequence[str], routes: dict[str, tuple[str, ...]]) -> None:
        self._built: dict[str, Channel] = {}
        self.default = [self.channel(url) for url in channels]
        self.routes = {sev: [self.channel(url) for url in urls] for sev, urls in routes.items()}

    def channel(self, url: str) -> Channel:
        if url not in self._built:
            self._built[url] = channel_from_url(url)
        return self._built[url]

    def built(self, url: str) -> list[Channel]:
        """The configured channel of ``url``, if it is one."""
        return [self._built[url]] if url in self._built else []

    def for_severity(self, severity: str) -> list[Channel]:
        return self.routes.get(severity, self.default)

    def every(self) -> list[Channel]:
        """Each configured channel once (what ``test-alert`` tries)."""
        return list(self._built.values())


def router_of(wd: Watchdog) -> Router:
    if wd.alert_router is None:
        wd.alert_router = Router(wd.settings.alert_channels, wd.settings.alert_routes)
    router: Router = wd.alert_router
    return router


def send(
    wd: Watchdog,
    store: Store | None,
    alerts: Sequence[Alert],
    *,
    channels: list[Channel] | None = None,
) -> list[Notice]:
    """Deliver each alert to its severity's channels, all at once; record how it went."""
    if not alerts:
        return []
    router = router_of(wd)
    jobs = [(router.for_severity(a.severity) if channels is None else channels, a) for a in alerts]
    if muted.is_set():
        jobs = [([], a) for _, a in jobs]
    results = deliver_many(jobs, timeout=wd.settings.alert_timeout)
    notices = [Notice(a, tuple(r)) for (_, a), r in zip(jobs, results, strict=True)]
    for notice in notices:
        for listener in list(listeners):
            try:
                listener(notice.alert, list(notice.deliveries))
            except Exception:
                logger.debug("celery_watchdog: alert listener failed", exc_info=True)
    if store is not None:
        now = alerts[0].at
        try:
            store.channels.record(
                [(d.channel, d.ok, d.error, now) for n in notices for d in n.deliveries]
            )
        except Exception as exc:  # the alerts went out; only their bookkeeping failed
            logger.warning("celery_watchdog: could not record alert deliveries: %s", exc)
    return notices

"""Capture and assert on the alerts your own tests cause.

    from celery_watchdog.testing import capture_alerts, run_check

    def test_a_stalled_export_pages_billing(app):
        ...                                   # make a run stall in your test worker
        with capture_alerts() as alerts:      # channels are not contacted
            run_check(app)                    # one monitor pass, in this process
        alert = alerts.assert_sent(kind="stuck", task_name="reports.build", severity="P2")
        assert alert.context == {"account_id": "12"}

With pytest, the ``watchdog_alerts`` fixture is ``capture_alerts()`` for one test. Alerts are
captured in the process that sends them: run the pass with :func:`run_check` (or
``celery watchdog check`` in-process), not in a worker subprocess.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from .alerts import Alert, Delivery, notify
from .monitor.check import PassReport, run_pass
from .wiring import install

_lock = threading.Lock()


class CapturedAlerts(list[Alert]):
    """The alerts sent while capturing, in order (a list), with helpers to assert on them."""

    def __init__(self) -> None:
        super().__init__()
        self.deliveries: list[tuple[Alert, list[Delivery]]] = []

    def _add(self, alert: Alert, deliveries: list[Delivery]) -> None:
        with _lock:
            self.append(alert)
            self.deliveries.append((alert, deliveries))

    def matching(self, **match: Any) -> list[Alert]:
        """Alerts whose fields equal every given value (``notice=`` matches the incident's)."""
        return [a for a in self if _matches(a, match)]

    def assert_sent(self, **match: Any) -> Alert:
        """The one alert matching; AssertionError (listing what was sent) if not exactly one."""
        found = self.matching(**match)
        if len(found) != 1:
            raise AssertionError(
                f"expected 1 alert matching {match}, got {len(found)}; sent: {self._listing()}"
            )
        return found[0]

    def assert_not_sent(self, **match: Any) -> None:
        found = self.matching(**match)
        if found:
            raise AssertionError(f"expected no alert matching {match}; sent: {self._listing()}")

    def payloads(self) -> list[dict[str, Any]]:
        """The webhook bodies (DESIGN §2 JSON) of every captured alert."""
        return [a.as_dict() for a in self]

    def _listing(self) -> str:
        return "; ".join(f"{a.kind}/{a.task_name}/{a.incident.notice}" for a in self) or "none"


def _matches(alert: Alert, match: dict[str, Any]) -> bool:
    for key, want in match.items():
        have = getattr(alert.incident, key) if key == "notice" else getattr(alert, key)
        if have != want:
            return False
    return True


@contextlib.contextmanager
def capture_alerts(deliver: bool = False) -> Iterator[CapturedAlerts]:
    """Collect every alert this process sends; with ``deliver=False`` no channel is contacted."""
    captured = CapturedAlerts()
    notify.listeners.append(captured._add)
    was_muted = notify.muted.is_set()
    if not deliver:
        notify.muted.set()
    try:
        yield captured
    finally:
        notify.listeners.remove(captured._add)
        if not was_muted:
            notify.muted.clear()


def run_check(app: Any) -> PassReport:
    """One monitor pass for ``app`` in this process, exactly as the beat task runs it."""
    wd = install(app)
    if wd is None:
        raise RuntimeError("the watchdog is disabled for this app (watchdog_enabled=False)")
    return run_pass(wd, wd.monitor_store())


__all__ = ["CapturedAlerts", "capture_alerts", "run_check"]

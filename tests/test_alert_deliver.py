"""deliver(): a channel's bug or a call that ignores its timeout never reaches the caller."""

from __future__ import annotations

import threading

from celery_watchdog.alerts import Alert, DeliveryError, deliver

NOW = 1_800_000_000.0


class Broken:
    name = "broken"

    def __init__(self, release: threading.Event | None = None) -> None:
        self.release = release
        self.calls = 0

    def send(self, alert: Alert, timeout: float = 10.0) -> None:
        self.calls += 1
        if self.release:  # a call that ignores its timeout
            self.release.wait(5)
            return
        raise RuntimeError("bug in a channel")


def test_a_channel_bug_is_reported_as_a_failed_delivery_and_never_raised() -> None:
    [result] = deliver([Broken()], Alert.test(NOW))
    assert not result.ok and result.error == "RuntimeError: bug in a channel"
    assert result.attempts == 1


def test_a_channel_that_ignores_its_timeout_is_reported_as_timed_out() -> None:
    release = threading.Event()
    try:
        [result] = deliver([Broken(release)], Alert.test(NOW), timeout=0.2)
    finally:
        release.set()
    assert not result.ok and str(result.error).startswith("timed out after 0.2 s")


def test_delivery_errors_say_whether_a_retry_can_help() -> None:
    assert DeliveryError("503", retryable=True).retryable
    assert not DeliveryError("400", retryable=False).retryable

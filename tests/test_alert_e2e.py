"""Alerts from real runs of a real (in-process) worker, through every channel at once.

A task stalls holding a password and a card token in its kwargs; the monitor judges it stuck
and the alert goes out through log, webhook, Slack, email (aiosmtpd) and Sentry (its own HTTP
transport to a local endpoint). Each payload names the account; none holds a secret.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import pytest

from celery_watchdog import WatchedTask, install
from celery_watchdog.alerts.incidents import Alerter
from celery_watchdog.model.rules import blindness
from celery_watchdog.monitor.check import run_pass
from celery_watchdog.testing import CapturedAlerts, capture_alerts, run_check
from tests.alert_peers import SECRETS, Mailbox, Receiver, sentry_events
from tests.helpers import make_app, run_worker, wait_for

pytestmark = pytest.mark.timeout(90)


def stalling_app(redis_url: str, channels: list[str], **conf: Any) -> tuple[Any, Any, Any]:
    app = make_app(
        redis_url, watchdog_on_stuck="alert", watchdog_snapshot_interval=0.2,
        watchdog_flush_interval=0.2, watchdog_alert_channels=channels, **conf,
    )  # fmt: skip
    release = threading.Event()

    @app.task(name="billing.charge", base=WatchedTask, bind=True, shared=False,
              heartbeat_timeout=1, alert_context=("account_id",), owner="billing")  # fmt: skip
    def charge(self: WatchedTask, account_id: int, password: str, card_token: str) -> None:
        self.heartbeat(step="Charge card", processed=0, total=1)
        release.wait(30)

    return app, charge, release


def test_a_secret_in_task_kwargs_appears_in_no_channel_and_the_account_in_each(
    redis_url: str, receiver: Receiver, sentry: Receiver, mailbox: tuple[Mailbox, int],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    box, port = mailbox
    channels = [
        "log", "sentry", "webhook+" + receiver.url("/hook"), "slack+" + receiver.url("/slack"),
        f"smtp://127.0.0.1:{port}/?to=oncall@example.com&from=watchdog@example.com",
    ]  # fmt: skip
    app, charge, release = stalling_app(redis_url, channels)
    wd = install(app)
    assert wd is not None
    store = wd.store()
    with run_worker(app), caplog.at_level(logging.INFO, logger="celery_watchdog"):
        result = charge.apply_async(
            kwargs={"account_id": 12, "password": SECRETS[0], "card_token": SECRETS[1]}
        )
        wait_for(lambda: store.runs.running(), what="the run recorded")

        def alerted() -> Any:
            return [n for n in run_pass(wd, store).notices if n.alert.kind == "stuck"]

        [notice] = wait_for(alerted, timeout=20, interval=0.3, what="a stuck alert")
        release.set()
        result.get(timeout=10)
    assert all(d.ok for d in notice.deliveries), notice.deliveries
    sentry_sdk_flush()
    payloads = {
        "webhook": receiver.bodies("/hook")[0], "slack": receiver.bodies("/slack")[0],
        "email": box.messages[0], "sentry": json.dumps(sentry_events(sentry)).encode(),
        "log": caplog.text.encode(),
    }  # fmt: skip
    for channel, payload in payloads.items():
        for secret in SECRETS:
            assert secret.encode() not in payload, f"{secret} leaked through {channel}"
    body = json.loads(payloads["webhook"])
    assert body["task"]["context"] == {"account_id": "12"} and body["owner"] == "billing"
    assert body["summary"].startswith("Charge card (billing.charge) for account 12")
    assert body["task"]["id"] == result.id and body["step"] == "Charge card"
    assert b"account 12" in payloads["slack"] and b"account 12" in payloads["email"]


def bodies_of(receiver: Receiver, path: str) -> list[dict[str, Any]]:
    return [json.loads(b) for b in receiver.bodies(path)]


def sentry_sdk_flush() -> None:
    import sentry_sdk

    sentry_sdk.flush(timeout=5)


def test_a_worker_alerts_once_when_nobody_watches_and_the_next_pass_resolves_it(
    redis_url: str, receiver: Receiver
) -> None:
    app = make_app(redis_url, watchdog_check_interval=0.3, watchdog_snapshot_interval=0.2,
                   watchdog_alert_channels=["webhook+" + receiver.url("/blind")])  # fmt: skip
    wd = install(app)
    assert wd is not None
    store = wd.store()
    with run_worker(app) as worker:
        run_pass(wd, store)  # a pass once ran; then nobody runs them
        wait_for(lambda: receiver.bodies("/blind"), timeout=10, what="the blind alert")
        # Another worker seeing it too (as every worker does) sends nothing more.
        reason = blindness(store.monitor.last_pass(), store.now(), 0.3)
        assert reason and not Alerter(wd, store, store.now()).blind(reason, "other@host")
        time.sleep(1.0)  # the worker keeps seeing it
        assert len(receiver.bodies("/blind")) == 1
        assert bodies_of(receiver, "/blind")[0]["worker"] == worker.hostname
        run_pass(wd, store)
        bodies = bodies_of(receiver, "/blind")
    assert [b["incident"]["notice"] for b in bodies] == ["opened", "resolved"]
    assert bodies[0]["kind"] == "watchdog_blind" and bodies[0]["severity"] == "P1"
    assert "no monitor pass" in bodies[0]["summary"]
    assert "beat" in bodies[0]["next_step"]


def test_capture_alerts_lets_a_users_test_assert_on_alerts_without_contacting_channels(
    redis_url: str, receiver: Receiver
) -> None:
    app, charge, release = stalling_app(redis_url, ["webhook+" + receiver.url("/never")])
    with run_worker(app):
        charge.delay(account_id=7, password="x", card_token="y")

        def caught() -> CapturedAlerts | None:
            with capture_alerts() as alerts:
                run_check(app)
            return alerts or None

        alerts = wait_for(caught, timeout=20, interval=0.3, what="a captured alert")
        release.set()
    alert = alerts.assert_sent(kind="stuck", task_name="billing.charge", notice="opened")
    assert alert.context == {"account_id": "7"} and alert.severity == "P2"
    alerts.assert_not_sent(kind="lost")
    assert alerts.payloads()[0]["task"]["name"] == "billing.charge"
    assert not receiver.posts, "capture_alerts() contacts no channel"
    with pytest.raises(AssertionError, match="expected 1 alert matching"):
        alerts.assert_sent(kind="slow")


def test_the_pytest_fixture_captures_what_is_sent_and_contacts_no_channel(
    watchdog_alerts: CapturedAlerts, redis_url: str, receiver: Receiver
) -> None:
    from celery_watchdog.alerts import Alert
    from celery_watchdog.alerts.notify import send

    wd = install(make_app(redis_url, watchdog_alert_channels=["webhook+" + receiver.url("/x")]))
    assert wd is not None
    [notice] = send(wd, wd.store(), [Alert.test(time.time())])
    assert notice.deliveries == ()
    assert watchdog_alerts.assert_sent(kind="test").task_name == "celery_watchdog.test"
    assert not receiver.posts

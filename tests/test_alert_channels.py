"""Channels against real local peers: an HTTP receiver, an aiosmtpd server, sentry-sdk's own
HTTP transport posting envelopes to a local endpoint, and Apprise posting to the receiver."""

from __future__ import annotations

import hmac
import json
import logging
import time
from email import message_from_bytes

import pytest
import sentry_sdk

from celery_watchdog.alerts import channel_from_url, deliver
from celery_watchdog.alerts.channels.webhook import sign
from tests.alert_peers import SECRETS, Mailbox, Receiver, secret_alert, sentry_events


def test_webhook_posts_the_alert_body_with_a_signature_that_verifies(receiver: Receiver) -> None:
    alert = secret_alert()
    [result] = deliver([channel_from_url("webhook+" + receiver.url("/hook?secret=k3y&x=1"))], alert)
    assert result.ok and result.attempts == 1, result
    [(path, headers, body)] = receiver.posts
    assert path == "/hook?x=1"  # the secret never leaves the process
    doc = json.loads(body)
    assert doc.pop("text") == alert.text()  # the same facts as lines, for simple receivers
    assert doc == json.loads(json.dumps(alert.as_dict(max_chars=4000)))
    assert hmac.compare_digest(headers["X-Watchdog-Signature"], sign("k3y", body))


def test_slack_gets_block_kit_with_header_fields_context_and_a_plain_text_fallback(
    receiver: Receiver,
) -> None:
    [result] = deliver([channel_from_url("slack+" + receiver.url("/slack"))], secret_alert())
    assert result.ok, result
    payload = json.loads(receiver.bodies("/slack")[0])
    assert [b["type"] for b in payload["blocks"]] == ["header", "section", "section", "section",
                                                      "context"]  # fmt: skip
    assert payload["blocks"][0]["text"]["text"].startswith("[P2] stuck: Charge card")
    assert any("*Affected*" in f["text"] for f in payload["blocks"][2]["fields"])
    assert payload["text"].startswith("[P2] stuck:")


def test_email_has_a_plain_text_and_an_escaped_html_part(mailbox: tuple[Mailbox, int]) -> None:
    box, port = mailbox
    url = f"smtp://127.0.0.1:{port}/?to=ops@example.com,oncall@example.com&from=wd@example.com"
    [result] = deliver([channel_from_url(url)], secret_alert())
    assert result.ok, result
    message = message_from_bytes(box.messages[0])
    assert message["To"] == "ops@example.com, oncall@example.com"
    parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in message.walk()
             if not p.is_multipart()}  # fmt: skip
    assert "Next step: not idempotent" in parts["text/plain"]
    assert "<th align='left' valign='top'>Next step</th>" in parts["text/html"]
    assert "'Charge card'" not in parts["text/html"]  # quotes escaped in HTML
    assert "&#x27;Charge card&#x27;" in parts["text/html"]


def test_sentry_event_has_message_level_tags_context_and_fingerprint(sentry: Receiver) -> None:
    [result] = deliver([channel_from_url("sentry")], secret_alert())
    assert result.ok, result
    sentry_sdk.flush(timeout=5)
    [event] = sentry_events(sentry)
    assert "Charge card (billing.charge)" in event["message"]
    assert event["level"] == "error"
    assert event["fingerprint"] == ["stuck", "billing.charge"]
    assert {"task": "billing.charge", "kind": "stuck", "queue": "billing"}.items() <= event[
        "tags"
    ].items()
    assert event["contexts"]["task"]["kwargs"].count("[redacted]") == 2


def test_sentry_without_an_initialised_sdk_fails_without_retrying() -> None:
    sentry_sdk.get_global_scope().set_client(None)
    [result] = deliver([channel_from_url("sentry")], secret_alert())
    assert not result.ok and result.attempts == 1 and "not initialised" in str(result.error)


def test_a_channel_that_never_answers_does_not_hold_back_the_others(
    receiver: Receiver, mailbox: tuple[Mailbox, int]
) -> None:
    urls = ["webhook+" + receiver.url("/hang"), "webhook+" + receiver.url("/ok"),
            f"smtp://127.0.0.1:{mailbox[1]}/?to=ops@example.com", "log"]  # fmt: skip
    started = time.monotonic()
    hung, *others = deliver([channel_from_url(u) for u in urls], secret_alert(), timeout=1.5)
    assert time.monotonic() - started < 2.5  # its timeout + 1 s at most
    assert not hung.ok and "timed out" in str(hung.error)
    assert all(d.ok for d in others), others
    assert receiver.bodies("/ok") and mailbox[0].messages


def test_a_server_error_is_retried_and_a_client_error_is_not(receiver: Receiver) -> None:
    receiver.statuses = {"/flaky": [503, 502, 200], "/bad": [400]}
    flaky, bad = deliver(
        [channel_from_url("webhook+" + receiver.url(p)) for p in ("/flaky", "/bad")],
        secret_alert(), timeout=5.0,
    )  # fmt: skip
    assert flaky.ok and flaky.attempts == 3
    assert not bad.ok and bad.attempts == 1 and "400" in str(bad.error)
    assert len(receiver.bodies("/bad")) == 1


def test_apprise_urls_are_delivered_through_apprise(receiver: Receiver) -> None:
    url = receiver.url("/apprise").replace("http://", "json://")
    [result] = deliver([channel_from_url(url)], secret_alert())
    assert result.ok, result
    assert "Charge card" in json.loads(receiver.bodies("/apprise")[0])["title"]


def test_a_secret_in_task_kwargs_appears_in_no_channel_payload(
    sentry: Receiver, mailbox: tuple[Mailbox, int], caplog: pytest.LogCaptureFixture
) -> None:
    urls = ["webhook+" + sentry.url("/hook"), "slack+" + sentry.url("/slack"),
            f"smtp://127.0.0.1:{mailbox[1]}/?to=ops@example.com", "log", "sentry",
            sentry.url("/apprise").replace("http://", "json://")]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="celery_watchdog"):
        results = deliver([channel_from_url(u) for u in urls], secret_alert())
    sentry_sdk.flush(timeout=5)
    assert all(d.ok for d in results), results
    payloads = [b for _, _, b in sentry.posts] + mailbox[0].messages + [caplog.text.encode()]
    assert len(payloads) == 6 and sentry_events(sentry)
    for payload in payloads:
        assert not any(s.encode() in payload for s in SECRETS), payload[:300]
    log = json.loads(caplog.records[-1].getMessage())
    assert (log["job"], log["run_id"], log["outcome"]) == ("billing.charge", "7f3a9c2e-1", "stuck")
    assert log["elapsed_ms"] == 600_000 and log["action"] == "dead_lettered"

"""Secrets by value: a password in a URL, a token in a step name, a key in an exception reach
no alert body or text, whatever field of the run carries them. Pure: no I/O.

The run here holds raw text, as a record stored by an older version (or a path that forgot to
scrub) would: the alert must clean it all the same.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from celery_watchdog.alerts import Alert, Incident
from celery_watchdog.alerts.channels.slack import blocks
from celery_watchdog.alerts.channels.smtp import SmtpChannel
from celery_watchdog.config import DEFAULT_REDACT_KEYS
from celery_watchdog.dlq import DeadLetter
from celery_watchdog.model.policy import TaskPolicy
from celery_watchdog.model.records import Finding, Run
from celery_watchdog.model.redact import Redactor

NOW = 1_800_000_000.0
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
SECRETS = {
    "url password": ("postgres://admin:pg-Pa55w0rd@db.internal/app", "pg-Pa55w0rd"),
    "query password": ("https://api.example.com/v1?user=bob&password=qu3ry-pw", "qu3ry-pw"),
    "bearer": ("Authorization: Bearer 0a1b2c3d4e5f6a7b8c9d", "0a1b2c3d4e5f6a7b8c9d"),
    "basic": ("Basic YWRtaW46aHVudGVyMg==", "YWRtaW46aHVudGVyMg"),
    "jwt": (f"token was {JWT}", JWT),
    "stripe": ("sk_live_51HqLyjWDarjtT1zdp7dc9", "51HqLyjWDarjtT1zdp7dc9"),
    "slack": ("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp", "AbCdEfGhIjKlMnOp"),
    "github": ("ghp_16C7e42F292c6912E7710c838347Ae178B4a", "16C7e42F292c6912E7710c838347Ae178B4a"),
    "aws key id": ("AKIAIOSFODNN7EXAMPLE", "IOSFODNN7EXAMPLE"),
    "aws secret": (
        "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    "password pair": ("login failed: password=hunter2-xyz", "hunter2-xyz"),
    "custom pattern": ("ticket ACME-778899 leaked", "ACME-778899"),
}
REDACTOR = Redactor(DEFAULT_REDACT_KEYS, patterns=[r"ACME-\d{6}"])


def alert_carrying(text: str, redactor: Redactor = REDACTOR) -> Alert:
    run = Run(
        task_id="7f3a9c2e-0000-4000-8000-000000000001", name="billing.charge", state="STARTED",
        worker="w1@host", queue="billing", started=NOW - 600, last_heartbeat=NOW - 400,
        step=f"calling {text}", args=f"('{text}', 7)", kwargs=f"{{'dsn': '{text}'}}",
        exception=f"ConnectionError({text!r})", context={"account": text},
        details={"note": text},
    )  # fmt: skip
    finding = Finding(kind="stuck", reason=f"quiet; last error {text}", run=run, action="none",
                      diagnosis=f"blocked in connect({text})")  # fmt: skip
    policy = TaskPolicy(alert_context=("note",))
    return Alert.from_finding(finding, policy, redactor=redactor, now=NOW,
                              incident=Incident(id="i-1", resolution=text))  # fmt: skip


def rendered(alert: Alert) -> list[str]:
    """Everything a channel would send: the webhook body and text, Slack, email, record."""
    mail = SmtpChannel("smtp://127.0.0.1:25/?to=ops@example.com").message(alert)
    return [
        json.dumps(alert.as_dict()),
        alert.text(),
        alert.title(),
        json.dumps(blocks(alert)),
        mail.as_string(),
        json.dumps(alert.record()),
    ]


@pytest.mark.parametrize("shape", sorted(SECRETS))
def test_a_secret_value_in_any_field_of_a_run_reaches_no_alert_output(shape: str) -> None:
    text, secret = SECRETS[shape]
    for out in rendered(alert_carrying(text)):
        assert secret not in out, f"{shape} leaked"
        assert "[redacted]" in out


def test_an_alert_read_back_from_an_older_unscrubbed_record_is_scrubbed_too() -> None:
    text, secret = SECRETS["url password"]
    record: dict[str, Any] = {**alert_carrying("x").record(), "summary": text, "step": text,
                              "args": text, "context": {"db": text}, "diagnosis": text}  # fmt: skip
    for out in rendered(Alert.from_record(record)):
        assert secret not in out
        assert "postgres://admin:[redacted]@db.internal" in out  # the user and host stay


def test_a_dead_letter_entry_shows_and_exports_no_secret_value() -> None:
    text, secret = SECRETS["url password"]
    entry = DeadLetter(task_id="t-1", name="billing.charge", reason=text, args=f"('{text}',)",
                       last_error=text, traceback=f"Traceback:\n{text}", step=text)  # fmt: skip
    assert secret not in json.dumps(entry.to_doc(REDACTOR))
    shown = entry.scrubbed(REDACTOR)
    assert secret not in repr(shown) and shown.traceback == (
        "Traceback:\npostgres://admin:[redacted]@db.internal/app"
    )


def test_a_dead_letter_document_has_no_infinite_or_nan_number() -> None:
    entry = DeadLetter(task_id="t-1", started=float("inf"), last_heartbeat=float("nan"))
    doc = entry.to_doc(REDACTOR)
    assert doc["started"] is None and doc["last_heartbeat"] is None
    json.dumps(doc, allow_nan=False)

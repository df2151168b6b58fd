"""Pure tests of the alert's words: summary, severity, next step and size caps. No I/O."""

from __future__ import annotations

import json
from typing import Any

import pytest

from celery_watchdog.alerts import Alert, Incident, channel_from_url, default_severity, wording
from celery_watchdog.config import DEFAULT_REDACT_KEYS
from celery_watchdog.model.policy import TaskPolicy
from celery_watchdog.model.records import Finding, Run
from celery_watchdog.model.redact import Redactor

NOW = 1_800_000_000.0
TASK_ID = "7f3a9c2e-0000-4000-8000-000000000001"
REDACTOR = Redactor(DEFAULT_REDACT_KEYS)


def finding(kind: str, action: str = "none", **run: Any) -> Finding:
    fields: dict[str, Any] = {
        "task_id": TASK_ID, "name": "reports.build", "state": "STARTED", "worker": "w1@host",
        "queue": "reports", "started": NOW - 30 * 60, "last_heartbeat": NOW - 21 * 60,
        "last_progress": NOW - 21 * 60, "step": "Export to PDF", "processed": 40, "total": 100,
        "args": "(12, '2026-10')", "kwargs": "{}", "deliveries": 1,
    }  # fmt: skip
    fields.update(run)
    return Finding(kind=kind, reason="why", run=Run(**fields), action=action, new_task_id="n-1")


def alert(kind: str, action: str = "none", policy: TaskPolicy | None = None, **kw: Any) -> Alert:
    return Alert.from_finding(
        finding(kind, action), policy or TaskPolicy(alert_context=("account_id",)),
        redactor=REDACTOR, now=NOW, context_values={"account_id": 12}, **kw,
    )  # fmt: skip


def test_stuck_summary_names_the_step_the_customer_and_how_long_it_is_quiet() -> None:
    assert alert("stuck").summary == (
        "Export to PDF (reports.build) for account 12 has made no progress for 21 min"
    )


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("slow", "is taking longer than usual (30 min so far)"),
        ("overtime", "has run past its time limit (30 min so far)"),
        ("lost", "was interrupted: its worker w1@host stopped while running it"),
        ("poison", "was delivered 1 times without finishing: it is set aside in the dead-letter "
                   "queue, not run again"),
        ("duplicate", "is running twice at the same time"),
        ("failed", "failed: why"),
    ],
)
def test_summary_of_each_kind_says_what_happened_in_plain_words(kind: str, words: str) -> None:
    assert alert(kind).summary == f"Export to PDF (reports.build) for account 12 {words}"


def test_summaries_of_queue_blind_and_test_alerts_do_not_pretend_to_be_about_one_task() -> None:
    # A queue alert's reason is its whole summary line ("Send password reset email: …").
    assert alert("queue_backlog").summary == "Work is piling up: why"
    assert alert("queue_stalled").summary == "Work has stopped: why"
    assert alert("missed_run").summary == "Scheduled work missed: why"
    assert alert("watchdog_blind").summary.startswith("Nobody is watching the background tasks")
    assert alert("test").summary.startswith("Test alert from celery_watchdog")


@pytest.mark.parametrize(
    ("kind", "severity"),
    [
        ("lost", "P1"), ("watchdog_blind", "P1"), ("missed_run", "P1"),
        ("stuck", "P2"), ("poison", "P2"), ("queue_backlog", "P2"), ("failed", "P2"),
        ("queue_stalled", "P1"), ("failure_spike", "P2"), ("retry_storm", "P3"),
        ("slow", "P3"), ("overtime", "P3"), ("test", "P3"),
    ],
)  # fmt: skip
def test_every_kind_has_its_default_severity(kind: str, severity: str) -> None:
    assert default_severity(kind) == severity
    assert alert(kind).severity == severity


def test_a_given_severity_overrides_the_default_and_must_be_p1_to_p3() -> None:
    assert alert("slow", severity="P1").severity == "P1"
    with pytest.raises(ValueError, match="P4"):
        alert("slow", severity="P4")


def test_a_test_alert_is_labelled_as_a_test_with_nothing_to_do() -> None:
    a = Alert.test(NOW)
    assert (a.kind, a.severity) == ("test", "P3")
    assert a.text().startswith("[P3] test: Test alert from celery_watchdog")
    assert a.next_step == "nothing to do: this is a test"


def test_dead_lettered_idempotent_task_is_safe_to_replay_with_the_command() -> None:
    a = alert("stuck", "dead_lettered", TaskPolicy(idempotent=True), app_name="shop")
    assert (
        a.next_step
        == f"safe to replay: task is idempotent — celery -A shop watchdog dlq replay {TASK_ID}"
    )


def test_dead_lettered_task_that_is_not_idempotent_asks_to_check_for_duplicates_first() -> None:
    a = alert("poison", "dead_lettered", TaskPolicy(idempotent=False))
    assert a.next_step.startswith("not idempotent: check for a duplicate charge/side effect")
    assert a.next_step.endswith(f"celery -A proj watchdog dlq show {TASK_ID}")


@pytest.mark.parametrize(
    ("kind", "action", "start"),
    [
        ("stuck", "requeued", "requeued as n-1; nothing to do unless it fails again"),
        ("slow", "none", "no action needed yet;"),
        ("duplicate", "none", "two runs of the same message are in flight: make sure it is idem"),
        ("lost", "none", "the broker delivers it again"),
    ],
)
def test_next_step_matches_what_the_system_did(kind: str, action: str, start: str) -> None:
    assert alert(kind, action).next_step.startswith(start)


def test_alert_carries_every_design_field_in_its_webhook_body() -> None:
    body = alert("stuck", "revoked", incident=Incident("inc-1", "open")).as_dict()
    assert set(body) >= {
        "kind", "summary", "task", "queue", "worker", "started_at", "last_heartbeat_at", "step",
        "processed", "total", "action", "owner", "runbook", "next_step", "severity", "incident",
        "diagnosis",
    }  # fmt: skip
    assert set(body["task"]) == {"id", "name", "args", "kwargs", "context"}
    assert body["incident"] == {
        "id": "inc-1", "state": "open", "notice": "opened", "reminders": 0, "resolution": None,
    }  # fmt: skip
    assert body["task"]["context"] == {"account_id": "12"}
    assert body["started_at"] == "2027-01-15T07:30:00Z"


def test_context_values_named_like_secrets_are_redacted() -> None:
    a = Alert.from_finding(
        finding("stuck"), TaskPolicy(), redactor=REDACTOR, now=NOW,
        context_values={"account_id": 12, "api_token": "sk_live_42"},
    )  # fmt: skip
    assert a.context == {"account_id": "12", "api_token": "[redacted]"}
    assert a.summary.startswith("Export to PDF (reports.build) for account 12 has made")
    assert "sk_live_42" not in a.text() and "sk_live_42" not in str(a.as_dict())


def test_context_comes_from_heartbeat_details_when_no_values_are_given() -> None:
    run_finding = finding("stuck", details={"account_id": 99, "other": 1})
    a = Alert.from_finding(
        run_finding, TaskPolicy(alert_context=("account_id",)), redactor=REDACTOR, now=NOW
    )
    assert a.context == {"account_id": "99"}


def test_text_answers_what_who_since_where_what_was_done_and_next() -> None:
    text = alert("stuck", "revoked", TaskPolicy(owner="billing", runbook="https://wiki/rb")).text()
    assert text.splitlines()[0].startswith("[P2] stuck: Export to PDF (reports.build)")
    for label in ("What broke", "Affected", "Since", "Where", "System did", "Next step", "Owner"):
        assert f"\n{label}: " in text
    assert "step 'Export to PDF'; 40/100 done; worker w1@host; queue reports" in text
    assert "(21 min ago)" in text


def test_size_caps_cut_the_text_and_every_field() -> None:
    a = alert("failed", **{})
    long = Alert(**{**a.__dict__, "kwargs": "x" * 5000, "context": {"note": "y" * 500}})
    assert len(long.text(max_chars=300)) == 300 and long.text(max_chars=300).endswith("…")
    body = long.as_dict(max_chars=100)
    assert len(body["task"]["kwargs"]) == 100 and len(body["task"]["context"]["note"]) == 100
    assert long.as_dict()["task"]["kwargs"] == "x" * 5000


@pytest.mark.parametrize("url", ["lgo", "webhook+ftp://h/x", "smtp://host/?from=a@b", ""])
def test_a_bad_channel_url_is_a_value_error_naming_it(url: str) -> None:
    with pytest.raises(ValueError, match="alert channel"):
        channel_from_url(url)


def test_channel_names_never_show_secrets_or_tokens() -> None:
    urls = [
        "webhook+https://hooks.example.com/abc?secret=s3cr3t",
        "slack+https://hooks.slack.com/services/T0/B0/tok3n",
        "smtp://me:pa55@mail.example.com:2525/?to=a@x",
    ]
    for url in urls:
        name = channel_from_url(url).name
        assert not any(s in name for s in ("s3cr3t", "tok3n", "pa55")), name


def test_a_record_turns_back_into_the_same_alert() -> None:
    a = alert("stuck", "dead_lettered", incident=Incident("inc-1", "open"))
    assert Alert.from_record(json.loads(json.dumps(a.record()))) == a


def test_reminders_and_resolutions_say_so_in_the_title_and_resolution_line() -> None:
    a = alert("stuck", "revoked")
    reminder = a.notice(Incident("inc-1", "open", "reminder", 2), NOW + 60)
    assert "(still open, reminder 2)" in reminder.title()
    done = a.notice(Incident("inc-1", "resolved", "resolved", 0, "the run ended"), NOW + 60)
    assert done.title().startswith("[P2] RESOLVED stuck: ")
    assert done.text().splitlines()[2] == "Resolved: the run ended"


def test_a_grouped_summary_names_the_first_accounts_and_counts_the_rest() -> None:
    contexts = [{"account_id": str(n)} for n in (12, 99, 7, 5)]
    text = wording.group_summary("stuck", "reports.build", 37, ["Export to PDF"] * 4, contexts)
    assert text == (
        "37 runs of reports.build stuck in 'Export to PDF' — accounts 12, 99, 7 and 34 more"
    )

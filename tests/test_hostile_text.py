"""Text a task controls is shown as text: no renderer or alert channel passes a terminal
control through (ESC[2J clearing the screen, ESC]0;…BEL retitling the window, a carriage
return overwriting a line, a bidi override reordering it, a lone surrogate breaking it).

Pure: the documents are built by the same functions the views use (``flower_task``,
``flower_worker``) or shaped like them, then rendered. No I/O.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from celery_watchdog.alerts import Alert, Delivery, Incident
from celery_watchdog.alerts.channels.log import LogChannel
from celery_watchdog.alerts.channels.slack import blocks
from celery_watchdog.alerts.channels.smtp import SmtpChannel
from celery_watchdog.alerts.notify import Notice
from celery_watchdog.cli import monitor as cli_monitor
from celery_watchdog.cli import render, render_dlq, render_incidents
from celery_watchdog.config import DEFAULT_REDACT_KEYS
from celery_watchdog.dlq import DeadLetter, ReplayResult
from celery_watchdog.model.humanize import cut, fields, printable, table
from celery_watchdog.model.policy import TaskPolicy
from celery_watchdog.model.records import ActiveRequest, Finding, Run, Verdict, WorkerInfo
from celery_watchdog.model.redact import Redactor
from celery_watchdog.monitor.check import PassReport
from celery_watchdog.store import IncidentDoc
from celery_watchdog.views.documents import Judged, flower_task, flower_worker

NOW = 1_800_000_000.0
# Clear the screen, retitle the window, overwrite the line, reverse what follows, one-byte CSI,
# and a lone surrogate (what a bytes error message decoded with surrogateescape holds).
HOSTILE = "\x1b[2J\x1b]0;pwned\x07\rFAKE OK\u202eevil\u2066x\u2069\x9b31m\udce9\x7f\x00end"
FORBIDDEN = ("\x1b", "\x07", "\r", "\u202e", "\u2066", "\u2069", "\x9b", "\x7f", "\x00")
REDACTOR = Redactor(DEFAULT_REDACT_KEYS)


def assert_inert(text: str) -> None:
    """No character a terminal acts on, and text any encoder takes (no lone surrogate)."""
    for char in FORBIDDEN:
        assert char not in text, f"{char!r} passed through: {text!r}"
    text.encode("utf-8")
    assert "\\x1b" in text or "\\u202e" in text or "\\udce9" in text  # shown, not dropped


def hostile_run(**changes: Any) -> Run:
    fields_: dict[str, Any] = {
        "task_id": "7f3a9c2e-0000-4000-8000-000000000001", "name": "reports." + HOSTILE,
        "state": "STARTED", "worker": "w1@" + HOSTILE, "pid": 4242, "queue": "q" + HOSTILE,
        "watched": True, "received": NOW - 40, "started": NOW - 30, "last_heartbeat": NOW - 20,
        "last_progress": NOW - 20, "step": "Export " + HOSTILE, "step_started": NOW - 25,
        "step_timeout": 60.0, "processed": 4, "total": 10, "args": "('" + HOSTILE + "',)",
        "kwargs": "{'note': '" + HOSTILE + "'}", "exception": "ValueError(" + HOSTILE + ")",
        "traceback": "Traceback (most recent call last):\n  File 'x.py'\n" + HOSTILE,
        "result": HOSTILE, "deliveries": 1, "eta": HOSTILE, "parent_id": HOSTILE,
    }  # fmt: skip
    fields_.update(changes)
    return Run(**fields_)


def task_doc(run: Run, health: str = "stuck") -> dict[str, Any]:
    policy = TaskPolicy(owner="ops" + HOSTILE, runbook="https://wiki/" + HOSTILE)
    judged = Judged(run, Verdict(health, "no progress " + HOSTILE), policy, 1, 1.5)
    return flower_task(judged, NOW)


def test_tasks_text_escapes_names_workers_steps_errors_and_reasons() -> None:
    running = task_doc(hostile_run())
    ok_running = task_doc(hostile_run(task_id="b" * 36), health="ok")
    failed = task_doc(hostile_run(task_id="c" * 36, state="FAILURE", finished=NOW - 5), "ok")
    doc = {"a": running, "b": ok_running, "c": failed}
    assert_inert(render.tasks_text(doc, NOW))


def test_task_text_escapes_every_field_and_keeps_the_traceback_on_its_lines() -> None:
    doc = task_doc(hostile_run())
    run = {key: doc["watchdog"][key] for key in ("health", "reason", "pid", "processed", "total")}
    doc["watchdog"]["runs"] = [
        {**run, "worker": "w1@" + HOSTILE, "state": "STARTED", "started": NOW - 30},
        {**run, "worker": "w2@" + HOSTILE, "state": "STARTED", "started": NOW - 10},
    ]
    text = render.task_text(doc, NOW)
    assert_inert(text)
    assert "Traceback (most recent call last):\n" in text  # newlines stay: it reads as one


def test_workers_text_escapes_hostnames_queues_and_active_task_arguments() -> None:
    active = ActiveRequest("7f3a9c2e", "reports." + HOSTILE, 4242, NOW - 30, 1.0,
                           args="('" + HOSTILE + "',)")  # fmt: skip
    worker = WorkerInfo("w1@" + HOSTILE, True, NOW - 1, pid=1, pool="prefork", concurrency=2,
                        queues=("q" + HOSTILE,), active=(active,))  # fmt: skip
    assert_inert(render.workers_text({worker.hostname: flower_worker(worker, NOW)}, NOW))


def test_status_text_escapes_task_names_errors_blindness_and_channel_errors() -> None:
    counts = dict.fromkeys(("ok", "slow", "stuck", "overtime", "lost", "poison", "duplicate"), 1)
    doc = {
        "workers": {"online": 1, "offline": 0},
        "watchdog": {
            "blind": "no pass for 60 s " + HOSTILE, "dead_letters": 1, "open_incidents": 1,
            "alert_channels": [{"channel": "webhook+" + HOSTILE, "ok": False, "delivered": 0,
                                "failed": 1, "last_error": HOSTILE, "last_error_at": NOW}],
        },
        "tasks": {
            "reports." + HOSTILE: {
                "running": 1, "health": counts, "success_rate_1h": 0.5, "success_rate_24h": 0.5,
                "p95_runtime": 3.0, "last_success": NOW - 60, "last_failure": NOW - 30,
                "last_error": HOSTILE,
            },
        },
    }  # fmt: skip
    assert_inert(render.status_text(doc, NOW))


def dead_letter() -> DeadLetter:
    return DeadLetter(
        task_id="7f3a9c2e-0000-4000-8000-000000000001", name="reports." + HOSTILE,
        verdict="stuck", reason="no progress " + HOSTILE, diagnosis="waits " + HOSTILE,
        queue="q" + HOSTILE, args="('" + HOSTILE + "',)", kwargs="{}",
        first_error="first " + HOSTILE, last_error="last " + HOSTILE,
        traceback="Traceback:\n" + HOSTILE, worker="w1@" + HOSTILE, pid=1,
        step="Export " + HOSTILE, dead_lettered_at=NOW - 5,
        audit=({"at": NOW, "action": "replayed", "new_task_id": HOSTILE, "queue": HOSTILE},),
    )  # fmt: skip


def test_dlq_list_show_and_replay_text_escape_what_the_entry_holds() -> None:
    entry = dead_letter()
    assert_inert(render_dlq.list_text([entry], NOW))
    assert_inert(render_dlq.show_text(entry, entry.to_doc(REDACTOR), NOW))
    result = ReplayResult(entry.task_id, "reports." + HOSTILE, "refused", reason=HOSTILE,
                          queue="q" + HOSTILE, args=HOSTILE)  # fmt: skip
    assert_inert(render_dlq.replay_text([result], dry_run=False))


def hostile_alert() -> Alert:
    finding = Finding(kind="stuck", reason="no progress " + HOSTILE, run=hostile_run(),
                      action="none", diagnosis="blocked on read " + HOSTILE)  # fmt: skip
    policy = TaskPolicy(owner="ops" + HOSTILE, alert_context=("note",))
    incident = Incident(id="inc-1", state="open", resolution=HOSTILE)
    return Alert.from_finding(finding, policy, redactor=REDACTOR, now=NOW, incident=incident,
                              context_values={"note": HOSTILE})  # fmt: skip


def test_incidents_text_escapes_summaries_notes_and_delivery_errors() -> None:
    incident = IncidentDoc(
        id="inc-1", key="k", kind="stuck", name="reports." + HOSTILE, subject=HOSTILE,
        state="acknowledged", severity="P2", opened_at=NOW - 60, note="on it " + HOSTILE,
        by="me" + HOSTILE, alert={"summary": "stuck " + HOSTILE},
    )  # fmt: skip
    assert_inert(render_incidents.list_text([incident], NOW, show_all=True))
    delivery = Delivery(channel="webhook+" + HOSTILE, ok=False, error=HOSTILE, attempts=1)
    [line] = render_incidents.deliveries([Notice(hostile_alert(), (delivery,))])
    assert_inert(line)


def test_check_and_monitor_output_escapes_findings_diagnoses_and_alerts() -> None:
    finding = Finding(kind="stuck", reason="quiet " + HOSTILE, run=hostile_run(),
                      action="none", detail=HOSTILE, diagnosis="waits " + HOSTILE)  # fmt: skip
    delivery = Delivery(channel="log" + HOSTILE, ok=False, error=HOSTILE)
    report = PassReport(findings=[finding], due=1, blind="no pass " + HOSTILE,
                        notices=[Notice(hostile_alert(), (delivery,))])  # fmt: skip
    assert_inert(cli_monitor._render(report))


def test_an_alert_holds_its_texts_escaped_whatever_built_it() -> None:
    alert = hostile_alert()
    assert_inert(alert.text())
    assert_inert(alert.title())
    assert_inert(json.dumps(alert.as_dict(), ensure_ascii=False))
    # A record stored by an older version, holding raw controls, is cleaned when read back.
    raw = {**alert.record(), "summary": HOSTILE, "step": HOSTILE, "context": {"k": HOSTILE}}
    assert_inert(Alert.from_record(raw).text())


def test_every_channel_body_is_free_of_terminal_controls(
    caplog: pytest.LogCaptureFixture,
) -> None:
    alert = hostile_alert()
    assert_inert(json.dumps(blocks(alert), ensure_ascii=False))
    mail = SmtpChannel("smtp://127.0.0.1:25/?to=ops@example.com").message(alert)
    for part in mail.walk():
        if not part.is_multipart():
            assert_inert(part.get_content())
    assert_inert(str(mail["Subject"]))
    with caplog.at_level(logging.INFO, logger="celery_watchdog"):
        LogChannel().send(alert)
    assert_inert(caplog.records[-1].getMessage())


def test_printable_escapes_controls_bidi_and_surrogates_and_keeps_newlines_and_tabs() -> None:
    assert printable("a\x1b[2Jb\rc\x07\td\ne\u202ef\udce9\x9b") == (
        "a\\x1b[2Jb\\rc\\x07\td\ne\\u202ef\\udce9\\x9b"
    )
    assert printable(printable(HOSTILE)) == printable(HOSTILE)  # escaping twice changes nothing
    assert printable("Zürich — 東京 ✓") == "Zürich — 東京 ✓"  # text is text


def test_cut_table_and_fields_never_let_a_control_through() -> None:
    assert_inert(cut(HOSTILE, 200))
    assert len(cut(HOSTILE, 20)) == 20
    assert_inert(table(["A", "B"], [[HOSTILE, 1]]))
    assert_inert(fields([("Traceback", "line 1\n" + HOSTILE)]))

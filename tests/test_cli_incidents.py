"""`celery watchdog incidents | ack | snooze | resolve | test-alert` as a person runs them."""

from __future__ import annotations

import json

import pytest

from celery_watchdog import install
from celery_watchdog.model.humanize import parse_duration
from celery_watchdog.monitor.check import run_pass
from tests.alert_peers import Receiver
from tests.helpers import make_app, unique_prefix
from tests.test_cli import celery
from tests.test_incidents import record

pytestmark = pytest.mark.timeout(90)


def test_incidents_are_listed_acknowledged_snoozed_and_resolved_by_prefix(
    redis_url: str, receiver: Receiver
) -> None:
    prefix = unique_prefix()
    conf = {"watchdog_on_stuck": "alert", "watchdog_heartbeat_timeout": 60,
            "watchdog_alert_channels": ["webhook+" + receiver.url("/cli")]}  # fmt: skip
    wd = install(make_app(redis_url, watchdog_key_prefix=prefix, **conf))
    assert wd is not None
    store = wd.store()
    record(wd, store, "reports.build", step="Export to PDF")
    record(wd, store, "mail.send")
    run_pass(wd, store)
    ids = {i.name: i.id for i in store.incidents.active()}

    def cli(*args: str) -> tuple[int, str]:
        out = celery(*args, redis_url=redis_url, prefix=prefix, conf=conf)
        return out.returncode, out.stdout + out.stderr

    code, text = cli("incidents")
    assert code == 0 and "2 open incident(s)" in text
    assert ids["reports.build"] in text and "Export to PDF (reports.build)" in text

    code, text = cli("ack", ids["reports.build"][:6], "--note", "restarting the PDF service")
    assert code == 0 and "acknowledged" in text
    code, text = cli("snooze", ids["mail.send"], "30m")
    assert code == 0 and "snoozed" in text and "in 30 min" in text
    code, text = cli("snooze", ids["mail.send"], "soon")
    assert code == 2 and "not a duration" in text

    doc = json.loads(cli("incidents", "--json")[1])
    states = {i["task_name"]: (i["state"], i["note"]) for i in doc["incidents"]}
    assert states["reports.build"] == ("acknowledged", "restarting the PDF service")
    assert states["mail.send"][0] == "snoozed"

    code, text = cli("resolve", ids["reports.build"], "--note", "PDF service restarted")
    assert code == 0 and "resolved" in text and "delivered" in text
    last = json.loads(receiver.bodies("/cli")[-1])
    assert last["incident"]["notice"] == "resolved"
    assert "PDF service restarted" in last["incident"]["resolution"]
    code, text = cli("resolve", ids["reports.build"])
    assert code == 1 and "already resolved" in text
    code, text = cli("ack", "ffffffffff")
    assert code == 1 and "no incident" in text

    code, text = cli("incidents")
    assert "1 open incident(s)" in text and ids["reports.build"] not in text
    assert ids["reports.build"] in cli("incidents", "--all")[1]


def test_test_alert_reports_each_channel_and_exits_1_when_one_fails(
    redis_url: str, receiver: Receiver
) -> None:
    receiver.statuses["/down"] = [404]
    conf = {"watchdog_alert_channels": ["log", "webhook+" + receiver.url("/up"),
                                        "webhook+" + receiver.url("/down")]}  # fmt: skip
    out = celery("test-alert", redis_url=redis_url, prefix=unique_prefix(), conf=conf)
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3 and lines[0].startswith("log") and "delivered" in lines[0]
    assert "delivered" in lines[1] and "FAILED" in lines[2] and "404" in lines[2]
    body = json.loads(receiver.bodies("/up")[0])
    assert body["kind"] == "test" and "Test alert" in body["summary"]

    only = celery("test-alert", "--channel", "log", "--json", redis_url=redis_url,
                  prefix=unique_prefix(), conf=conf)  # fmt: skip
    assert only.returncode == 0, only.stdout + only.stderr
    [delivery] = json.loads(only.stdout)["deliveries"]
    assert delivery["channel"] == "log" and delivery["ok"]
    bad = celery("test-alert", "--channel", "nope://", redis_url=redis_url, conf=conf)
    assert bad.returncode == 2 and "configured channels: log" in bad.stderr


def test_status_shows_open_incidents_and_a_failing_channel(
    redis_url: str, receiver: Receiver
) -> None:
    prefix = unique_prefix()
    receiver.statuses["/broken"] = [500]
    conf = {"watchdog_on_stuck": "alert", "watchdog_alert_timeout": 0.5,
            "watchdog_alert_channels": ["webhook+" + receiver.url("/broken")]}  # fmt: skip
    wd = install(make_app(redis_url, watchdog_key_prefix=prefix, **conf))
    assert wd is not None
    record(wd, wd.store(), "reports.build", quiet=600)
    run_pass(wd, wd.store())
    out = celery("status", redis_url=redis_url, prefix=prefix, conf=conf)
    assert "Incidents: 1 open" in out.stdout, out.stdout + out.stderr
    assert "ALERT CHANNEL FAILING: webhook+http://127.0.0.1" in out.stdout
    assert "answered 500" in out.stdout


@pytest.mark.parametrize(
    ("text", "words"),
    [("inf", "not a duration"), ("nan", "not a duration"), ("1e400", "not a duration"),
     ("-5m", "not a duration"), ("0", "more than zero"), ("3651d", "at most 10 years"),
     ("soon", "not a duration")],
)  # fmt: skip
def test_a_duration_that_is_not_finite_positive_or_sane_is_refused(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_duration(text)


def test_durations_up_to_ten_years_are_accepted() -> None:
    assert parse_duration("30m") == 1800.0 and parse_duration("3650d") == 3650 * 86400.0


def test_snooze_refuses_inf_nan_and_absurd_durations_in_one_line_and_never_stores_them(
    redis_url: str,
) -> None:
    prefix = unique_prefix()
    conf = {"watchdog_on_stuck": "alert", "watchdog_heartbeat_timeout": 60,
            "watchdog_alert_channels": ["log"]}  # fmt: skip
    wd = install(make_app(redis_url, watchdog_key_prefix=prefix, **conf))
    assert wd is not None
    store = wd.store()
    record(wd, store, "mail.send", step="Render \x1b[2J\x1b]0;owned\x07 template\r")
    run_pass(wd, store)
    [incident] = store.incidents.active()
    for bad in ("inf", "nan", "1e999", "99999d"):
        out = celery("snooze", incident.id, bad, redis_url=redis_url, prefix=prefix, conf=conf)
        assert out.returncode == 2 and out.stdout == "", out.stdout + out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and "cannot snooze" in out.stderr
    listed = celery("incidents", "--json", redis_url=redis_url, prefix=prefix, conf=conf)
    assert "Infinity" not in listed.stdout and "NaN" not in listed.stdout
    assert json.loads(listed.stdout)["incidents"][0]["state"] == "open"
    text = celery("incidents", redis_url=redis_url, prefix=prefix, conf=conf).stdout
    assert "Render" in text and not {"\x1b", "\x07", "\r"} & set(text)

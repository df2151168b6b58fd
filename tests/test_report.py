"""The weekly check on a real Redis, from history written through the real write paths: queue
trends (and a queue whose oldest age rose two weeks in a row), failures and retries per day,
reasons new this week, and incident response times."""

from __future__ import annotations

import json
import uuid
from typing import Any

from celery_watchdog import install
from celery_watchdog.runtime import Watchdog
from celery_watchdog.store import Opening, Store, new_incident_id
from celery_watchdog.views.report import report_doc
from tests.helpers import make_app, unique_prefix
from tests.test_cli import celery

DAY = 86400.0


def end(name: str, outcome: str, age: float, reason: str | None = None) -> dict[str, Any]:
    state = {"succeeded": "SUCCESS", "failed": "FAILURE", "retried": "RETRY"}[outcome]
    event: dict[str, Any] = {
        "kind": "end", "id": str(uuid.uuid4()), "name": name, "worker": "w@h", "pid": 1,
        "state": state, "outcome": outcome, "age": age, "runtime": 0.01, "first": True,
        "started_age": age + 0.01,
    }  # fmt: skip
    if reason:
        event.update(reason=reason, exception=f"Error: {reason}")
    return event


def seeded(redis_url: str, prefix: str) -> tuple[Watchdog, Store, float]:
    app = make_app(redis_url, watchdog_key_prefix=prefix)
    wd = install(app)
    assert wd is not None
    store = wd.store()
    now = store.now()
    # The queue "emails": its worst oldest age 10 s three weeks ago... 40 s this week.
    for day in range(21):
        age = 10.0 if day >= 14 else 20.0 if day >= 7 else 40.0
        store.queues.record_oldest({"emails": age + day % 3}, now - day * DAY)
    store.queues.save({"emails": {"health": "ok"}})
    # "imports.csv": timeouts for weeks; "bad input" is new this week; retries today.
    events = [end("imports.csv", "failed", 15 * DAY, "timeout")]
    events += [end("imports.csv", "failed", 2 * DAY, "timeout")]
    events += [end("imports.csv", "failed", 1 * DAY, "bad input") for _ in range(3)]
    events += [end("imports.csv", "retried", 600) for _ in range(4)]
    events += [end("imports.csv", "succeeded", 300) for _ in range(5)]
    assert not store.runs.write_batch(events, [], wd.recorder.limits).rejected
    # Two incidents: one acknowledged after 10 min and resolved after an hour, one still open.
    for opened, acked, resolved in ((now - 2 * DAY, 600.0, 3600.0), (now - DAY, None, None)):
        inc = new_incident_id()
        store.incidents.open(opened, [Opening(
            key=f"failed|imports.csv|{inc}", group_key="", id=inc, kind="failed",
            name="imports.csv", subject="imports.csv", severity="P2", alert={"summary": "x"},
        )])  # fmt: skip
        if acked:
            store.incidents.set_state(inc, "acknowledged", opened + acked, by="alice")
        if resolved:
            store.incidents.resolve(opened + resolved, [(inc, "fixed", "alice")])
    return wd, store, now


def test_the_weekly_check_shows_trends_new_reasons_and_response_times(redis_url: str) -> None:
    wd, store, now = seeded(redis_url, unique_prefix("wdreport"))
    doc = report_doc(store, wd, now=now)
    [emails] = doc["queues"]
    assert emails["name"] == "emails" and len(emails["oldest_by_day"]) == 7
    assert emails["weekly_max_oldest"] == [12.0, 22.0, 42.0] and emails["rising_two_weeks"]
    [csv] = [t for t in doc["tasks"] if t["name"] == "imports.csv"]
    assert csv["failures"] == 4 and csv["retries"] == 4 and csv["new_reasons"] == ["bad input"]
    assert sum(csv["failures_by_day"]) == 4 and csv["retries_by_day"][-1] == 4
    inc = doc["incidents"]
    assert inc["opened"] == 2 and inc["still_open"] == 1
    assert inc["median_to_acknowledge"] == 600.0 and inc["median_to_resolve"] == 3600.0


def test_report_as_a_command_prints_the_week_and_its_json(redis_url: str) -> None:
    prefix = unique_prefix("wdreport")
    seeded(redis_url, prefix)
    text = celery("report", redis_url=redis_url, prefix=prefix)
    assert text.returncode == 0, text.stderr
    assert "RISING 2 WEEKS" in text.stdout and "bad input" in text.stdout
    assert "median time to acknowledge 10 min" in text.stdout
    doc = json.loads(celery("report", "--since", "14d", "--json", redis_url=redis_url,
                            prefix=prefix).stdout)  # fmt: skip
    assert doc["days"] == 14 and doc["queues"][0]["name"] == "emails"
    bad = celery("report", "--since", "soon", redis_url=redis_url, prefix=prefix)
    assert bad.returncode == 2 and "--since" in bad.stderr

"""Incidents end to end on a real Redis: open once, remind, ack, resolve, group, route.

Runs are written through the recorder's own write path (``RunHandle`` events into
``flush.lua``) and judged by real monitor passes; alerts go to a local HTTP receiver through
the real webhook channel, so what is asserted is what a receiver would get.
"""

from __future__ import annotations

import json
import multiprocessing
import queue
import time
import traceback
import uuid
from collections import Counter
from typing import Any

import pytest

from celery_watchdog import install
from celery_watchdog.monitor.check import run_pass
from celery_watchdog.recording.recorder import RunHandle
from celery_watchdog.runtime import Watchdog
from celery_watchdog.store import Store
from tests.alert_peers import Receiver, sentry_items
from tests.helpers import make_app, unique_prefix

pytestmark = pytest.mark.timeout(60)
HOST = "inc-a@host"
BASE = {"watchdog_heartbeat_timeout": 60, "watchdog_on_stuck": "alert"}


def hook(receiver: Receiver, path: str) -> str:
    return "webhook+" + receiver.url(path)


def runtime(redis_url: str, **conf: Any) -> tuple[Watchdog, Store]:
    wd = install(make_app(redis_url, **{**BASE, **conf}))
    assert wd is not None
    return wd, wd.store()


def record(
    wd: Watchdog, store: Store, name: str, *, quiet: float = 120, host: str = HOST,
    step: str | None = None, context: dict[str, Any] | None = None, kwargs: str = "",
    started: float | None = None,
) -> str:  # fmt: skip
    """A run of ``name`` on ``host`` whose last progress was ``quiet`` seconds ago."""
    task_id = str(uuid.uuid4())
    now = time.monotonic()
    handle = RunHandle(task_id, name, host, watched=True, policy=wd.policy(name), pid=4242)
    handle.started = now - (quiet if started is None else started)
    handle.last_progress = now - quiet
    handle.step = step
    event = handle.as_event(now, wd.redactor)
    event.update(kwargs=kwargs, queue="celery")
    if context is not None:
        event["context"] = json.dumps(context)
    store.runs.write_batch([event], [], wd.recorder.limits)
    store.workers.write_snapshot(host, {"active": []}, ttl=60, online=True)
    return task_id


def end(
    wd: Watchdog, store: Store, task_id: str, name: str, host: str = HOST, pid: int = 4242
) -> None:
    event = {"kind": "end", "id": task_id, "name": name, "worker": host, "pid": pid,
             "slot": str(pid), "state": "SUCCESS", "outcome": "succeeded", "age": 0.0}  # fmt: skip
    store.runs.write_batch([event], [], wd.recorder.limits)


def posts(receiver: Receiver, path: str) -> list[dict[str, Any]]:
    return [json.loads(body) for body in receiver.bodies(path)]


def test_a_stuck_run_opens_one_incident_whose_alert_answers_what_who_since_and_next(
    redis_url: str, receiver: Receiver
) -> None:
    wd, store = runtime(redis_url, watchdog_alert_channels=[hook(receiver, "/a")])
    task_id = record(wd, store, "reports.build", step="Export to PDF",
                     context={"account_id": "12"})  # fmt: skip
    report = run_pass(wd, store)
    [body] = posts(receiver, "/a")
    assert body["kind"] == "stuck" and body["task"]["id"] == task_id
    assert body["summary"].startswith("Export to PDF (reports.build) for account 12 has made")
    assert body["task"]["context"] == {"account_id": "12"} and body["severity"] == "P2"
    assert body["incident"]["state"] == "open" and body["incident"]["notice"] == "opened"
    assert body["started_at"] and body["next_step"].startswith("still running")
    assert [n.alert.incident.id for n in report.notices] == [body["incident"]["id"]]
    [incident] = store.incidents.active()
    assert incident.id == body["incident"]["id"] and incident.kind == "stuck"

    run_pass(wd, store)  # still stuck, not yet time to remind: nothing new
    assert len(posts(receiver, "/a")) == 1


def test_reminders_repeat_until_acknowledged_and_wake_after_a_snooze(
    redis_url: str, receiver: Receiver
) -> None:
    wd, store = runtime(
        redis_url, watchdog_alert_channels=[hook(receiver, "/r")], watchdog_alert_repeat=0.5
    )
    record(wd, store, "reports.build")
    run_pass(wd, store)
    [incident] = store.incidents.active()
    time.sleep(0.6)
    run_pass(wd, store)
    notices = [b["incident"]["notice"] for b in posts(receiver, "/r")]
    assert notices == ["opened", "reminder"]

    assert store.incidents.set_state(
        incident.id, "acknowledged", store.now(), note="on it", by="ana"
    )
    time.sleep(0.6)
    run_pass(wd, store)
    assert len(posts(receiver, "/r")) == 2, "an acknowledged incident is not reminded of"

    store.incidents.set_state(incident.id, "snoozed", store.now(), until=store.now() + 0.5)
    run_pass(wd, store)
    assert len(posts(receiver, "/r")) == 2
    time.sleep(0.6)
    run_pass(wd, store)
    last = posts(receiver, "/r")[-1]
    assert last["incident"]["notice"] == "reminder" and last["incident"]["state"] == "open"


def test_the_condition_clearing_resolves_the_incident_with_one_message(
    redis_url: str, receiver: Receiver
) -> None:
    wd, store = runtime(redis_url, watchdog_alert_channels=[hook(receiver, "/s")])
    task_id = record(wd, store, "reports.build")
    run_pass(wd, store)
    end(wd, store, task_id, "reports.build")
    run_pass(wd, store)
    run_pass(wd, store)
    bodies = posts(receiver, "/s")
    assert [b["incident"]["notice"] for b in bodies] == ["opened", "resolved"]
    assert bodies[1]["incident"]["state"] == "resolved"
    assert bodies[1]["incident"]["resolution"] == "the run ended"
    assert not store.incidents.active()
    [incident] = store.incidents.recent()
    assert incident.state == "resolved" and incident.resolved_at


def test_a_storm_of_one_kind_and_task_is_one_grouped_alert_and_later_runs_join_it(
    redis_url: str, receiver: Receiver
) -> None:
    wd, store = runtime(redis_url, watchdog_alert_channels=[hook(receiver, "/g")],
                        watchdog_alert_group_threshold=5)  # fmt: skip
    for account in range(1, 38):
        record(wd, store, "reports.build", step="Export to PDF",
               context={"account_id": str(account * 11)})  # fmt: skip
    record(wd, store, "mail.send")  # another task: its own alert
    run_pass(wd, store)
    bodies = posts(receiver, "/g")
    assert sorted(b["task"]["name"] for b in bodies) == ["mail.send", "reports.build"]
    [group] = [b for b in bodies if b["task"]["name"] == "reports.build"]
    assert group["count"] == 37
    assert group["summary"].startswith("37 runs of reports.build stuck in 'Export to PDF'")
    assert group["summary"].endswith("and 34 more")

    for _ in range(3):  # the outage goes on: new stuck runs join the open group silently
        record(wd, store, "reports.build", step="Export to PDF")
    run_pass(wd, store)
    assert len(posts(receiver, "/g")) == 2
    [incident] = [i for i in store.incidents.active() if i.name == "reports.build"]
    assert incident.group and incident.count == 40
    assert len(store.incidents.members(incident.id)) == 40


def test_severity_routes_send_a_p3_only_to_its_channel_and_a_p1_to_the_pager(
    redis_url: str, receiver: Receiver
) -> None:
    wd, store = runtime(
        redis_url,
        watchdog_alert_channels=[hook(receiver, "/team")],
        watchdog_alert_routes={"P1": [hook(receiver, "/pager")], "P3": [hook(receiver, "/low")]},
        watchdog_task_policies={"etl.slow": {"soft_timeout": 1, "heartbeat_timeout": 600}},
    )
    record(wd, store, "etl.slow", quiet=0, started=30)  # past its soft budget: slow, P3
    record(wd, store, "etl.stuck")  # P2
    record(wd, store, "etl.lost", host="gone@host")  # its worker has no snapshot: lost, P1
    store.r.delete(f"{store.p}:worker:gone@host")
    run_pass(wd, store)
    kinds = {path: [json.loads(b)["kind"] for b in receiver.bodies(path)]
             for path in ("/team", "/pager", "/low")}  # fmt: skip
    assert kinds == {"/team": ["stuck"], "/pager": ["lost"], "/low": ["slow"]}


def test_a_task_and_a_setting_can_change_a_kinds_severity(
    redis_url: str, receiver: Receiver
) -> None:
    wd, store = runtime(
        redis_url,
        watchdog_alert_channels=[hook(receiver, "/sev")],
        watchdog_alert_severity={"stuck": "P3"},
        watchdog_task_policies={"billing.*": {"alert_severity": {"stuck": "P1"}}},
    )
    record(wd, store, "billing.charge")
    record(wd, store, "reports.build")
    run_pass(wd, store)
    severity = {b["task"]["name"]: b["severity"] for b in posts(receiver, "/sev")}
    assert severity == {"billing.charge": "P1", "reports.build": "P3"}


def test_a_channel_that_never_answers_does_not_hold_back_the_others_and_shows_in_status(
    redis_url: str, receiver: Receiver
) -> None:
    wd, store = runtime(
        redis_url, watchdog_alert_timeout=1.0,
        watchdog_alert_channels=[hook(receiver, "/hang"), hook(receiver, "/fast")],
    )  # fmt: skip
    record(wd, store, "reports.build")
    started = time.monotonic()
    report = run_pass(wd, store)
    took = time.monotonic() - started
    assert posts(receiver, "/fast") and took < 3.0
    [notice] = report.notices
    outcome = {d.channel: (d.ok, d.error) for d in notice.deliveries}
    assert [ok for ok, _ in outcome.values()] == [False, True]
    from celery_watchdog.views.status import status_doc

    channels = status_doc(store, wd)["watchdog"]["alert_channels"]
    failing = [c for c in channels if not c["ok"]]
    assert len(failing) == 1 and "timed out" in failing[0]["last_error"]
    assert [c["delivered"] for c in channels if c["ok"]] == [1]


# -- several monitors at once ------------------------------------------------------------------


def one_monitor(redis_url: str, conf: dict[str, Any], barrier: Any, results: Any) -> None:
    try:
        wd, store = runtime(redis_url, **conf)
        store.now()
        barrier.wait(timeout=30)
        report = run_pass(wd, store)
        results.put([(n.alert.kind, n.alert.incident.notice) for n in report.notices])
    except BaseException:
        results.put({"error": traceback.format_exc()})


def monitors_at_once(redis_url: str, conf: dict[str, Any], n: int = 4) -> list[Any]:
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=one_monitor, args=(redis_url, conf, barrier, results))
             for _ in range(n)]  # fmt: skip
    for proc in procs:
        proc.start()
    try:
        reports = [results.get(timeout=40) for _ in procs]
    except queue.Empty:
        pytest.fail(f"monitor processes did not report; exit codes {[p.exitcode for p in procs]}")
    finally:
        for proc in procs:
            proc.join(timeout=10)
    errors = [r["error"] for r in reports if isinstance(r, dict)]
    assert not errors, "\n".join(errors)
    return reports


def test_four_monitors_at_once_open_remind_and_resolve_each_incident_exactly_once(
    redis_url: str, receiver: Receiver
) -> None:
    conf = {"watchdog_key_prefix": unique_prefix(), "watchdog_alert_repeat": 0.5,
            "watchdog_alert_channels": [hook(receiver, "/m")]}  # fmt: skip
    wd, store = runtime(redis_url, **conf)
    ids = {name: record(wd, store, name) for name in ("a.one", "b.two", "c.three")}

    monitors_at_once(redis_url, conf)
    time.sleep(0.6)
    monitors_at_once(redis_url, conf)
    for name, task_id in ids.items():
        end(wd, store, task_id, name)
    monitors_at_once(redis_url, conf)

    sent = Counter((b["task"]["name"], b["incident"]["notice"]) for b in posts(receiver, "/m"))
    assert sent == {
        (name, notice): 1 for name in ids for notice in ("opened", "reminder", "resolved")
    }


def test_two_progressing_runs_of_one_task_id_are_a_duplicate_incident_until_one_ends(
    redis_url: str, receiver: Receiver
) -> None:
    wd, store = runtime(redis_url, watchdog_alert_channels=[hook(receiver, "/dup")])
    task_id = str(uuid.uuid4())
    handles = []
    for host in ("dup-a@host", "dup-b@host"):
        h = RunHandle(task_id, "rollup", host, watched=True, policy=wd.policy("rollup"), pid=7)
        handles.append(h)
        store.workers.write_snapshot(host, {"active": []}, ttl=60, online=True)
    for h in handles:
        store.runs.write_batch([h.as_event(time.monotonic(), wd.redactor)], [], wd.recorder.limits)
        h.new = False
    for h in handles:  # both keep making progress: later flushes must not hide the duplicate
        h.processed, h.last_progress = 5, time.monotonic()
        store.runs.write_batch([h.as_event(time.monotonic(), wd.redactor)], [], wd.recorder.limits)
    report = run_pass(wd, store)
    assert [f.kind for f in report.findings] == ["duplicate"]
    [body] = posts(receiver, "/dup")
    assert body["kind"] == "duplicate" and "running twice" in body["summary"]
    end(wd, store, task_id, "rollup", host="dup-b@host", pid=7)
    run_pass(wd, store)
    notices = [b["incident"]["notice"] for b in posts(receiver, "/dup")]
    assert notices == ["opened", "resolved"]


def test_sentry_crons_get_an_error_check_in_for_a_beat_task_judged_stuck(
    redis_url: str, sentry: Receiver
) -> None:
    wd, store = runtime(redis_url, watchdog_alert_channels=["sentry"], watchdog_sentry_crons=True)
    wd.app.conf.beat_schedule = {
        "nightly-export": {"task": "reports.nightly", "schedule": 3600.0},
    }
    record(wd, store, "reports.nightly")
    record(wd, store, "reports.adhoc")  # not beat-scheduled: an event, no check-in
    run_pass(wd, store)
    import sentry_sdk

    sentry_sdk.flush(timeout=5)
    checkins = sentry_items(sentry, "check_in")
    assert [(c["monitor_slug"], c["status"]) for c in checkins] == [("nightly-export", "error")]


def test_a_dead_lettered_lost_run_stays_open_until_replayed(
    redis_url: str, receiver: Receiver
) -> None:
    wd, store = runtime(redis_url, watchdog_alert_channels=[hook(receiver, "/dl")])
    task_id = record(wd, store, "billing.charge", host="gone@host", quiet=0)
    store.r.delete(f"{store.p}:worker:gone@host")  # its worker stopped reporting: lost
    [finding] = run_pass(wd, store).findings
    assert (finding.kind, finding.action) == ("lost", "dead_lettered")
    run_pass(wd, store)
    [opened] = posts(receiver, "/dl")
    assert opened["severity"] == "P1" and f"dlq show {task_id}" in opened["next_step"]
    store.dlq.update(task_id, state="replayed")  # what `dlq replay` leaves behind
    run_pass(wd, store)
    resolved = posts(receiver, "/dl")[-1]
    assert resolved["incident"]["notice"] == "resolved"
    assert resolved["incident"]["resolution"] == "replayed from the dead-letter queue"


def test_a_big_group_resolves_only_when_its_last_run_ended(
    redis_url: str, receiver: Receiver
) -> None:
    wd, store = runtime(redis_url, watchdog_alert_channels=[hook(receiver, "/big")])
    ids = [record(wd, store, "reports.build") for _ in range(60)]  # more than one sample
    run_pass(wd, store)
    for task_id in ids[:-1]:
        end(wd, store, task_id, "reports.build")
    for _ in range(3):  # whichever sample a pass draws, one run still going keeps it open
        run_pass(wd, store)
    assert [b["incident"]["notice"] for b in posts(receiver, "/big")] == ["opened"]
    end(wd, store, ids[-1], "reports.build")
    run_pass(wd, store)
    resolved = posts(receiver, "/big")[-1]
    assert resolved["incident"]["resolution"] == "all 60 runs ended"


# -- an incident ends when the work is done or given up on --------------------------------


def _stuck_and_dead_lettered(wd: Watchdog, store: Store, receiver: Receiver, path: str) -> str:
    task_id = record(wd, store, "reports.build")
    [finding] = run_pass(wd, store).findings
    assert (finding.kind, finding.action) == ("stuck", "dead_lettered")
    end(wd, store, task_id, "reports.build")  # the SIGTERM took it down: its run ended
    run_pass(wd, store)
    assert [b["incident"]["notice"] for b in posts(receiver, path)] == ["opened"]
    assert store.incidents.active(), "a dead-lettered run's incident closed when it stopped"
    return task_id


def test_a_dead_lettered_stuck_run_stays_open_until_its_replay_succeeded(
    redis_url: str, receiver: Receiver
) -> None:
    wd, store = runtime(redis_url, watchdog_alert_channels=[hook(receiver, "/rp")],
                        watchdog_on_stuck="revoke")  # fmt: skip
    task_id = _stuck_and_dead_lettered(wd, store, receiver, "/rp")
    new_id = str(uuid.uuid4())
    replayed = {"at": store.now(), "action": "replayed", "new_task_id": new_id}
    store.dlq.update(task_id, state="replayed", audit=[replayed])  # what `dlq replay` leaves
    run_pass(wd, store)
    assert store.incidents.active(), "resolved before the replay ran"
    end(wd, store, new_id, "reports.build")  # the replay ran and succeeded
    run_pass(wd, store)
    resolved = posts(receiver, "/rp")[-1]
    assert resolved["incident"]["notice"] == "resolved"
    assert resolved["incident"]["resolution"] == f"replayed as {new_id[:8]}…, succeeded"
    assert resolved["next_step"] == "nothing to do: it is over"
    assert not store.incidents.active()


def test_a_dead_lettered_stuck_run_resolves_when_its_entry_is_purged_saying_by_whom(
    redis_url: str, receiver: Receiver
) -> None:
    from celery_watchdog import dlq

    wd, store = runtime(redis_url, watchdog_alert_channels=[hook(receiver, "/pg")],
                        watchdog_on_stuck="revoke")  # fmt: skip
    task_id = _stuck_and_dead_lettered(wd, store, receiver, "/pg")
    assert dlq.purge(store, [task_id], by="alice") == 1
    run_pass(wd, store)
    resolved = posts(receiver, "/pg")[-1]
    assert resolved["incident"]["notice"] == "resolved"
    assert resolved["incident"]["resolution"] == "purged by alice"

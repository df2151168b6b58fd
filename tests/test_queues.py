"""Queue health on a real Redis broker with real workers: depth over priority lists, the oldest
message's age from its publish stamp (or since first seen, a lower bound), backlog vs stalled,
a consumer cancelled while messages wait, and who waits."""

from __future__ import annotations

import time
from typing import Any

import pytest
from celery import Celery
from kombu import Queue

from celery_watchdog import install
from celery_watchdog.monitor.check import run_pass
from celery_watchdog.monitor.queues import read
from celery_watchdog.recording import publishing as ours
from celery_watchdog.runtime import Watchdog
from celery_watchdog.testing import capture_alerts
from tests.helpers import make_app, run_worker, wait_for

pytestmark = pytest.mark.timeout(120)
FAST = {"watchdog_flush_interval": 0.1, "watchdog_snapshot_interval": 0.3}


def setup(redis_url: str, **conf: Any) -> tuple[Celery, Watchdog, dict[str, Any]]:
    app = make_app(redis_url, **FAST, **conf)

    @app.task(name="q.sleep", shared=False, alert_context=("account_id",))
    def sleep(seconds: float, account_id: int = 0) -> float:
        time.sleep(seconds)
        return seconds

    wd = install(app)
    assert wd is not None
    return app, wd, {"sleep": sleep}


def queue(wd: Watchdog, name: str) -> dict[str, Any]:
    store = wd.store()
    docs = read(wd, store, store.now(), store.workers.all())
    return next(d for d in docs if d["name"] == name)


def test_depth_over_priority_lists_and_the_oldest_age_from_the_publish_stamp(
    redis_url: str,
) -> None:
    options = {"priority_steps": list(range(10)), "sep": ":", "queue_order_strategy": "priority"}
    bulk = Queue("bulk", queue_arguments={"x-max-priority": 9})
    _, wd, tasks = setup(redis_url, broker_transport_options=options, task_queues=[bulk])
    first = time.time()
    tasks["sleep"].apply_async((1,), queue="bulk", priority=0)
    time.sleep(2.0)
    for priority in (3, 6, 9):
        tasks["sleep"].apply_async((1,), queue="bulk", priority=priority)
    doc = queue(wd, "bulk")
    assert doc["messages"] == 4 and doc["consumers"] == []
    true_age = time.time() - first
    assert abs(doc["oldest_age"] - true_age) <= 2.0 and not doc["oldest_age_is_lower_bound"]


def test_a_message_without_a_publish_stamp_is_aged_from_when_it_was_first_seen(
    redis_url: str,
) -> None:
    _, wd, tasks = setup(redis_url)
    from celery import signals

    signals.before_task_publish.disconnect(dispatch_uid="celery_watchdog.on_before_publish")
    try:  # a producer without the watchdog
        tasks["sleep"].apply_async((1,), queue="legacy")
    finally:
        signals.before_task_publish.connect(
            ours.on_before_publish, weak=False, dispatch_uid="celery_watchdog.on_before_publish"
        )
    seen = queue(wd, "legacy")
    assert seen["messages"] == 1 and seen["oldest_age_is_lower_bound"]
    assert seen["oldest_age"] < 1.0
    time.sleep(2.0)
    later = queue(wd, "legacy")
    assert later["oldest_age_is_lower_bound"] and 1.5 <= later["oldest_age"] <= 4.0


def test_a_queue_nobody_consumes_is_stalled_and_resolves_when_it_drains(redis_url: str) -> None:
    policies = {"orphans": {"threshold": 1, "action": "Send password reset email",
                            "critical": True}}  # fmt: skip
    app, wd, tasks = setup(redis_url, watchdog_queue_policies=policies)
    store = wd.store()
    for account in (12, 15, 99, 12):
        tasks["sleep"].apply_async((0,), {"account_id": account}, queue="orphans")
    time.sleep(1.5)
    with capture_alerts() as alerts:
        run_pass(wd, store)
        run_pass(wd, store)
    page = alerts.assert_sent(kind="queue_stalled")
    assert page.summary.startswith("Work has stopped: Send password reset email: oldest waiting")
    assert "4 waiting" in page.summary and "3 accounts (account_id=12, 15, 99)" in page.summary
    assert "no worker consumes this queue" in page.summary and page.severity == "P1"
    doc = queue(wd, "orphans")
    assert doc["health"] == "stalled" and doc["cause"] == "no_consumer" and doc["affected"] == 3
    with run_worker(app, queues=["orphans"]):
        wait_for(lambda: queue(wd, "orphans")["messages"] == 0, timeout=20, what="drained")
        with capture_alerts() as after:
            run_pass(wd, store)
    after.assert_sent(kind="queue_stalled", notice="resolved")


def test_a_slow_queue_with_completions_is_a_backlog_not_a_stall(redis_url: str) -> None:
    app, wd, tasks = setup(redis_url, watchdog_queue_policies={"slow": {"threshold": 1}},
                           worker_prefetch_multiplier=1)  # fmt: skip
    store = wd.store()
    with run_worker(app, queues=["slow"], concurrency=1):
        for _ in range(12):
            tasks["sleep"].apply_async((0.4,), queue="slow")
        time.sleep(2.5)
        with capture_alerts() as alerts:
            run_pass(wd, store)
        page = alerts.assert_sent(kind="queue_backlog")
        alerts.assert_not_sent(kind="queue_stalled")
        assert "completed in the last" in page.summary


def test_a_worker_whose_consumer_was_cancelled_is_reported_within_threshold_and_a_pass(
    redis_url: str,
) -> None:
    app, wd, tasks = setup(redis_url, watchdog_queue_policies={"work": {"threshold": 1}})
    store = wd.store()
    with run_worker(app, queues=["work"]) as worker:
        tasks["sleep"].apply_async((0,), queue="work").get(timeout=20)
        app.control.cancel_consumer("work", destination=[worker.hostname], reply=True)
        time.sleep(0.5)
        for _ in range(3):
            tasks["sleep"].apply_async((0,), queue="work")
        time.sleep(1.0 + 0.5)  # the threshold, and a snapshot
        with capture_alerts() as alerts:
            run_pass(wd, store)
        page = alerts.assert_sent(kind="queue_stalled")
        assert "3 waiting" in page.summary


def test_queues_json_is_flowers_queue_lengths_shape_plus_health(redis_url: str) -> None:
    import json

    from tests.helpers import unique_prefix
    from tests.test_cli import celery

    _, _, tasks = setup(redis_url)
    tasks["sleep"].apply_async((0,), queue="celery")
    prefix = unique_prefix("wdq")
    out = celery("queues", "--json", redis_url=redis_url, prefix=prefix)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    celery_queue = next(q for q in doc["active_queues"] if q["name"] == "celery")
    assert celery_queue["messages"] >= 1 and celery_queue["health"] in ("ok", "stalled")
    for key in ("oldest_age", "oldest_age_is_lower_bound", "reserved", "consumers",
                "completed_per_min", "action", "affected"):  # fmt: skip
        assert key in celery_queue
    text = celery("queues", redis_url=redis_url, prefix=prefix).stdout
    assert "QUEUE" in text and "celery" in text


def test_what_is_normal_for_this_hour_comes_from_the_weeks_before(redis_url: str) -> None:
    _, wd, tasks = setup(redis_url, watchdog_queue_policies={"night": {"threshold": 1}})
    store = wd.store()
    now = store.now()
    week = 7 * 86400
    for back, age in ((1, 0.5), (2, 0.25), (3, 0.75)):  # recorded by passes in weeks before
        store.queues.record_oldest({"night": age}, now - back * week)
    tasks["sleep"].apply_async((0,), queue="night")
    time.sleep(2.0)
    doc = queue(wd, "night")
    assert doc["normal_oldest_age"] == 0.5 and doc["health"] == "stalled"
    assert "x its normal 500 ms at this hour" in doc["summary"]


def test_on_rabbitmq_the_oldest_age_and_who_waits_come_from_the_producers_publish_records(
    redis_url: str, rabbitmq_url: str
) -> None:
    import uuid

    from kombu import Connection

    name = f"wd-rabbit-{uuid.uuid4().hex[:8]}"
    _, wd, tasks = setup(redis_url, broker_url=rabbitmq_url, result_backend=None)
    try:
        first = time.time()
        # Who waits: the accounts named by position or keyword, counted once each.
        tasks["sleep"].apply_async((0, 11), queue=name)
        tasks["sleep"].apply_async((0,), {"account_id": 12}, queue=name)
        tasks["sleep"].apply_async((0,), {"account_id": 12}, queue=name)
        time.sleep(2.0)
        doc = queue(wd, name)
        assert doc["messages"] == 3 and doc["consumers"] == []
        assert abs(doc["oldest_age"] - (time.time() - first)) <= 2.0
        assert not doc["oldest_age_is_lower_bound"]
        assert doc["affected"] == 2 and "account_id=11, 12" in doc["who"], doc["who"]
        with Connection(rabbitmq_url) as conn:  # a consumer takes the oldest
            conn.default_channel.basic_get(name, no_ack=True)
            assert queue(wd, name)["messages"] == 2
            conn.default_channel.queue_purge(name)
        assert queue(wd, name)["oldest_age"] is None
    finally:
        with Connection(rabbitmq_url) as conn:
            conn.default_channel.queue_delete(name)

"""Delivery caps under a real ``celery worker -P prefork``: a message that keeps coming back
runs at most ``max_deliveries`` times, then is dead-lettered (replayable) and alerted once."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

from celery_watchdog import install
from celery_watchdog.monitor.check import run_pass
from celery_watchdog.store import Store
from celery_watchdog.testing import capture_alerts
from tests.helpers import PreforkWorker, wait_for

pytestmark = pytest.mark.timeout(120)
CRASH_LOOP = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "watchdog_snapshot_interval": 0.5,
    "watchdog_max_deliveries": 3,
}


def runs_of(client: redis.Redis, key: str) -> int:
    return int(client.get(key) or 0)


def settle(worker: PreforkWorker, store: Store, passes: int = 3) -> tuple[list[Any], Any]:
    """A few monitor passes in this process; the findings and the alerts they sent."""
    wd = install(worker.app)
    assert wd is not None
    with capture_alerts() as alerts:
        findings = [f for _ in range(passes) for f in run_pass(wd, store).findings]
    return findings, alerts


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_a_crash_looping_message_runs_max_deliveries_times_then_is_dead_lettered_once(
    start_prefork_worker: Callable[..., PreforkWorker], redis_client: redis.Redis, how: str
) -> None:
    worker = start_prefork_worker(conf=CRASH_LOOP)
    wd = install(worker.app)
    assert wd is not None
    store = wd.store()
    key = f"runs-{uuid.uuid4().hex}"
    result = worker.task("crash_loop").delay(key, how)
    wait_for(lambda: result.state == "REVOKED", timeout=60, what="the 4th delivery refused")
    time.sleep(2)  # a delivery that slipped through would have run by now
    assert runs_of(redis_client, key) == 3

    findings, alerts = settle(worker, store)
    poison = [f for f in findings if f.kind == "poison"]
    assert len(poison) == 1 and poison[0].action == "dead_lettered" and poison[0].replayable
    assert poison[0].run.task_id == result.id and poison[0].run.deliveries == 4
    alerts.assert_sent(kind="poison", task_name="tests.workerapp.crash_loop")
    assert store.dlq.ids() == [result.id]
    entry = store.dlq.get(result.id)
    assert entry is not None and entry["verdict"] == "poison"
    assert entry["message"]["body"] and "delivered 4 times" in entry["reason"]
    run = store.runs.of_task(result.id)[0]
    assert run.state == "REVOKED" and "Refused: delivered 4 times" in (run.exception or "")

    time.sleep(1.5)
    assert runs_of(redis_client, key) == 3, "the refused message never runs again"
    more, again = settle(worker, store)
    assert not [f for f in more if f.kind == "poison"] and not again.matching(kind="poison")


def test_a_visibility_timeout_redelivery_loop_is_capped_the_same_way(
    redis_url: str, redis_client: redis.Redis
) -> None:
    # celery#5935: an acks_late task that outlives visibility_timeout is restored and runs
    # again, and again, while the first run goes on. The 4th delivery is refused.
    conf = {
        "task_acks_late": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": {
            "visibility_timeout": 2, "unacked_restore_interval": 1, "unacked_restore_throttle": 1,
        },
        "watchdog_max_deliveries": 3,
        "watchdog_snapshot_interval": 0.5,
    }  # fmt: skip
    with PreforkWorker(redis_url, conf=conf, concurrency=4) as worker:
        wd = install(worker.app)
        assert wd is not None
        store = wd.store()
        key = f"runs-{uuid.uuid4().hex}"
        result = worker.task("count_and_sleep").delay(key, 30)
        refused = wait_for(
            lambda: store.deliveries.refused_pending(), timeout=60, what="a refused delivery"
        )
        assert refused[0][0] == result.id and refused[0][1]["deliveries"] == 4
        assert runs_of(redis_client, key) == 3
        findings, alerts = settle(worker, store, passes=1)
        assert [f.action for f in findings if f.kind == "poison"] == ["dead_lettered"]
        alerts.assert_sent(kind="poison", task_name="tests.workerapp.count_and_sleep")
        time.sleep(4)  # two more visibility timeouts: nothing comes back, nothing runs
        assert runs_of(redis_client, key) == 3
        worker.app.control.revoke(result.id, terminate=True, signal="SIGKILL")

"""One judge: what the monitor acts on is what every command shows, learned budgets included."""

from __future__ import annotations

import time
from typing import Any

import pytest
from celery import Celery

from celery_watchdog import install
from celery_watchdog.monitor.check import run_pass
from celery_watchdog.views import documents as views
from tests.helpers import make_app, run_worker, wait_for

pytestmark = pytest.mark.timeout(90)
LEARN_FAST = {
    "watchdog_flush_interval": 0.2,
    "watchdog_snapshot_interval": 0.3,
    "watchdog_check_interval": 0.5,
    "watchdog_learn_min_runs": 5,
    "watchdog_learned_soft_floor": 0.5,  # 2 x p99 of a 10 ms task is below it: soft = 0.5 s
    "watchdog_learned_hard_floor": 3600.0,
}


@pytest.fixture
def app(redis_url: str) -> Any:
    app = make_app(redis_url, **LEARN_FAST)

    @app.task(name="reports.plain", shared=False)
    def plain(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    yield app
    app.close()


def test_a_plain_task_far_past_its_learned_budget_is_slow_within_an_interval_everywhere(
    app: Celery,
) -> None:
    wd = install(app)
    assert wd is not None
    store = wd.store()
    task = app.tasks["reports.plain"]
    with run_worker(app):
        for _ in range(8):  # history: eight 10 ms runs, no explicit timeout anywhere
            task.delay(0.01).get(timeout=10)
        wd.recorder.flush()
        run_pass(wd, store)  # learns the budgets of every recent task name, as beat's pass does
        assert store.names.budgets(["reports.plain"]), "no budget learned from the history"
        long = task.delay(10)
        started = time.monotonic()
        found = wait_for(
            lambda: next((f for f in run_pass(wd, store).findings
                          if f.run.task_id == long.id), None),
            timeout=20, interval=LEARN_FAST["watchdog_check_interval"],
            what="the monitor's finding",
        )  # fmt: skip
        took = time.monotonic() - started
        shown = views.tasks_doc(store, wd)[long.id]["watchdog"]
        one = views.task_doc(store, wd, long.id)["watchdog"]
    assert found.kind == "slow" and "soft_timeout" in found.reason
    # learned soft budget + a flush to write the run + a check interval, with slack for a
    # loaded machine; heartbeat_timeout (300 s) never came into it.
    assert took < 0.5 + 0.2 + 0.5 + 2.5, took
    assert shown["health"] == "slow" and one["health"] == "slow", (shown, one)

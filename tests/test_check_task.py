"""The beat-scheduled check: no ``expires`` read by another clock; piled-up checks run once."""

from __future__ import annotations

import time
from typing import Any

from celery import Celery

from celery_watchdog import install
from celery_watchdog.wiring import CHECK_TASK
from tests.helpers import make_app


def test_the_beat_entry_of_the_check_has_no_expires_a_skewed_worker_would_misread(
    redis_url: str,
) -> None:
    app = make_app(redis_url, watchdog_check_interval=2)
    install(app)
    entry = app.conf.beat_schedule[CHECK_TASK]
    assert entry["schedule"] == 2 and "expires" not in entry["options"]
    app.close()


def test_checks_that_pile_up_run_one_pass_and_the_rest_are_no_ops(redis_url: str) -> None:
    app: Celery = make_app(redis_url, watchdog_check_interval=1)
    wd = install(app)
    assert wd is not None
    check = app.tasks[CHECK_TASK]
    results: list[dict[str, Any]] = [check() for _ in range(3)]  # as a backlog delivers them
    assert "findings" in results[0]
    assert [r.get("skipped") for r in results[1:]] == ["another pass ran or is running"] * 2
    time.sleep(0.6)  # half an interval later (on the Redis clock) the next one runs
    assert "findings" in check()
    app.close()

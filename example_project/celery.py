"""The Celery app of the example project: ``celery -A example_project ...`` finds ``app`` here.

Broker, result backend and watchdog store all live in the Redis at ``REDIS_URL``. The demo
(``python -m example_project demo``) always sets ``REDIS_URL`` for the processes it starts; the
default below is only for running a worker by hand next to a local Redis.

``WATCHDOG_DEMO_FAST=1`` shortens the budgets further (the test suite uses it to see a stuck
task within ~20 s); worker, beat and the CLI must all see the same value.
"""

from __future__ import annotations

import os

from celery import Celery

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
FAST = os.environ.get("WATCHDOG_DEMO_FAST", "") not in ("", "0")

# Short budgets so the demo shows verdicts within a minute (production: minutes).
STUCK_AFTER = 8.0 if FAST else 15.0  # heartbeat_timeout of the example tasks that hang
CHECK_INTERVAL = 2.0 if FAST else 5.0  # seconds between the monitor's passes (run by beat)

app = Celery("example_project")
app.conf.update(
    broker_url=REDIS_URL,
    result_backend=REDIS_URL,
    # Importing celery_watchdog is all it takes to turn the watchdog on.
    imports=["celery_watchdog", "example_project.tasks"],
    broker_connection_retry_on_startup=True,
    # One message per child at a time and acknowledgement after the run: a hung task then
    # holds only its own message, and a worker that disappears mid-run leaves it in Redis.
    worker_prefetch_multiplier=1,
    task_acks_late=True,
    watchdog_heartbeat_timeout=20,
    watchdog_check_interval=CHECK_INTERVAL,
    watchdog_terminate_grace=5,
    watchdog_snapshot_interval=1.0 if FAST else 2.0,
    # Alerts: the log, plus what the demo adds (its own receiver, and any --webhook URL given).
    watchdog_alert_channels=["log", *os.environ.get("WATCHDOG_DEMO_ALERT_URLS", "").split()],
    watchdog_alert_timeout=5,
    # The status server (`celery -A example_project watchdog serve`): changes need this token.
    watchdog_http_token=os.environ.get("WATCHDOG_HTTP_TOKEN") or None,
    # A queue nobody consumes (the demo's worker takes "celery" only), with who waits on it,
    # and a beat entry whose task goes there: a stalled queue, and a missed run.
    task_routes={"example_project.tasks.archive_reports": {"queue": "archive"}},
    watchdog_queue_policies={
        "archive": {"action": "Archive monthly reports for customers", "threshold": 8},
    },
    beat_schedule={
        "archive-reports": {"task": "example_project.tasks.archive_reports", "schedule": 6.0},
    },
    watchdog_beat_grace=4,
    watchdog_task_policies={
        # Exports: slow past 6 s (reported, never stopped), and who to call about them.
        "example_project.tasks.export_*": {
            "soft_timeout": 6,
            "owner": "reports",
            "runbook": "https://example.com/runbooks/exports",
        },
        # A plain task, not a WatchedTask: a runtime budget is what catches it looping.
        "example_project.tasks.crunch_numbers": {"hard_timeout": 2 * STUCK_AFTER},
    },
)

"""The Celery app of the example project: ``celery -A example_project ...`` finds ``app`` here.

Broker, result backend and watchdog store all live in the Redis at ``REDIS_URL``. The demo
(``python -m example_project demo``) always sets ``REDIS_URL`` for the processes it starts; the
default below is only for running a worker by hand next to a local Redis.
"""

from __future__ import annotations

import os

from celery import Celery

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

app = Celery("example_project")
app.conf.update(
    broker_url=REDIS_URL,
    result_backend=REDIS_URL,
    # Importing celery_watchdog is all it takes to turn the watchdog on.
    imports=["celery_watchdog", "example_project.tasks"],
    broker_connection_retry_on_startup=True,
    # One message per child at a time and acknowledgement after the run: a hung task then
    # holds only its own message, and a crashed run is not silently lost.
    worker_prefetch_multiplier=1,
    task_acks_late=True,
    # Short budgets so the demo shows verdicts within a minute (production: minutes).
    watchdog_heartbeat_timeout=20,
    watchdog_check_interval=5,
    watchdog_task_policies={
        "example_project.tasks.export_*": {
            "owner": "reports",
            "runbook": "https://example.com/runbooks/exports",
        },
    },
)

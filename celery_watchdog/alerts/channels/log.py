"""``log``: one structured JSON record per alert on the ``celery_watchdog`` logger."""

from __future__ import annotations

import json
import logging

from ..model import Alert

logger = logging.getLogger("celery_watchdog")
LEVELS = {"P1": logging.ERROR, "P2": logging.WARNING, "P3": logging.INFO}


class LogChannel:
    name = "log"

    def send(self, alert: Alert, timeout: float = 10.0) -> None:
        elapsed = None if alert.started_at is None else round((alert.at - alert.started_at) * 1000)
        record = {
            "event": "celery_watchdog.alert",
            "job": alert.task_name,
            "run_id": alert.task_id,
            "attempt": alert.attempt,
            "step": alert.step,
            "elapsed_ms": elapsed,
            "outcome": alert.kind,
            "action": alert.action,
            "severity": alert.severity,
            "summary": alert.summary,
            "next_step": alert.next_step,
            "alert": alert.as_dict(max_chars=2000),
        }
        # The JSON is the message (greppable in any log pipeline); ``extra`` serves handlers
        # that build their own structure from record attributes.
        logger.log(
            LEVELS.get(alert.severity, logging.WARNING),
            "%s",
            json.dumps(record, default=str, ensure_ascii=False),
            extra={"watchdog_alert": record},
        )

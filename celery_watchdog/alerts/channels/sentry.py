"""``sentry``: a message event through the application's own, already initialised sentry-sdk.

We never call ``sentry_sdk.init``: the DSN, environment and release are the application's.
The fingerprint [kind, task name] makes Sentry group repeats of one problem into one issue.
"""

from __future__ import annotations

from typing import Any

from ..http import DeliveryError
from ..model import Alert

LEVELS = {"P1": "fatal", "P2": "error", "P3": "warning"}


class SentryChannel:
    name = "sentry"

    def send(self, alert: Alert, timeout: float = 10.0) -> None:
        try:
            import sentry_sdk  # the optional [sentry] extra: imported only when used
        except ImportError:
            raise DeliveryError("sentry: sentry-sdk is not installed", retryable=False) from None
        if not sentry_sdk.get_client().is_active():
            raise DeliveryError(
                "sentry: sentry-sdk is not initialised (call sentry_sdk.init(dsn=…) in the app)",
                retryable=False,
            )
        a = alert.capped(4000)
        body = a.as_dict()
        contexts: dict[str, dict[str, Any]] = {
            "task": body["task"],  # args and kwargs: redacted previews only
            "watchdog": {k: v for k, v in body.items() if k not in ("task", "summary")},
        }
        event_id = sentry_sdk.capture_message(
            a.summary,
            level=LEVELS.get(a.severity, "error"),  # type: ignore[arg-type]
            tags={
                "task": a.task_name, "kind": a.kind, "queue": a.queue or "-",
                "severity": a.severity,
            },
            contexts=contexts,
            fingerprint=[a.kind, a.task_name],
        )  # fmt: skip
        if event_id is None:  # dropped by the app's sample_rate or before_send: by its choice
            raise DeliveryError("sentry: the event was dropped by the SDK", retryable=False)

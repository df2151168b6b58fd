"""The options that apply to one task name, already resolved (see :mod:`celery_watchdog.config`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class TaskPolicy:
    """The options that apply to one task name, already resolved."""

    heartbeat_timeout: float = 300.0
    soft_timeout: float | None = None
    hard_timeout: float | None = None
    on_stuck: str = "revoke"
    max_deliveries: int = 3
    idempotent: bool = False
    owner: str | None = None
    runbook: str | None = None
    alert_context: tuple[str, ...] = ()
    alert_severity: str | dict[str, str] | None = None  # P1..P3, or kind -> P1..P3
    fail_alert_after: int = 3  # failures in a row of this task name that page
    fingerprint_args: tuple[str, ...] | None = None  # the input's identity (None: every arg)
    quarantine_after: int = 3  # deterministic failures of one input before it is parked
    max_silence: float | None = None  # it must succeed at least this often (a dead-man's switch)

    def severity(self, kind: str, by_kind: Mapping[str, str], default: str) -> str:
        """Task option -> ``watchdog_alert_severity`` -> the kind's default severity."""
        own = self.alert_severity
        if isinstance(own, str):
            return own
        if own and kind in own:
            return own[kind]
        return by_kind.get(kind, default)

"""Every ``watchdog_*`` setting: its default, its one-line doc and its validation, in one place.

Settings are read once per app into a frozen :class:`Settings`. A bad value raises
:class:`ConfigError` naming the setting, the bad value (masked, cut) and what is accepted, so
start-up stops loudly instead of a monitor misbehaving at 2 a.m. Numbers must be finite and
inside a range that makes sense for the setting: ``inf`` or ``nan`` validated once and then
crashed or spun the monitor.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ..model.durations import DAY, HOUR
from ..model.policy import TaskPolicy
from ..model.queue_rules import QueuePolicy
from ..model.reasons import Rules
from .validators import (
    TASK_OPTION_VALIDATORS,
    Validator,
    _bool,
    _channels,
    _failure_reasons,
    _int_between,
    _key_prefix,
    _on_stuck,
    _optional,
    _optional_http_url,
    _optional_str,
    _optional_token,
    _patterns,
    _queue_policies,
    _redis_url,
    _routes,
    _seconds,
    _severity_by_kind,
    _str_tuple,
    _timeout,
    _validate_option,
    _validate_policies,
)
from .validators import ConfigError as ConfigError  # re-exported: the public API
from .validators import validate_timeout as validate_timeout

DEFAULT_REDACT_KEYS = (
    "password", "passwd", "secret", "token", "api_key", "apikey", "authorization",
    "cookie", "card", "ssn", "private_key", "credentials",
)  # fmt: skip


def _spec(default: Any, validator: Validator, doc: str) -> Any:
    metadata = {"validator": validator, "doc": doc}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    """All ``watchdog_*`` settings of one app (attribute ``x`` is the setting ``watchdog_x``)."""

    enabled: bool = _spec(True, _bool, "False turns every hook of the watchdog off.")
    redis_url: str | None = _spec(
        None, _redis_url, "Where the watchdog keeps its records (default: broker_url if redis)."
    )
    key_prefix: str = _spec("watchdog", _key_prefix, "Prefix of every Redis key the watchdog owns.")
    check_interval: float = _spec(10.0, _seconds(0.1, DAY), "Seconds between monitor passes.")
    heartbeat_timeout: float = _spec(300.0, _timeout, "No progress this long -> stuck.")
    soft_timeout: float | None = _spec(
        None, _optional(_timeout), "Runtime past this -> slow (None: learn from history)."
    )
    hard_timeout: float | None = _spec(
        None, _optional(_timeout), "Runtime past this -> overtime (None: learn from history)."
    )
    on_stuck: str = _spec("revoke", _on_stuck, 'What to do with a stuck run: "revoke" | "alert".')
    max_deliveries: int = _spec(
        3, TASK_OPTION_VALIDATORS["max_deliveries"], "A message delivered more often is poison."
    )
    delivery_window: float = _spec(
        3 * DAY, _seconds(60, 365 * DAY), "Deliveries of a message are counted over this long."
    )
    failure_reasons: Rules = _spec(
        Rules(),
        _failure_reasons,
        "Exception type or 're:pattern' -> failure bucket, tried before the built-in ones.",
    )
    queue_policies: dict[str, QueuePolicy] = _spec(
        {}, _queue_policies,
        "Queue name -> who waits and when to alert: action, threshold, critical, owner.",
    )  # fmt: skip
    beat_grace: float | None = _spec(
        None, _optional(_seconds(1, DAY)),
        "Seconds a beat entry may be late before it is a missed run (None: 10% of its "
        "interval, 30 s to 5 min).",
    )  # fmt: skip
    broker_api: str | None = _spec(
        None, _optional_http_url,
        "RabbitMQ management API (http://user:pass@host:15672), as Flower's --broker_api.",
    )  # fmt: skip
    http_token: str | None = _spec(
        None, _optional_token,
        "The status server's operator token (Authorization: Bearer): every change needs it; "
        "None: the server refuses every change.",
    )  # fmt: skip
    http_read_token: str | None = _spec(
        None, _optional_token,
        "If set, the status server's read endpoints need this token (or the operator's).",
    )  # fmt: skip
    alert_channels: tuple[str, ...] = _spec(
        ("log",), _channels, "Where alerts go (every severity not in watchdog_alert_routes)."
    )
    alert_routes: dict[str, tuple[str, ...]] = _spec(
        {}, _routes, "Severity (P1, P2, P3) -> the channel URLs its alerts go to instead."
    )
    alert_severity: dict[str, str] = _spec(
        {}, _severity_by_kind, "Alert kind -> P1, P2 or P3, overriding that kind's default."
    )
    alert_repeat: float = _spec(
        3600.0,
        _seconds(0.1, 30 * DAY),
        "Seconds between reminders of an open, unacknowledged incident.",
    )
    alert_group_threshold: int = _spec(
        5,
        _int_between(1, 100_000),
        "More new incidents of one kind and task in a pass become one alert.",
    )
    alert_timeout: float = _spec(
        10.0, _seconds(0.1, 600), "Seconds one alert may take per channel, retries included."
    )
    sentry_crons: bool = _spec(
        False, _bool, "Also send Sentry Crons error check-ins for beat tasks judged unhealthy."
    )
    task_policies: dict[str, dict[str, Any]] = _spec(
        {}, _validate_policies, "Task-name glob -> task options (first match wins)."
    )
    redact_keys: tuple[str, ...] = _spec(
        DEFAULT_REDACT_KEYS, _str_tuple, "Argument names whose values are shown as [redacted]."
    )
    redact_patterns: tuple[str, ...] = _spec(
        (), _patterns, "Extra regular expressions of secret values, shown as [redacted]."
    )
    retention: float = _spec(DAY, _seconds(1, 365 * DAY), "Seconds a finished run stays listed.")
    max_finished: int = _spec(
        10000, _int_between(1, 10_000_000), "At most this many finished runs are kept."
    )
    flush_interval: float = _spec(1.0, _seconds(0.05, 60), "Seconds between write-behind flushes.")
    buffer_size: int = _spec(
        10000, _int_between(1, 10_000_000), "Events buffered per process before dropping."
    )
    snapshot_interval: float = _spec(5.0, _seconds(0.1, HOUR), "Seconds between worker snapshots.")
    preview_chars: int = _spec(
        200, _int_between(20, 100_000), "Longest args/kwargs preview shown to people."
    )
    learned_soft_floor: float = _spec(
        60.0, _timeout, "A learned soft budget (2 x p99 runtime) is never below this."
    )
    learned_hard_floor: float = _spec(
        300.0, _timeout, "A learned hard budget (5 x p99 runtime) is never below this."
    )
    learn_min_runs: int = _spec(
        30, _int_between(1, 1000), "Runs of a task needed before budgets are learned."
    )
    terminate_grace: float = _spec(
        10.0,
        _seconds(0.1, HOUR),
        "Seconds after SIGTERM before a still-running stuck child gets SIGKILL.",
    )
    queue: str | None = _spec(
        None, _optional_str, "Queue of the celery_watchdog.check beat task (None: default)."
    )
    task_events: bool | None = _spec(
        None, _optional(_bool), "Send verdicts as task-<kind> events for Flower (None: when -E)."
    )

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any] | Any) -> Settings:
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f"watchdog_{f.name}"
            raw = _lookup(conf, name)
            if raw is _MISSING:
                continue
            values[f.name] = f.metadata["validator"](name, raw)
        settings = cls(**values)
        if settings.redis_url is None:
            broker = _lookup(conf, "broker_url")
            if isinstance(broker, str) and broker.startswith(("redis://", "rediss://")):
                settings = _replace(settings, redis_url=broker)
        return settings

    def policy_for(
        self, task_name: str, task_options: Mapping[str, Any] | None = None
    ) -> TaskPolicy:
        """Resolve options in one order: task option -> policy entry -> setting -> default."""
        merged: dict[str, Any] = {
            key: getattr(self, key)
            for key in TASK_OPTION_VALIDATORS
            if hasattr(self, key) and key != "alert_severity"  # that setting is per kind
        }
        for pattern, options in self.task_policies.items():
            if fnmatch.fnmatchcase(task_name, pattern):
                merged.update(options)
                break
        for key, value in (task_options or {}).items():
            merged[key] = _validate_option(f"{task_name}.{key}", key, value)
        return TaskPolicy(**merged)


_MISSING = object()


def _lookup(conf: Any, name: str) -> Any:
    """Find ``name`` in a Celery conf, also under Django's ``CELERY_`` upper-case namespace."""
    for key in (name, name.upper(), f"CELERY_{name.upper()}"):
        try:
            value = conf.get(key, _MISSING)
        except Exception:  # a broken conf object must not hide the other spellings
            value = _MISSING
        if value is not _MISSING:
            return value
    return _MISSING


def _replace(settings: Settings, **changes: Any) -> Settings:
    return replace(settings, **changes)


def setting_docs() -> list[tuple[str, Any, str]]:
    """(setting name, default, doc) for the README's configuration reference."""
    defaults = Settings()
    return [
        (f"watchdog_{f.name}", getattr(defaults, f.name), f.metadata["doc"])
        for f in fields(Settings)
    ]

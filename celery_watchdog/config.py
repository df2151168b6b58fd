"""Every ``watchdog_*`` setting: its default, its one-line doc and its validation, in one place.

Settings are read once per app into a frozen :class:`Settings`. A bad value raises
:class:`ConfigError` naming the setting, the value and what is accepted, so start-up stops
loudly instead of a monitor misbehaving at 2 a.m.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from celery.exceptions import ImproperlyConfigured


class ConfigError(ImproperlyConfigured):
    """A ``watchdog_*`` setting (or task option) has a value we cannot accept."""

    def __init__(self, name: str, value: object, accepted: str) -> None:
        self.setting = name
        super().__init__(f"{name}={value!r} is not valid: expected {accepted}")


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(name, value, "a number of seconds > 0")
    return float(value)


def _optional_positive(name: str, value: Any) -> float | None:
    return None if value is None else _positive(name, value)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(name, value, "an integer >= 1")
    return value


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(name, value, "True or False")
    return value


def _optional_bool(name: str, value: Any) -> bool | None:
    return None if value is None else _bool(name, value)


def _on_stuck(name: str, value: Any) -> str:
    if value not in ("revoke", "alert"):
        raise ConfigError(name, value, '"revoke" or "alert"')
    return str(value)


def _optional_str(name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ConfigError(name, value, "a string or None")
    return value


def _redis_url(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(name, value, "a redis://, rediss:// or unix:// URL, or None")
    return value


def _str_tuple(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise ConfigError(name, value, "a list of strings")
    if not all(isinstance(item, str) and item for item in value):
        raise ConfigError(name, value, "a list of non-empty strings")
    return tuple(value)


def _channels(name: str, value: Any) -> tuple[str, ...]:
    """Each channel URL must build a channel now, not fail at 2 a.m. when the first alert goes."""
    from .alerts import channel_from_url  # alerts import nothing from here: no cycle

    urls = _str_tuple(name, value)
    for url in urls:
        try:
            channel_from_url(url)
        except ValueError as exc:
            raise ConfigError(name, value, f"valid channel URLs ({exc})") from exc
    return urls


SEVERITIES = ("P1", "P2", "P3")


def _severity(name: str, value: Any) -> str:
    if value not in SEVERITIES:
        raise ConfigError(name, value, '"P1", "P2" or "P3"')
    return str(value)


def _severity_by_kind(name: str, value: Any) -> dict[str, str]:
    from .alerts.wording import KINDS

    if not isinstance(value, Mapping) or not all(k in KINDS for k in value):
        raise ConfigError(name, value, f"a dict of alert kind ({', '.join(KINDS)}) -> P1|P2|P3")
    return {kind: _severity(f"{name}[{kind!r}]", sev) for kind, sev in value.items()}


def _task_severity(name: str, value: Any) -> str | dict[str, str]:
    """A task's ``alert_severity``: one severity for every kind, or kind -> severity."""
    return _severity(name, value) if isinstance(value, str) else _severity_by_kind(name, value)


def _routes(name: str, value: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, Mapping) or not all(k in SEVERITIES for k in value):
        raise ConfigError(name, value, "a dict of P1|P2|P3 -> list of alert channel URLs")
    return {sev: _channels(f"{name}[{sev!r}]", urls) for sev, urls in value.items()}


def _key_prefix(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in " {}"):
        raise ConfigError(name, value, "a non-empty string without spaces or braces")
    return value


# ---------------------------------------------------------------------------------------------
# Per-task options: accepted as decorator kwargs / class attributes, policy entries, settings.
# ---------------------------------------------------------------------------------------------

TASK_OPTION_VALIDATORS: dict[str, Callable[[str, Any], Any]] = {
    "heartbeat_timeout": _positive,
    "soft_timeout": _optional_positive,
    "hard_timeout": _optional_positive,
    "on_stuck": _on_stuck,
    "max_deliveries": _positive_int,
    "idempotent": _bool,
    "owner": _optional_str,
    "runbook": _optional_str,
    "alert_context": _str_tuple,
    "alert_severity": _task_severity,
}


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

    def severity(self, kind: str, by_kind: Mapping[str, str], default: str) -> str:
        """Task option -> ``watchdog_alert_severity`` -> the kind's default severity."""
        own = self.alert_severity
        if isinstance(own, str):
            return own
        if own and kind in own:
            return own[kind]
        return by_kind.get(kind, default)


def _validate_policies(name: str, value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, Mapping):
        raise ConfigError(name, value, "a dict of task-name glob -> dict of task options")
    checked: dict[str, dict[str, Any]] = {}
    for pattern, options in value.items():
        if not isinstance(pattern, str) or not isinstance(options, Mapping):
            raise ConfigError(name, value, "a dict of task-name glob -> dict of task options")
        checked[pattern] = {
            key: _validate_option(f"{name}[{pattern!r}][{key!r}]", key, val)
            for key, val in options.items()
        }
    return checked


def _validate_option(label: str, key: str, value: Any) -> Any:
    validator = TASK_OPTION_VALIDATORS.get(key)
    if validator is None:
        raise ConfigError(label, value, f"one of the task options {sorted(TASK_OPTION_VALIDATORS)}")
    return validator(label, value)


DEFAULT_REDACT_KEYS = (
    "password", "passwd", "secret", "token", "api_key", "apikey", "authorization",
    "cookie", "card", "ssn", "private_key", "credentials",
)  # fmt: skip


def _spec(default: Any, validator: Callable[[str, Any], Any], doc: str) -> Any:
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
    check_interval: float = _spec(10.0, _positive, "Seconds between monitor passes.")
    heartbeat_timeout: float = _spec(300.0, _positive, "No progress this long -> stuck.")
    soft_timeout: float | None = _spec(
        None, _optional_positive, "Runtime past this -> slow (None: learn from history)."
    )
    hard_timeout: float | None = _spec(
        None, _optional_positive, "Runtime past this -> overtime (None: learn from history)."
    )
    on_stuck: str = _spec("revoke", _on_stuck, 'What to do with a stuck run: "revoke" | "alert".')
    max_deliveries: int = _spec(3, _positive_int, "A message delivered more often is poison.")
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
        3600.0, _positive, "Seconds between reminders of an open, unacknowledged incident."
    )
    alert_group_threshold: int = _spec(
        5, _positive_int, "More new incidents of one kind and task in a pass become one alert."
    )
    alert_timeout: float = _spec(
        10.0, _positive, "Seconds one alert may take per channel, retries included."
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
    retention: float = _spec(86400.0, _positive, "Seconds a finished run stays listed.")
    max_finished: int = _spec(10000, _positive_int, "At most this many finished runs are kept.")
    flush_interval: float = _spec(1.0, _positive, "Seconds between write-behind flushes.")
    buffer_size: int = _spec(10000, _positive_int, "Events buffered per process before dropping.")
    snapshot_interval: float = _spec(5.0, _positive, "Seconds between worker snapshots.")
    preview_chars: int = _spec(200, _positive_int, "Longest args/kwargs preview shown to people.")
    learned_soft_floor: float = _spec(
        60.0, _positive, "A learned soft budget (2 x p99 runtime) is never below this."
    )
    learned_hard_floor: float = _spec(
        300.0, _positive, "A learned hard budget (5 x p99 runtime) is never below this."
    )
    learn_min_runs: int = _spec(
        30, _positive_int, "Runs of a task needed before budgets are learned."
    )
    terminate_grace: float = _spec(
        10.0, _positive, "Seconds after SIGTERM before a still-running stuck child gets SIGKILL."
    )
    queue: str | None = _spec(
        None, _optional_str, "Queue of the celery_watchdog.check beat task (None: default)."
    )
    task_events: bool | None = _spec(
        None, _optional_bool, "Send verdicts as task-<kind> events for Flower (None: when -E)."
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
    from dataclasses import replace

    return replace(settings, **changes)


def setting_docs() -> list[tuple[str, Any, str]]:
    """(setting name, default, doc) for the README's configuration reference."""
    defaults = Settings()
    return [
        (f"watchdog_{f.name}", getattr(defaults, f.name), f.metadata["doc"])
        for f in fields(Settings)
    ]

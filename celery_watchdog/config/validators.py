"""Validation of every ``watchdog_*`` setting and task option: :class:`ConfigError` and one
validator per kind of value, each ``(setting name, raw value) -> the value to keep``.

:mod:`celery_watchdog.config` names which validator checks which setting.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from celery.exceptions import ImproperlyConfigured

from ..alerts import channel_from_url
from ..alerts.wording import KINDS
from ..model.durations import DAY, HOUR, MINUTE, parse_duration
from ..model.masking import one_line, shown_value
from ..model.queue_rules import QueuePolicy, parse_threshold
from ..model.reasons import Rules, parse_rules

Validator = Callable[[str, Any], Any]


class ConfigError(ImproperlyConfigured):
    """A ``watchdog_*`` setting (or task option) has a value we cannot accept."""

    def __init__(self, name: str, value: object, accepted: str) -> None:
        self.setting = name
        super().__init__(one_line(f"{name}={shown_value(value)} is not valid: expected {accepted}"))


# ---------------------------------------------------------------------------------------------
# Validators: (setting name, raw value) -> the value to keep, or ConfigError.
# ---------------------------------------------------------------------------------------------

def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _span(seconds: float) -> str:
    for size, unit in ((DAY, "day"), (HOUR, "h"), (MINUTE, "min")):
        if seconds >= size and (seconds / size).is_integer():
            count = int(seconds / size)
            return f"{count} {unit}" + ("s" if unit == "day" and count > 1 else "")
    return f"{_plain(seconds)} s"


def _bounded(lo: float, hi: float, *, integer: bool = False) -> Validator:
    """The one way a number is checked: right type, finite, ``lo <= value <= hi``.

    Floats are seconds and may also be written as durations ("5m"); integers are counts.
    """
    if integer:
        accepted = f"an integer between {_plain(lo)} and {_plain(hi)}"
    else:
        extent = f" ({_span(hi)})" if hi >= MINUTE else ""
        accepted = (
            f"a number of seconds between {_plain(lo)} and {_plain(hi)}{extent}, "
            "or a duration such as '30s', '5m', '2h'"
        )

    def validate(name: str, value: Any) -> Any:
        number = value
        if isinstance(value, str) and not integer:
            number = parse_duration(value)
        kinds = (int,) if integer else (int, float)
        if (
            isinstance(number, bool)
            or not isinstance(number, kinds)
            or not math.isfinite(number)
            or not lo <= number <= hi
        ):
            raise ConfigError(name, value, accepted)
        return int(number) if integer else float(number)

    return validate


def _seconds(lo: float, hi: float) -> Validator:
    return _bounded(lo, hi)


def _int_between(lo: int, hi: int) -> Validator:
    return _bounded(lo, hi, integer=True)


def _optional(validator: Validator) -> Validator:
    return lambda name, value: None if value is None else validator(name, value)


_timeout = _seconds(0.1, 30 * DAY)  # heartbeat, soft and hard budgets, step timeouts


def validate_timeout(label: str, value: object) -> float:
    """A timeout given in code (``step(timeout=…)``): same bounds as ``heartbeat_timeout``."""
    result: float = _timeout(label, value)
    return result


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(name, value, "True or False")
    return value


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
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{name}[{i}]", item, "a non-empty string")
    return tuple(value)


def _channels(name: str, value: Any) -> tuple[str, ...]:
    """Each channel URL must build a channel now, not fail at 2 a.m. when the first alert goes.

    An error names the one bad channel, masked: the list holds other channels' passwords.
    """
    urls = _str_tuple(name, value)
    for i, url in enumerate(urls):
        try:
            channel_from_url(url)
        except ValueError as exc:
            reason = shown_value(str(exc), 300)[1:-1]  # masked and cut, without repr's quotes
            raise ConfigError(f"{name}[{i}]", url, f"a working channel URL ({reason})") from exc
    return urls


def _patterns(name: str, value: Any) -> tuple[str, ...]:
    """Extra secret-value patterns: each must compile and must not match the empty string
    (it would redact between every two characters)."""
    patterns = _str_tuple(name, value)
    for i, pattern in enumerate(patterns):
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"{name}[{i}]", pattern, f"a regular expression ({exc})") from exc
        if compiled.search("") is not None:
            raise ConfigError(
                f"{name}[{i}]", pattern, "a regular expression that does not match ''"
            )
    return patterns


def _failure_reasons(name: str, value: Any) -> Rules:
    """Exception type or ``re:`` message pattern -> bucket; checked here, used per failure."""
    try:
        return parse_rules(value)
    except ValueError as exc:
        why = str(exc).removeprefix(f"{name}: ")
        raise ConfigError(name, value, f"exception type or 're:pattern' -> bucket; {why}") from exc


def _optional_names(name: str, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = _str_tuple(name, value)
    for i, item in enumerate(names):
        if not item.isidentifier():
            raise ConfigError(f"{name}[{i}]", item, "a parameter name of the task")
    return names


_QUEUE_KEYS = ("action", "threshold", "critical", "owner")


def _queue_policies(name: str, value: Any) -> dict[str, QueuePolicy]:
    """Queue name -> {"action", "threshold" ("5m", 300 or "3x normal"), "critical", "owner"}."""
    if not isinstance(value, Mapping):
        raise ConfigError(name, value, "a dict of queue name -> dict of queue options")
    out = {}
    for queue, options in value.items():
        label = f"{name}[{queue!r}]"
        if not isinstance(queue, str) or not queue:
            raise ConfigError(f"{name} key", queue, "a queue name (a non-empty string)")
        if not isinstance(options, Mapping):
            raise ConfigError(label, options, f"a dict with some of {list(_QUEUE_KEYS)}")
        unknown = sorted(set(options) - set(_QUEUE_KEYS))
        if unknown:
            raise ConfigError(f"{label}[{unknown[0]!r}]", options[unknown[0]],
                              f"one of the queue options {list(_QUEUE_KEYS)}")  # fmt: skip
        try:
            absolute, factor = parse_threshold(options.get("threshold", 300))
        except ValueError as exc:
            raise ConfigError(f"{label}['threshold']", options.get("threshold"),
                              "seconds, a duration like '5m', or '3x normal'") from exc
        out[queue] = QueuePolicy(
            threshold=absolute if absolute is not None else QueuePolicy.threshold,
            factor=factor,
            critical=_bool(f"{label}['critical']", options.get("critical", False)),
            action=_optional_str(f"{label}['action']", options.get("action")),
            owner=_optional_str(f"{label}['owner']", options.get("owner")),
        )  # fmt: skip
    return out


def _optional_http_url(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ConfigError(name, value, "an http:// or https:// URL, or None")
    return value


def _optional_token(name: str, value: Any) -> str | None:
    """A shared secret for the status server: None (off) or at least 16 printable characters."""
    if value is None:
        return None
    ok = isinstance(value, str) and len(value) >= 16 and value.isprintable()
    if not ok or value != value.strip():  # never echo a secret back, even a wrong one
        raise ConfigError(name, "[redacted]", "None or a string of 16+ printable characters")
    return value


SEVERITIES = ("P1", "P2", "P3")


def _severity(name: str, value: Any) -> str:
    if value not in SEVERITIES:
        raise ConfigError(name, value, '"P1", "P2" or "P3"')
    return str(value)


def _severity_by_kind(name: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(name, value, f"a dict of alert kind ({', '.join(KINDS)}) -> P1|P2|P3")
    for kind in value:
        if kind not in KINDS:
            raise ConfigError(f"{name} key", kind, f"an alert kind ({', '.join(KINDS)})")
    return {kind: _severity(f"{name}[{kind!r}]", sev) for kind, sev in value.items()}


def _task_severity(name: str, value: Any) -> str | dict[str, str]:
    """A task's ``alert_severity``: one severity for every kind, or kind -> severity."""
    return _severity(name, value) if isinstance(value, str) else _severity_by_kind(name, value)


def _routes(name: str, value: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        raise ConfigError(name, value, "a dict of P1|P2|P3 -> list of alert channel URLs")
    for sev in value:
        if sev not in SEVERITIES:
            raise ConfigError(f"{name} key", sev, '"P1", "P2" or "P3"')
    return {sev: _channels(f"{name}[{sev!r}]", urls) for sev, urls in value.items()}


def _key_prefix(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in " {}"):
        raise ConfigError(name, value, "a non-empty string without spaces or braces")
    return value


# ---------------------------------------------------------------------------------------------
# Per-task options: accepted as decorator kwargs / class attributes, policy entries, settings.
# ---------------------------------------------------------------------------------------------

TASK_OPTION_VALIDATORS: dict[str, Validator] = {
    "heartbeat_timeout": _timeout,
    "soft_timeout": _optional(_timeout),
    "hard_timeout": _optional(_timeout),
    "on_stuck": _on_stuck,
    "max_deliveries": _int_between(1, 1000),
    "idempotent": _bool,
    "owner": _optional_str,
    "runbook": _optional_str,
    "alert_context": _str_tuple,
    "alert_severity": _task_severity,
    "fail_alert_after": _int_between(1, 1000),
    "fingerprint_args": _optional_names,
    "quarantine_after": _int_between(1, 1000),
    "max_silence": _optional(_timeout),
}


def _validate_policies(name: str, value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, Mapping):
        raise ConfigError(name, value, "a dict of task-name glob -> dict of task options")
    checked: dict[str, dict[str, Any]] = {}
    for pattern, options in value.items():
        if not isinstance(pattern, str):
            raise ConfigError(f"{name} key", pattern, "a task-name glob (a string)")
        if not isinstance(options, Mapping):
            raise ConfigError(f"{name}[{pattern!r}]", options, "a dict of task options")
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

"""Settings: defaults, validation that names the setting, and the option resolution order."""

from __future__ import annotations

import pytest

from celery_watchdog.config import ConfigError, Settings, setting_docs


def test_defaults_are_the_documented_contract() -> None:
    s = Settings.from_conf({})
    assert s.enabled is True
    assert s.check_interval == 10
    assert s.heartbeat_timeout == 300
    assert s.soft_timeout is None and s.hard_timeout is None
    assert s.on_stuck == "revoke"
    assert s.max_deliveries == 3
    assert s.alert_channels == ("log",)
    assert s.task_policies == {}


def test_redis_url_defaults_to_a_redis_broker_url() -> None:
    assert Settings.from_conf({"broker_url": "redis://h:1/2"}).redis_url == "redis://h:1/2"
    assert Settings.from_conf({"broker_url": "amqp://guest@h//"}).redis_url is None


@pytest.mark.parametrize(
    ("setting", "value", "accepted"),
    [
        ("watchdog_heartbeat_timeout", -1, "seconds > 0"),
        ("watchdog_heartbeat_timeout", "300", "seconds > 0"),
        ("watchdog_check_interval", 0, "seconds > 0"),
        ("watchdog_on_stuck", "kill", '"revoke" or "alert"'),
        ("watchdog_max_deliveries", 0, "integer >= 1"),
        ("watchdog_max_deliveries", True, "integer >= 1"),
        ("watchdog_enabled", "yes", "True or False"),
        ("watchdog_redis_url", "http://x", "redis://"),
        ("watchdog_alert_channels", "log", "list of strings"),
        ("watchdog_task_policies", ["reports.*"], "dict of task-name glob"),
    ],
)
def test_a_bad_setting_is_refused_naming_setting_value_and_what_is_accepted(
    setting: str, value: object, accepted: str
) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_conf({setting: value})
    message = str(err.value)
    assert setting in message
    assert repr(value) in message
    assert accepted in message


def test_a_bad_option_inside_a_policy_names_the_pattern_and_option() -> None:
    with pytest.raises(ConfigError, match=r"watchdog_task_policies\['reports\.\*'\]\['heartbeat"):
        Settings.from_conf({"watchdog_task_policies": {"reports.*": {"heartbeat_timeout": -5}}})
    with pytest.raises(ConfigError, match="one of the task options"):
        Settings.from_conf({"watchdog_task_policies": {"reports.*": {"heartbeat": 5}}})


def test_options_resolve_task_then_policy_then_setting_then_default() -> None:
    s = Settings.from_conf(
        {
            "watchdog_heartbeat_timeout": 100,
            "watchdog_task_policies": {
                "reports.*": {"heartbeat_timeout": 60, "owner": "reports"},
                "*": {"owner": "platform"},
            },
        }
    )
    assert s.policy_for("reports.build", {"heartbeat_timeout": 5}).heartbeat_timeout == 5
    assert s.policy_for("reports.build").heartbeat_timeout == 60
    assert s.policy_for("reports.build").owner == "reports"  # first matching entry wins
    assert s.policy_for("billing.charge").heartbeat_timeout == 100
    assert s.policy_for("billing.charge").owner == "platform"
    assert s.policy_for("billing.charge").max_deliveries == 3  # built-in default


def test_a_bad_task_option_names_the_task() -> None:
    with pytest.raises(ConfigError, match=r"reports\.build\.on_stuck"):
        Settings.from_conf({}).policy_for("reports.build", {"on_stuck": "explode"})


def test_django_style_upper_case_settings_are_read() -> None:
    assert Settings.from_conf({"CELERY_WATCHDOG_HEARTBEAT_TIMEOUT": 42}).heartbeat_timeout == 42
    assert Settings.from_conf({"WATCHDOG_HEARTBEAT_TIMEOUT": 43}).heartbeat_timeout == 43


def test_settings_are_frozen_and_every_one_is_documented() -> None:
    s = Settings.from_conf({})
    with pytest.raises(AttributeError):
        s.heartbeat_timeout = 1  # type: ignore[misc]
    docs = setting_docs()
    assert all(name.startswith("watchdog_") and doc for name, _, doc in docs)
    assert "watchdog_task_policies" in {name for name, _, _ in docs}


def test_an_alert_channel_url_that_cannot_work_stops_start_up_naming_it() -> None:
    with pytest.raises(ConfigError, match="watchdog_alert_channels"):
        Settings.from_conf({"watchdog_alert_channels": ["log", "smtp://mail.example.com"]})
    ok = Settings.from_conf({"watchdog_alert_channels": ["log", "webhook+https://x.test/h"]})
    assert ok.alert_channels == ("log", "webhook+https://x.test/h")

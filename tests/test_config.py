"""Settings: defaults, validation that names the setting, and the option resolution order."""

from __future__ import annotations

import pytest

from celery_watchdog.config import ConfigError, Settings, setting_docs, validate_timeout
from celery_watchdog.model.masking import mask_url


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
        ("watchdog_heartbeat_timeout", -1, "seconds between 0.1 and 2592000 (30 days)"),
        ("watchdog_heartbeat_timeout", "300 years", "or a duration such as '30s'"),
        ("watchdog_check_interval", 0, "seconds between 0.1 and 86400 (1 day)"),
        ("watchdog_on_stuck", "kill", '"revoke" or "alert"'),
        ("watchdog_max_deliveries", 0, "an integer between 1 and 1000"),
        ("watchdog_max_deliveries", True, "an integer between 1 and 1000"),
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


# -- numbers mean what they say: finite, of the right type, inside a documented range ----------

DAY = 86400
SECONDS = {  # setting -> (lowest, highest) accepted, in seconds
    "watchdog_check_interval": (0.1, DAY),
    "watchdog_heartbeat_timeout": (0.1, 30 * DAY),
    "watchdog_soft_timeout": (0.1, 30 * DAY),
    "watchdog_hard_timeout": (0.1, 30 * DAY),
    "watchdog_retention": (1, 365 * DAY),
    "watchdog_flush_interval": (0.05, 60),
    "watchdog_snapshot_interval": (0.1, 3600),
    "watchdog_alert_repeat": (0.1, 30 * DAY),
    "watchdog_alert_timeout": (0.1, 600),
    "watchdog_terminate_grace": (0.1, 3600),
    "watchdog_learned_soft_floor": (0.1, 30 * DAY),
    "watchdog_learned_hard_floor": (0.1, 30 * DAY),
}
COUNTS = {  # setting -> (lowest, highest) accepted
    "watchdog_max_deliveries": (1, 1000),
    "watchdog_max_finished": (1, 10_000_000),
    "watchdog_buffer_size": (1, 10_000_000),
    "watchdog_preview_chars": (20, 100_000),
    "watchdog_learn_min_runs": (1, 1000),
    "watchdog_alert_group_threshold": (1, 100_000),
}
BAD_SECONDS = [float("nan"), float("inf"), float("-inf"), 0, -1, 1e20, 10**30, True, False,
               "often", "nan", "inf", "-5m", "1e3", [5], {"s": 5}]  # fmt: skip
BAD_COUNTS = [float("nan"), float("inf"), float("-inf"), 0, -3, 10**12, True, 2.5, 5.0, "5",
              None, [5]]  # fmt: skip


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _refusal(setting: str, value: object) -> str:
    with pytest.raises(ConfigError) as err:
        Settings.from_conf({setting: value})
    message = str(err.value)
    assert "\n" not in message and "\r" not in message
    assert message.startswith(setting)
    return message


def _accepted(setting: str) -> str:
    if setting in COUNTS:
        return "expected an integer between {} and {}".format(*COUNTS[setting])
    lo, hi = SECONDS[setting]
    return f"expected a number of seconds between {_plain(lo)} and {_plain(hi)}"


@pytest.mark.parametrize(
    ("setting", "value"),
    [(s, v) for s in sorted(SECONDS) for v in BAD_SECONDS]
    + [(s, v) for s in sorted(COUNTS) for v in BAD_COUNTS],
    ids=repr,
)
def test_a_number_setting_refuses_a_non_finite_wrong_typed_or_out_of_range_value_in_one_line(
    setting: str, value: object
) -> None:
    assert _accepted(setting) in _refusal(setting, value)


@pytest.mark.parametrize("setting", sorted({**SECONDS, **COUNTS}))
def test_a_number_setting_accepts_both_ends_of_its_range(setting: str) -> None:
    lo, hi = {**SECONDS, **COUNTS}[setting]
    attr = setting.removeprefix("watchdog_")
    assert getattr(Settings.from_conf({setting: lo}), attr) == lo
    assert getattr(Settings.from_conf({setting: hi}), attr) == hi


@pytest.mark.parametrize(
    ("setting", "text", "seconds"),
    [
        ("watchdog_check_interval", "30s", 30.0),
        ("watchdog_check_interval", "5m", 300.0),
        ("watchdog_heartbeat_timeout", "2h", 7200.0),
        ("watchdog_heartbeat_timeout", "1h30m", 5400.0),
        ("watchdog_retention", "1d", 86400.0),
        ("watchdog_retention", " 7 d ", 604800.0),
        ("watchdog_flush_interval", "50ms", 0.05),
        ("watchdog_alert_repeat", "300", 300.0),
        ("watchdog_soft_timeout", "2.5min", 150.0),
    ],
)
def test_a_duration_may_be_written_as_text(setting: str, text: str, seconds: float) -> None:
    assert getattr(Settings.from_conf({setting: text}), setting.removeprefix("watchdog_")) == (
        seconds
    )


def test_a_duration_written_as_text_is_still_bound_checked() -> None:
    assert "between 0.1 and 86400 (1 day)" in _refusal("watchdog_check_interval", "2d")
    assert "between 0.05 and 60" in _refusal("watchdog_flush_interval", "10ms")


def test_a_bad_task_option_names_the_task_the_value_and_the_range() -> None:
    settings = Settings.from_conf({})
    with pytest.raises(ConfigError) as err:
        settings.policy_for("build_report", {"heartbeat_timeout": float("nan")})
    assert str(err.value).startswith(
        "build_report.heartbeat_timeout=nan is not valid: expected a number of seconds between "
        "0.1 and 2592000 (30 days)"
    )
    with pytest.raises(ConfigError, match=r"^build_report\.max_deliveries=1000000 .* 1 and 1000"):
        settings.policy_for("build_report", {"max_deliveries": 1_000_000})
    with pytest.raises(ConfigError, match=r"^build_report\.soft_timeout=inf "):
        settings.policy_for("build_report", {"soft_timeout": float("inf")})
    assert settings.policy_for("build_report", {"hard_timeout": "30m"}).hard_timeout == 1800.0


def test_validate_timeout_takes_seconds_or_a_duration_and_refuses_the_rest_naming_the_label() -> (
    None
):
    assert validate_timeout("t.step('fetch').timeout", 60) == 60.0
    assert validate_timeout("t.step('fetch').timeout", "30") == 30.0
    assert validate_timeout("t.step('fetch').timeout", "2m") == 120.0
    for bad in (float("nan"), float("inf"), 0, -1, True, None, "soon", 1e12):
        with pytest.raises(ConfigError) as err:
            validate_timeout("t.step('fetch').timeout", bad)
        assert str(err.value).startswith("t.step('fetch').timeout=")
        assert "between 0.1 and 2592000" in str(err.value)


def test_an_error_never_carries_a_control_character_from_a_task_name_or_value() -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_conf({}).policy_for("evil\x1b[2J\r\n", {"on_stuck": "x\x1b]0;owned\x07"})
    message = str(err.value)
    assert "\x1b" not in message and "\x07" not in message and "\n" not in message
    assert "\r" not in message and "\\x1b[2J" in message


# -- errors name the bad value only, masked and cut ----------------------------------------------

SECRETS = ("mailpass", "slacktoken123", "hooksecret", "hunter2")
CHANNELS = [
    "log",
    "smtp://ops:mailpass@mail.example.com?to=oncall@example.com",
    "slack+https://hooks.slack.com/services/T000/B000/slacktoken123",
    "webhook+https://hooks.example.com/h?secret=hooksecret",
    "smtp://admin:hunter2@broken.example.com",  # no ?to=: cannot work
]


def test_a_bad_channel_is_named_alone_without_any_channels_password_or_token() -> None:
    message = _refusal("watchdog_alert_channels", CHANNELS).replace("watchdog_alert_channels", "")
    assert message.startswith("[4]='smtp://admin:***@broken.example.com' is not valid")
    assert not [s for s in SECRETS if s in message]
    assert "mail.example.com" not in message and "hooks.slack.com" not in message


def test_a_bad_route_channel_is_named_alone_and_masked() -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_conf({"watchdog_alert_routes": {"P1": CHANNELS}})
    message = str(err.value)
    assert message.startswith("watchdog_alert_routes['P1'][4]='smtp://admin:***@broken")
    assert not [s for s in SECRETS if s in message]


def test_a_non_string_channel_is_named_by_its_position_only() -> None:
    message = _refusal("watchdog_alert_channels", [*CHANNELS[:4], 5])
    assert message == "watchdog_alert_channels[4]=5 is not valid: expected a non-empty string"


def test_a_bad_policy_entry_is_named_without_the_other_entries() -> None:
    policies = {"a.*": {"owner": "alice@example.com"}, "b.*": {"heartbeat_timeout": "soon"}}
    message = _refusal("watchdog_task_policies", policies)
    assert message.startswith("watchdog_task_policies['b.*']['heartbeat_timeout']='soon' ")
    assert "alice" not in message


def test_a_redis_url_in_an_error_has_its_password_masked() -> None:
    message = _refusal("watchdog_redis_url", "http://:s3cret@cache:6379/0?password=s3cret")
    assert "s3cret" not in message
    assert "'http://:***@cache:6379/0?password=***'" in message


def test_a_long_value_is_cut_in_the_error() -> None:
    message = _refusal("watchdog_key_prefix", "x y" * 1000)
    assert len(message) < 300 and "…" in message


# -- watchdog_redact_patterns ------------------------------------------------------------------


def test_redact_patterns_default_to_none_and_keep_the_ones_given() -> None:
    assert Settings.from_conf({}).redact_patterns == ()
    patterns = [r"acct_[0-9a-f]{16}", r"(?i)bearer\s+\S+"]
    assert Settings.from_conf({"watchdog_redact_patterns": patterns}).redact_patterns == tuple(
        patterns
    )


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        ("acct_.*", "a list of strings"),
        ([r"ok\d+", ""], "[1]='' is not valid: expected a non-empty string"),
        ([r"ok\d+", "a("], "[1]='a(' is not valid: expected a regular expression (missing )"),
        (["x*"], "[0]='x*' is not valid: expected a regular expression that does not match ''"),
    ],
)
def test_a_redact_pattern_that_cannot_work_is_refused_naming_it(
    patterns: object, expected: str
) -> None:
    assert expected in _refusal("watchdog_redact_patterns", patterns)


def test_a_refused_redact_pattern_is_shown_masked_and_cut() -> None:
    pattern = "postgres://admin:hunter2@db/x(" + "y" * 1000
    message = _refusal("watchdog_redact_patterns", [pattern])
    assert "hunter2" not in message and "admin:***@db" in message and len(message) < 400


# -- mask_url ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:s3cret@host:6379/2", "redis://user:***@host:6379/2"),
        ("rediss://host:6380/0?password=s3cret&ssl_cert_reqs=none",
         "rediss://host:6380/0?password=***&ssl_cert_reqs=none"),
        ("unix:///run/redis.sock?db=1&password=s3cret", "unix:///run/redis.sock?db=1&password=***"),
        ("redis://:p?ss#w@host:6379/0", "redis://:***@host:6379/0"),  # unencoded ? and # too
        ("smtp://user:s3cret@mail?to=a@b", "smtp://user:***@mail?to=a@b"),
        ("smtps://user:s3cret@mail:465/?to=a@b,c@d&from=w@x",
         "smtps://user:***@mail:465/?to=a@b,c@d&from=w@x"),
        ("slack+https://hooks.slack.com/services/T000/B000/XXXXXXXX",
         "slack+https://hooks.slack.com/services/T000/B000/***"),
        ("webhook+https://hooks.example.com/h?secret=s3cret&x=1",
         "webhook+https://hooks.example.com/h?secret=***&x=1"),
        ("webhook+https://discord.com/api/webhooks/123/AbCdEfGh12345678IjKl",
         "webhook+https://discord.com/api/webhooks/123/***"),
        ("https://api.example.com/v1?token=t&key=k&api_key=a&page=2",
         "https://api.example.com/v1?token=***&key=***&api_key=***&page=2"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("redis://user@host/0", "redis://user@host/0"),
        ("log", "log"),
        ("sentry", "sentry"),
    ],
)  # fmt: skip
def test_mask_url_hides_passwords_and_tokens_and_keeps_the_rest(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert mask_url(masked) == masked  # masking twice changes nothing


@pytest.mark.parametrize(
    "odd", ["", "://", "a://@", "redis://:@h", "x://" + "@" * 500, "\x00://:p@"]
)
def test_mask_url_never_raises_and_never_shows_a_password(odd: str) -> None:
    assert ":p@" not in mask_url(odd)
    assert mask_url(None) == "***"  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", ["abc", float("nan"), float("inf"), -1, True, [30]])
def test_a_step_with_a_bad_timeout_is_refused_naming_the_task(timeout: object) -> None:
    from celery import Celery

    from celery_watchdog import WatchedTask

    app = Celery("steps", set_as_current=False)

    @app.task(base=WatchedTask, bind=True, name="reports.build", shared=False)
    def build(self: WatchedTask) -> None:
        with self.step("fetch rows", timeout=timeout):  # type: ignore[arg-type]
            pass

    with pytest.raises(ConfigError) as raised:
        build.run()
    message = str(raised.value)
    assert "reports.build" in message and "fetch rows" in message and "\n" not in message


def test_a_step_timeout_written_as_a_duration_is_taken() -> None:
    from celery import Celery

    from celery_watchdog import WatchedTask

    app = Celery("steps", set_as_current=False)

    @app.task(base=WatchedTask, bind=True, name="reports.ok", shared=False)
    def ok(self: WatchedTask) -> str:
        with self.step("fetch rows", timeout="30"), self.step("write", timeout="5m"):
            return "done"

    assert ok.run() == "done"

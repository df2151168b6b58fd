"""Argument previews: secrets redacted (nested too), sizes capped, hostile values survived."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from celery_watchdog.config import DEFAULT_REDACT_KEYS
from celery_watchdog.model.redact import REDACTED, Redactor

R = Redactor(DEFAULT_REDACT_KEYS, max_chars=200)


def test_secret_kwargs_are_redacted_including_nested_ones() -> None:
    shown = R.kwargs(
        {"account_id": 7, "password": "hunter2", "meta": {"Authorization": "Bearer abc"}}
    )
    assert "hunter2" not in shown and "Bearer" not in shown
    assert shown.count(REDACTED) == 2
    assert "'account_id': 7" in shown


def test_positional_args_are_redacted_by_parameter_name() -> None:
    shown = R.args((7, "tok_live_123"), ["account_id", "card_token"])
    assert shown == f"(7, {REDACTED})"


def test_key_names_are_matched_case_insensitively_and_by_substring() -> None:
    for key in ("API_KEY", "stripe_api_key", "session_cookie", "user_ssn", "card_number"):
        assert R.kwargs({key: "s3cr3t"}) == "{" + repr(key) + f": {REDACTED}" + "}"


def test_long_values_and_long_lists_are_cut_with_a_marker() -> None:
    shown = R.args(("x" * 10_000,), [])
    assert "(+9920 chars)" in shown
    assert len(R.args((list(range(10_000)),), [])) <= 200
    assert "more" in R.args(tuple(range(100)), [])


def test_binary_and_huge_values_never_get_copied_into_the_preview() -> None:
    assert R.args((b"\x00" * 50_000_000,), []) == "(<bytes len=50000000>,)"


class Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class Weird:
    def __repr__(self) -> Any:
        return 42


def test_unrepresentable_values_get_a_safe_repr_instead_of_raising() -> None:
    assert R.args((Hostile(),), []) == "(<Hostile (repr failed)>,)"
    assert "Weird" in R.value(Weird())


def test_deeply_nested_values_are_elided() -> None:
    value: Any = []
    for _ in range(50):
        value = [value]
    assert "…" in R.value(value)


def test_configured_keys_replace_the_defaults() -> None:
    custom = Redactor(["pin"])
    shown = custom.kwargs({"pin": 1234, "password": "x"})
    assert shown == f"{{'pin': {REDACTED}, 'password': 'x'}}"


# -- secrets by value ----------------------------------------------------------------------

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
# (text holding a secret, the secret, what stays readable around it)
SHAPES = [
    ("postgres://admin:pg-Pa55@db/app", "pg-Pa55", "postgres://admin:[redacted]@db/app"),
    ("redis://:r3dis-pw@cache:6379/0", "r3dis-pw", "redis://:[redacted]@cache:6379/0"),
    ("amqp://bob:p@ss@mq//", "p@ss", "amqp://bob:[redacted]@mq//"),
    ("https://h/x?user=bob&password=qu3ry&page=2", "qu3ry", "?user=bob&password=[redacted]&page=2"),
    ("https://h/cb?access_token=t0k3n-abc", "t0k3n-abc", "?access_token=[redacted]"),
    ("Authorization: Bearer 0a1b2c3d4e5f", "0a1b2c3d4e5f", "Authorization: Bearer [redacted]"),
    ("{'Authorization': 'Token 9f8e7d6c'}", "9f8e7d6c", "'Authorization': 'Token [redacted]'"),
    ("retrying with Bearer Zm9vYmFyYmF6", "Zm9vYmFyYmF6", "with Bearer [redacted]"),
    ("Basic YWRtaW46aHVudGVyMg==", "YWRtaW46aHVudGVyMg", "Basic [redacted]"),
    (f"jwt {JWT} expired", JWT, "jwt [redacted] expired"),
    ("key sk_live_51HqLyjWDarjtT1zd", "51HqLyjWDarjtT1zd", "key sk_live_[redacted]"),
    ("rk_test_abcdef123456 pk_live_Zyx98765", "abcdef123456", "rk_test_[redacted] pk_live_"),
    ("xoxb-1234567890-AbCdEfGhIjKl", "AbCdEfGhIjKl", "xoxb-[redacted]"),
    ("xoxp-1234567890-ZyXwVuTsRq", "ZyXwVuTsRq", "xoxp-[redacted]"),
    ("ghp_16C7e42F292c6912E7710c838347Ae178B4a", "16C7e42F292c6912E77", "ghp_[redacted]"),
    ("id AKIAIOSFODNN7EXAMPLE ok", "IOSFODNN7EXAMPLE", "id AKIA[redacted] ok"),
    ("ASIAY34FZKBOKMUTVV7A", "Y34FZKBOKMUTVV7A", "ASIA[redacted]"),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG", "wJalrXUtnFEMI", "key = [redacted]"),
    ("login failed: password=hunter2 user=bob", "hunter2", "password=[redacted] user=bob"),
    ("{'client_secret': 'abc def'}", "abc def", "{'client_secret': '[redacted]'}"),
    ('DB_PASSWORD="s3cr3t"', "s3cr3t", 'DB_PASSWORD="[redacted]"'),
    ("api_key: AIzaSyA-1234567890abcdefghij", "AIzaSyA-1234567890", "api_key: [redacted]"),
    (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
        "MIIEpAIBAAKCAQEA",
        "-----BEGIN RSA PRIVATE KEY-----[redacted]-----END",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("text", "secret", "kept"), SHAPES)
def test_each_secret_shape_is_hidden_in_free_text_and_what_is_around_it_stays(
    text: str, secret: str, kept: str
) -> None:
    shown = R.text(f"ConnectionError: {text}")
    assert secret not in shown and kept in shown


@pytest.mark.parametrize(("text", "secret", "kept"), SHAPES)
def test_each_secret_shape_is_hidden_in_args_kwargs_and_nested_values(
    text: str, secret: str, kept: str
) -> None:
    previews = [
        R.args((text, 7), ["target", "account_id"]),
        R.args((text,)),  # no parameter names known
        R.kwargs({"target": text}),
        R.kwargs({"jobs": [{"conn": text}]}),
        R.value({"result": (text,)}),
        R.mapping({"detail": text})["detail"],
    ]
    for shown in previews:
        assert secret not in shown


def test_a_connection_url_keeps_its_user_and_host_and_hides_its_password() -> None:
    assert R.args(("postgres://admin:pw@db/x",)) == "('postgres://admin:[redacted]@db/x',)"
    assert R.kwargs({"dsn": "mysql://root:toor@10.0.0.1:3306/shop"}) == (
        "{'dsn': 'mysql://root:[redacted]@10.0.0.1:3306/shop'}"
    )


@pytest.mark.parametrize("name", ["auth", "basic_auth", "http_auth", "credentials", "login"])
def test_a_user_password_pair_under_an_auth_like_name_keeps_the_user(name: str) -> None:
    assert R.kwargs({name: ("user", "pw")}) == f"{{'{name}': ('user', '[redacted]')}}"
    assert R.kwargs({name: ["user", "pw"]}) == f"{{'{name}': ['user', '[redacted]']}}"
    assert R.args((("user", "pw"),), [name]) == "(('user', '[redacted]'),)"


def test_ordinary_text_is_left_alone() -> None:
    for text in (
        "ValueError: account 12 not found", "http://host:8080/path?page=2",
        "Bearer token expired", "basic functionality is broken", "user@example.com",
        "step 'fetch rows' took 3 s", "ratio 3:4 at 12:30",
    ):  # fmt: skip
        assert R.text(text) == text
    assert R.args(("acme", 7, "2026-10")) == "('acme', 7, '2026-10')"


def test_redacting_twice_changes_nothing() -> None:
    for text, _, _ in SHAPES:
        once = R.text(text)
        assert R.text(once) == once


def test_configured_patterns_hide_every_match() -> None:
    custom = Redactor(DEFAULT_REDACT_KEYS, patterns=[r"ACME-\d{6}", r"(?i)internal-[a-z]+"])
    assert custom.text("ticket ACME-123456 on Internal-Billing") == (
        "ticket [redacted] on [redacted]"
    )
    assert custom.args(("ACME-654321",)) == "('[redacted]',)"
    assert "ACME-123456" in R.text("ticket ACME-123456")  # only where configured


# -- storable, capped, never raising -------------------------------------------------------


def test_free_text_is_made_storable_lone_surrogates_shown_and_nul_bytes_dropped() -> None:
    shown = R.text("caf\udce9 \x00done")
    assert shown == "caf\\udce9 done"
    shown.encode("utf-8")
    assert R.text("ESC \x1b[2J stays for the renderer to escape").startswith("ESC \x1b[2J")


def test_previews_are_storable_whatever_the_value_holds() -> None:
    class Odd:
        def __repr__(self) -> str:
            return "Odd(\udce9\x1b[2J\x00)"

    for shown in (R.args(("\udce9",)), R.value(Odd()), R.kwargs({"\udce9": "\ud800"})):
        shown.encode("utf-8")
        assert "\x1b" not in shown and "\x00" not in shown


def test_free_text_is_cut_at_the_limit_with_a_marker() -> None:
    shown = R.text("word " * 1000, limit=100)
    assert len(shown) == 100 and shown.endswith("…")
    assert R.text("short", limit=100) == "short"


def test_a_secret_across_the_cut_is_never_shown_in_part() -> None:
    # The scan stops inside the URL: the partial URL must not appear with its password.
    text = "x " * 40 + "postgres://admin:hunter2-long-password@db/x"
    for limit in range(60, 130):
        assert "hunter2" not in R.text(text, limit=limit)
    url = "redis://u:hunter2@h"
    for start in range(64 * 1024 - len(url), 64 * 1024):  # the 64 KiB scan cuts the URL
        text = "a" * (start % 2) + "a " * (start // 2) + url + " tail"
        shown = R.text(text)
        assert "hunt" not in shown and shown.endswith("…")  # not even a part of it


def test_text_never_raises_on_an_object_whose_str_fails() -> None:
    class Bad:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert R.text(Bad()) == "<unrepresentable text>"
    assert R.text(ValueError("postgres://a:b@c/d")) == "postgres://a:[redacted]@c/d"


def test_a_50_mb_string_costs_milliseconds_as_text_and_as_an_argument() -> None:
    big = "postgres://admin:pw@db/x " + "x" * 50_000_000
    started = time.perf_counter()
    shown = R.text(big, limit=300)
    preview = R.args((big,))
    assert time.perf_counter() - started < 0.25
    assert "pw@" not in shown and "pw@" not in preview and len(shown) == 300


ADVERSARIAL = [
    "://" * 350_000, "://a:" * 200_000, "postgres://admin:" + "p" * 1_000_000,
    "eyJ" * 350_000, "eyJa." * 200_000, "eyJ-" * 250_000, "sk_live_" * 125_000,
    "AKIA" * 250_000, "password=" * 110_000, "password" * 125_000, "password: '" + "a" * 10**6,
    "Bearer " * 150_000, "?a=" * 350_000, "&token=" * 150_000, "authorization: " * 70_000,
    "-----BEGIN PRIVATE KEY-----" * 40_000, "a" * 1_000_000, " " * 1_000_000,
]  # fmt: skip


@pytest.mark.parametrize("text", ADVERSARIAL, ids=lambda t: repr(t[:12]))
def test_no_input_makes_the_rules_backtrack_catastrophically(text: str) -> None:
    # Uncapped on purpose (``scrub`` is what ``text`` runs after its cap): 1 MB in linear
    # time is well under a second; a catastrophic pattern would take minutes.
    started = time.perf_counter()
    R.scrub(text)
    assert time.perf_counter() - started < 2.0
    started = time.perf_counter()
    R.text(text)
    assert time.perf_counter() - started < 0.3


def test_json_text_stays_valid_json_once_scrubbed() -> None:
    # A stack or a details document is stored as JSON text: scrubbing it must not break it.
    doc = {
        "frames": [{"line": 'conn = connect("postgres://app:pg-pw@db/x")',
                    "locals": {"cfg": '{"password": "hunter2", "n": 1}', "tok": "a?token=t\\\"q"},
                    "text": "password=\"s3cret\" Authorization: Bearer 0a1b2c3d4e5f"}],
    }  # fmt: skip
    shown = R.text(json.dumps(doc))
    assert json.loads(shown)  # still JSON
    for secret in ("pg-pw", "hunter2", "s3cret", "0a1b2c3d4e5f"):
        assert secret not in shown

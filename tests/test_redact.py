"""Argument previews: secrets redacted (nested too), sizes capped, hostile values survived."""

from __future__ import annotations

from typing import Any

from celery_watchdog.config import DEFAULT_REDACT_KEYS
from celery_watchdog.redact import REDACTED, Redactor

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

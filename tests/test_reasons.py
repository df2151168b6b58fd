"""Failure reasons: real exceptions and recorded texts land in the bucket a person acts on."""

from __future__ import annotations

import json
import re
import socket
from typing import Any

import pytest

from celery_watchdog.model.reasons import (
    BUCKETS,
    DETERMINISTIC,
    Rules,
    classify,
    classify_text,
    is_deterministic,
    parse_rules,
)


def _cls(name: str, bases: tuple[type, ...], module: Any = "requests.exceptions") -> type:
    return type(name, bases, {"__module__": module})


# requests' hierarchy, imitated: no import of requests.
RequestException = _cls("RequestException", (OSError,))
Timeout = _cls("Timeout", (RequestException,))
ReadTimeout = _cls("ReadTimeout", (Timeout,))
RequestsConnectionError = _cls("ConnectionError", (RequestException,))
ConnectTimeout = _cls("ConnectTimeout", (RequestsConnectionError, Timeout))
HTTPError = _cls("HTTPError", (RequestException,))
CardError = _cls("CardError", (Exception,), "stripe.error")
# celery's, by name only
WorkerLostError = _cls("WorkerLostError", (Exception,), "billiard.exceptions")
SoftTimeLimitExceeded = _cls("SoftTimeLimitExceeded", (Exception,), "billiard.exceptions")
RedisAuthenticationError = _cls("AuthenticationError", (ConnectionError,), "redis.exceptions")
DoesNotExist = _cls("DoesNotExist", (Exception,), "shop.models.Order")


def raised(exc: BaseException, cause: BaseException | None = None) -> BaseException:
    """``exc`` as it is caught after ``raise exc from cause`` (or a plain raise)."""
    try:
        if cause is None:
            raise exc
        raise exc from cause
    except BaseException as caught:
        return caught


def test_buckets_are_the_documented_ones_in_order() -> None:
    assert BUCKETS == (
        "timeout", "connection", "rate limit", "auth", "bad input", "missing record",
        "code error", "worker lost", "time limit", "other",
    )  # fmt: skip
    assert {"bad input", "missing record", "code error"} == DETERMINISTIC


@pytest.mark.parametrize(
    ("exc", "bucket"),
    [
        (socket.timeout("timed out"), "timeout"),  # noqa: UP041 (the alias code still raises)
        (TimeoutError(), "timeout"),
        (ReadTimeout("Read timed out. (read timeout=10)"), "timeout"),
        (ConnectTimeout("connect timeout"), "timeout"),
        (RequestsConnectionError("Max retries exceeded"), "connection"),
        (ConnectionRefusedError(111, "Connection refused"), "connection"),
        (BrokenPipeError(), "connection"),
        (socket.gaierror(-2, "Name or service not known"), "connection"),
        (RedisAuthenticationError("invalid password"), "auth"),
        (PermissionError(13, "Permission denied"), "auth"),
        (KeyError("user_id"), "missing record"),
        (FileNotFoundError(2, "No such file"), "missing record"),
        (DoesNotExist("Order matching query does not exist."), "missing record"),
        (ValueError("invalid literal for int()"), "bad input"),
        (json.JSONDecodeError("Expecting value", "{", 1), "bad input"),
        (CardError("Your card was declined."), "bad input"),
        (AttributeError("'NoneType' object has no attribute 'id'"), "code error"),
        (ModuleNotFoundError("No module named 'x'"), "code error"),
        (ZeroDivisionError(), "code error"),
        (WorkerLostError("Worker exited prematurely: signal 9 (SIGKILL)."), "worker lost"),
        (SoftTimeLimitExceeded(), "time limit"),
        (RuntimeError("boom"), "other"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else value,
)
def test_an_exception_lands_in_the_bucket_its_classes_name(exc: BaseException, bucket: str) -> None:
    assert classify(exc) == bucket


def test_a_unicode_decode_error_is_bad_input_though_it_is_also_a_unicode_error() -> None:
    try:
        b"\xff".decode("utf-8")
    except UnicodeDecodeError as exc:
        assert classify(exc) == "bad input"


def test_a_plain_wrapper_takes_the_bucket_of_its_explicit_cause() -> None:
    exc = raised(RuntimeError("charge failed"), ReadTimeout("read timed out"))
    assert classify(exc) == "timeout"


def test_a_plain_wrapper_takes_the_bucket_of_the_exception_it_was_handling() -> None:
    try:
        try:
            orders: dict[str, int] = {}
            orders["order"]
        except KeyError:
            raise RuntimeError("import failed")  # noqa: B904
    except RuntimeError as exc:
        assert classify(exc) == "missing record"


def test_a_specific_outer_exception_stands_over_its_context() -> None:
    try:
        try:
            raise ReadTimeout("read timed out")
        except OSError:
            raise NameError("name 'log' is not defined")  # noqa: B904
    except NameError as exc:
        assert classify(exc) == "code error"


def test_suppressed_context_is_not_looked_at() -> None:
    exc = raised(RuntimeError("failed"))
    exc.__context__ = KeyError("k")
    exc.__suppress_context__ = True
    assert classify(exc) == "other"


def test_a_retry_wrapper_outside_an_except_block_counts_as_the_exception_it_carries() -> None:
    retry = _cls("Retry", (Exception,), "celery.exceptions")("Retry in 5s")
    retry.exc = RequestsConnectionError("Max retries exceeded")
    assert classify(retry) == "connection"


def test_a_cycle_of_causes_ends() -> None:
    first, second = RuntimeError("a"), RuntimeError("b")
    first.__cause__, second.__cause__ = second, first
    assert classify(first) == "other"
    first.__cause__ = first
    assert classify(first) == "other"


def test_a_long_chain_is_looked_at_only_ten_deep() -> None:
    exc: BaseException = TimeoutError()
    for i in range(20):
        exc = raised(RuntimeError(f"wrap {i}"), exc)
    assert classify(exc) == "other"
    for _ in range(11):
        exc = exc.__cause__  # type: ignore[assignment]
    assert classify(exc) == "timeout"


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def test_an_exception_whose_str_raises_is_classified_by_its_class() -> None:
    assert classify(Unprintable()) == "other"
    assert classify(raised(Unprintable(), ReadTimeout())) == "timeout"
    assert classify(_cls("Timeout", (Unprintable,))()) == "timeout"


def test_a_class_with_a_module_of_none_is_classified() -> None:
    assert classify(_cls("ReadTimeout", (Exception,), module=None)()) == "timeout"
    rules = parse_rules({"some.where.Odd": "odd"})
    assert classify(_cls("Odd", (Exception,), module=None)(), rules) == "other"


def test_a_50_mb_message_is_read_only_at_its_start() -> None:
    assert classify(RuntimeError("x" * 50_000_000 + " timed out")) == "other"
    assert classify(RuntimeError("timed out " + "x" * 50_000_000)) == "timeout"


def test_control_characters_and_lone_surrogates_in_a_message_do_not_matter() -> None:
    assert classify(RuntimeError("\x00\x1b[31m\ud800 connection refused \udcff")) == "connection"
    assert classify_text("Ex\ud800: \x00 timed out") == "timeout"


@pytest.mark.parametrize(
    ("message", "bucket"),
    [
        ("HTTP 429 Too Many Requests", "rate limit"),
        ("rate limit exceeded, slow down", "rate limit"),
        ("401 Client Error: Unauthorized for url", "auth"),
        ("status=403", "auth"),
        ("Invalid API key provided", "auth"),
        ("404 Client Error: Not Found for url", "missing record"),
        ("customer cus_123 does not exist", "missing record"),
        ("the operation timed out", "timeout"),
        ("Temporary failure in name resolution", "connection"),
        ("malformed payload", "bad input"),
        ("500 Server Error", "other"),
        ("took 0.429 s to answer with code 4290", "other"),
    ],
)
def test_the_message_refines_other(message: str, bucket: str) -> None:
    assert classify(HTTPError(message)) == bucket


def test_the_message_never_overrides_a_bucket_the_class_gives() -> None:
    assert classify(KeyError("HTTP 429")) == "missing record"
    assert classify(raised(RuntimeError("invalid response"), ReadTimeout())) == "timeout"


# -- user rules ------------------------------------------------------------------------------


def test_user_rules_come_before_the_built_in_ones_in_the_order_given() -> None:
    rules = parse_rules(
        [
            (ReadTimeout, "third-party API timeout"),
            ("stripe.error.CardError", " bad customer data "),
            ("DoesNotExist", "gone"),
            ("re:quota exceeded", "rate limit"),
            (re.compile(r"shard \d+ down"), "connection"),
            (OSError, "os"),
        ]
    )
    assert classify(ReadTimeout(), rules) == "third-party API timeout"
    assert classify(CardError("declined"), rules) == "bad customer data"
    assert classify(DoesNotExist(), rules) == "gone"
    assert classify(RuntimeError("Quota Exceeded for project"), rules) == "rate limit"
    assert classify(RuntimeError("shard 7 down"), rules) == "connection"
    assert classify(ConnectionRefusedError(), rules) == "os"  # a class matches its subclasses
    assert classify(ValueError("x"), rules) == "bad input"


def test_user_rules_are_tried_on_every_exception_of_the_chain() -> None:
    rules = parse_rules({"CardError": "bad customer data"})
    assert classify(raised(RuntimeError("charge failed"), CardError()), rules) == (
        "bad customer data"
    )


def test_a_bare_name_matches_any_class_of_the_mro_and_a_dotted_name_the_exact_path() -> None:
    assert classify(ReadTimeout(), parse_rules({"RequestException": "requests"})) == "requests"
    dotted = parse_rules({"requests.exceptions.RequestException": "requests"})
    assert classify(ReadTimeout(), dotted) == "requests"
    assert classify(ReadTimeout(), parse_rules({"other.RequestException": "x"})) == "timeout"


def test_no_rules_mean_the_built_in_rules_alone() -> None:
    assert parse_rules(None) == Rules() == parse_rules({}) == parse_rules([])
    assert classify(TimeoutError(), Rules()) == "timeout"


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"re:(": "x"}, "'re:('"),
        ({"re:": "x"}, "'re:'"),
        ({re.compile(".*"): "x"}, "re.compile('.*')"),
        ({"Card Error": "x"}, "'Card Error'"),
        ({"stripe..CardError": "x"}, "'stripe..CardError'"),
        ({"": "x"}, "''"),
        ({42: "x"}, "42"),
        ({int: "x"}, "<class 'int'>"),
        ({"CardError": "  "}, "bucket '  '"),
        ({"CardError": "x" * 41}, "at most 40"),
        ({"CardError": "a\nb"}, "bucket 'a\\nb'"),
        ({"CardError": None}, "bucket None"),
        ([("CardError",)], "('CardError',)"),
        ("CardError", "not str"),
        ({f"E{i}": "x" for i in range(201)}, "201 rules"),
    ],
)
def test_a_bad_rule_is_refused_with_a_message_naming_it(raw: Any, named: str) -> None:
    with pytest.raises(ValueError, match="watchdog_failure_reasons") as info:
        parse_rules(raw)
    assert named in str(info.value)


# -- recorded text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bucket"),
    [
        ("WorkerLostError: Worker exited prematurely: signal 9 (SIGKILL).", "worker lost"),
        ("WorkerLostError: child process 41 died while running it", "worker lost"),
        ("TimeLimitExceeded(60.0,)", "time limit"),
        ("SoftTimeLimitExceeded()", "time limit"),
        ("ReadTimeout: HTTPSConnectionPool(host='api', port=443): Read timed out.", "timeout"),
        ("socket.timeout: timed out", "timeout"),
        ("KeyError: 'user_id'", "missing record"),
        ("JSONDecodeError: Expecting value: line 1 column 1 (char 0)", "bad input"),
        ("TypeError: unsupported operand type(s)", "code error"),
        (
            "ConnectionError: HTTPSConnectionPool(host='api', port=443): Max retries exceeded "
            "(Caused by NewConnectionError('<HTTPSConnection>: [Errno 111] refused'))",
            "connection",
        ),
        ("Retry: Retry in 5s: ReadTimeout('read timed out')", "timeout"),
        ("HTTPError: 429 Client Error: Too Many Requests", "rate limit"),
        ("Connection refused", "connection"),
        ("Exception: boom", "other"),
        ("", "other"),
    ],
)
def test_a_recorded_text_lands_where_its_exception_would(text: str, bucket: str) -> None:
    assert classify_text(text) == bucket


def test_user_rules_apply_to_recorded_text_by_name_and_message() -> None:
    rules = parse_rules(
        {
            CardError: "card",
            "shop.models.Order.DoesNotExist": "no order",
            "re:quota": "quota",
        }
    )
    assert classify_text("CardError: declined", rules) == "card"
    assert classify_text("stripe.error.CardError: declined", rules) == "card"
    assert classify_text("other.CardError: declined", rules) == "bad input"
    assert classify_text("DoesNotExist: Order matching query", rules) == "no order"
    assert classify_text("RuntimeError: Quota reached", rules) == "quota"


def test_a_huge_or_hostile_recorded_text_never_raises() -> None:
    assert classify_text("ValueError: " + "(" * 50_000_000) == "bad input"
    assert classify_text("A(" * 5_000_000) == "other"
    assert classify_text(None) == "other"  # type: ignore[arg-type]


def test_bad_input_missing_records_and_code_errors_are_deterministic() -> None:
    assert [b for b in BUCKETS if is_deterministic(b)] == [
        "bad input", "missing record", "code error",
    ]  # fmt: skip
    assert not is_deterministic("bad customer data")

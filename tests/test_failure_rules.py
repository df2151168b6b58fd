"""Failure rules about a task name are pure: counts in, a verdict or None out."""

from __future__ import annotations

import math

from celery_watchdog.model.failure_rules import (
    baseline_rate,
    failed_resolved,
    failed_streak,
    failure_spike,
    failure_spike_resolved,
    hour_label,
    hour_of_week,
    retry_storm,
    retry_storm_resolved,
    top_reason,
)

NAME = "billing.charge"
MONDAY = 1_795_996_800.0  # 2026-11-30 00:00 UTC, a Monday
HOUR = 3600.0
FOUR_WEEKS = [(100, 4)] * 4  # the same hour in four previous weeks: 4% failed
MON_14 = 14
NAN, INF = math.nan, math.inf


def streak(n: float, **kw: object) -> object:
    args: dict = {"top_reason": "bad input", "last_error": "ValueError: card number invalid"}
    args.update(kw)
    return failed_streak(NAME, n, 3, **args)


# failed streaks


def test_a_streak_below_the_threshold_is_not_an_alert() -> None:
    assert streak(2) is None


def test_a_streak_at_the_threshold_fails_with_the_reason_in_plain_words() -> None:
    verdict = failed_streak(NAME, 3, 3, top_reason="bad input",
                            last_error="ValueError: card number invalid")  # fmt: skip
    assert verdict is not None and verdict.kind == "failed" and verdict.name == NAME
    assert verdict.reason == "failed 3 times in a row (bad input: ValueError: card number invalid)"
    assert verdict.facts["streak"] == 3 and verdict.facts["threshold"] == 3


def test_a_run_that_exhausted_its_retries_fails_whatever_the_streak() -> None:
    verdict = failed_streak(NAME, 1, 3, top_reason="timeout", last_error="ReadTimeout: api",
                            exhausted=True, retries=5)  # fmt: skip
    assert verdict is not None and verdict.kind == "failed"
    assert verdict.reason == "gave up after 5 retries (timeout: ReadTimeout: api)"


def test_exhausted_retries_without_a_count_still_read_plainly() -> None:
    verdict = failed_streak(NAME, 0, 3, top_reason=None, last_error=None, exhausted=True)
    assert verdict is not None and verdict.reason == "gave up retrying"


def test_a_streak_without_a_known_reason_has_no_empty_parentheses() -> None:
    verdict = failed_streak(NAME, 4, 3, top_reason=None, last_error=None)
    assert verdict is not None and verdict.reason == "failed 4 times in a row"


def test_a_long_multi_line_error_is_shown_as_one_short_line() -> None:
    verdict = failed_streak(NAME, 3, 3, top_reason=None, last_error="boom\n" * 500)
    assert verdict is not None and "\n" not in verdict.reason and len(verdict.reason) < 220


def test_a_threshold_of_zero_or_less_still_needs_one_failure() -> None:
    assert failed_streak(NAME, 0, 0, top_reason=None, last_error=None) is None
    assert failed_streak(NAME, 1, -5, top_reason=None, last_error=None) is not None


def test_a_failed_incident_resolves_once_a_success_resets_the_streak() -> None:
    assert failed_resolved(0)
    assert not failed_resolved(1)
    assert not failed_resolved(7)


# retry storms


def test_many_retries_and_few_successes_are_a_retry_storm() -> None:
    verdict = retry_storm(NAME, retried=30, succeeded=2, failed=5)
    assert verdict is not None and verdict.kind == "retry_storm"
    assert verdict.reason == (
        "retried 30 times in the last hour with 2 successes (7%) and 5 failures"
    )


def test_fewer_retries_than_the_minimum_are_never_a_storm() -> None:
    assert retry_storm(NAME, retried=19, succeeded=0, failed=19) is None


def test_retries_that_mostly_end_in_success_are_no_storm() -> None:
    assert retry_storm(NAME, retried=30, succeeded=7, failed=0) is None  # 23%
    assert retry_storm(NAME, retried=30, succeeded=6, failed=0) is not None  # 20%: at the limit


def test_a_storm_over_another_window_names_that_window() -> None:
    verdict = retry_storm(NAME, 40, 0, 0, window_s=1800, min_retries=10)
    assert verdict is not None and "in the last 30 min" in verdict.reason


def test_a_storm_resolves_only_well_past_its_thresholds() -> None:
    assert not retry_storm_resolved(15, 2)  # fewer retries, but not below half the minimum
    assert retry_storm_resolved(9, 0)  # below half of 20
    assert not retry_storm_resolved(30, 12)  # 40%: not above twice the 20% limit
    assert retry_storm_resolved(30, 13)  # 43%


# failure spikes


def test_a_bad_hour_against_a_quiet_history_is_a_spike() -> None:
    verdict = failure_spike(NAME, 40, 18, FOUR_WEEKS, hour_of_week=MON_14, top_reason="timeout")
    assert verdict is not None and verdict.kind == "failure_spike"
    assert verdict.reason == (
        "18 of 40 runs failed in the last hour (45%), normally 4% at this hour (Mon 14:00); "
        "mostly timeout"
    )
    assert verdict.severity_hint is None


def test_an_ordinary_hour_is_no_spike() -> None:
    assert failure_spike(NAME, 40, 3, FOUR_WEEKS, hour_of_week=MON_14) is None


def test_an_hour_with_few_runs_is_never_a_spike() -> None:
    assert failure_spike(NAME, 10, 8, FOUR_WEEKS, hour_of_week=MON_14) is None


def test_a_rate_above_the_factor_by_chance_is_not_significant() -> None:
    # 3 of 20 is 15%, over 3 x 4%, but a z-score of about 1.9: that happens.
    assert failure_spike(NAME, 20, 3, FOUR_WEEKS, hour_of_week=MON_14) is None


def test_without_history_the_prior_prevents_a_spike_from_a_few_failures() -> None:
    assert failure_spike(NAME, 20, 2, [], hour_of_week=MON_14) is None
    assert failure_spike(NAME, 20, 3, [], hour_of_week=MON_14) is None


def test_without_history_an_hour_that_mostly_fails_still_spikes() -> None:
    verdict = failure_spike(NAME, 20, 15, [], hour_of_week=MON_14)
    assert verdict is not None
    assert verdict.reason == (
        "15 of 20 runs failed in the last hour (75%), with no history at this hour (Mon 14:00)"
    )
    assert verdict.severity_hint == "P1"  # most runs fail


def test_each_history_pair_counts_as_one_sample_with_the_prior() -> None:
    assert baseline_rate([]) == 1 / 20
    assert baseline_rate(FOUR_WEEKS) == 17 / 420
    assert baseline_rate([(100, 4), (0, 0)]) == baseline_rate([(100, 4)])


def test_a_spike_resolves_below_one_and_a_half_times_the_usual_rate() -> None:
    assert not failure_spike_resolved(40, 4, FOUR_WEEKS)  # 10%, over 1.5 x 4%
    assert failure_spike_resolved(40, 2, FOUR_WEEKS)  # 5%


def test_a_spike_resolves_when_the_task_hardly_runs_any_more() -> None:
    assert failure_spike_resolved(9, 9, FOUR_WEEKS)
    assert failure_spike_resolved(0, 0, FOUR_WEEKS)
    assert not failure_spike_resolved(10, 9, FOUR_WEEKS)  # half of min_runs: still open


def test_hour_of_week_counts_from_monday_midnight_utc() -> None:
    assert hour_of_week(MONDAY) == 0
    assert hour_of_week(MONDAY + 14 * HOUR + 59 * 60) == 14
    assert hour_of_week(MONDAY + 7 * 24 * HOUR - 1) == 167
    assert hour_of_week(MONDAY + 7 * 24 * HOUR) == 0
    assert hour_of_week(0) == 72  # 1970-01-01 was a Thursday


def test_hour_labels_read_as_day_and_time() -> None:
    assert hour_label(14) == "Mon 14:00"
    assert hour_label(167) == "Sun 23:00"
    assert hour_label(168) == "Mon 00:00"
    assert hour_label(hour_of_week(MONDAY + 2 * 24 * HOUR + 9 * HOUR)) == "Wed 09:00"


# top reason


def test_the_top_reason_is_the_most_frequent_bucket() -> None:
    assert top_reason({"timeout": 5, "bad input": 2}) == "timeout"


def test_tied_reasons_are_broken_by_name_for_a_stable_answer() -> None:
    assert top_reason({"timeout": 3, "bad input": 3}) == "bad input"


def test_no_counted_reason_is_none() -> None:
    assert top_reason({}) is None
    assert top_reason({"timeout": 0, "bad input": -2}) is None


# hostile numbers


def test_nan_and_negative_counts_read_as_zero() -> None:
    assert failed_streak(NAME, NAN, 3, top_reason=None, last_error=None) is None
    assert failed_resolved(NAN) and failed_resolved(-4)
    assert retry_storm(NAME, NAN, -1, INF) is None
    assert failure_spike(NAME, NAN, 40, FOUR_WEEKS, hour_of_week=MON_14) is None
    assert top_reason({"timeout": NAN, "bad input": 1}) == "bad input"


def test_huge_counts_never_raise() -> None:
    huge = 1e300
    assert failed_streak(NAME, huge, 3, top_reason=None, last_error=None) is not None
    assert retry_storm(NAME, huge, 0, huge) is not None
    assert failure_spike(NAME, huge, huge, [(huge, huge)] * 3, hour_of_week=MON_14) is None
    assert failure_spike(NAME, huge, huge, [(INF, NAN)], hour_of_week=MON_14) is not None
    assert not failure_spike_resolved(huge, huge, [(huge, 1)])


def test_more_failures_than_runs_are_capped_at_the_runs() -> None:
    verdict = failure_spike(NAME, 20, 500, FOUR_WEEKS, hour_of_week=MON_14)
    assert verdict is not None
    assert verdict.reason.startswith("20 of 20 runs failed in the last hour (100%)")
    assert baseline_rate([(100, 900)]) == 101 / 120


def test_hostile_settings_and_times_never_raise() -> None:
    assert retry_storm(NAME, 30, 0, 0, window_s=NAN, min_retries=NAN,
                       max_success_ratio=-1) is not None  # fmt: skip
    # A setting that is not a finite number reads as 0, like a count: the z-test still guards.
    verdict = failure_spike(NAME, 40, 18, FOUR_WEEKS, hour_of_week=10**30, min_runs=NAN,
                            factor=INF, min_rate=NAN)  # fmt: skip
    assert verdict is not None and verdict.facts["hour"] == hour_label(10**30 % 168)
    assert failure_spike(NAME, 40, 3, FOUR_WEEKS, hour_of_week=-7, factor=NAN) is None
    assert hour_of_week(NAN) == hour_of_week(INF) == 72
    assert hour_label(-1) == "Sun 23:00"

"""Queue health is pure: numbers read elsewhere and a policy in, a verdict out."""

from __future__ import annotations

import math

import pytest

from celery_watchdog.model.queue_rules import (
    DEFAULT_THRESHOLD,
    Consumer,
    QueueFacts,
    QueuePolicy,
    describe,
    judge,
    parse_threshold,
    resolved,
    threshold_for,
    who_waits,
)

NAN, INF = math.nan, math.inf
MIN = 60.0
EMAILS = QueuePolicy(threshold=5 * MIN, critical=True, action="Send password reset email")
IDLE = Consumer("w1@host", last_received_age=5.0, busy_slots=1, slots=4)


def queue(**kw: object) -> QueueFacts:
    args: dict = {"name": "emails", "messages": 312, "oldest_age": 47 * MIN,
                  "consumers": (IDLE,), "last_completed_age": 46 * MIN}  # fmt: skip
    args.update(kw)
    return QueueFacts(**args)


# thresholds


def test_a_threshold_is_seconds_a_duration_or_a_factor_of_normal() -> None:
    assert parse_threshold(300) == (300.0, None)
    assert parse_threshold(90.5) == (90.5, None)
    assert parse_threshold("5m") == (300.0, None)
    assert parse_threshold("90s") == (90.0, None)
    assert parse_threshold("2h") == (7200.0, None)
    assert parse_threshold(" 1h30m ") == (5400.0, None)
    assert parse_threshold("3x normal") == (None, 3.0)
    assert parse_threshold("2.5X") == (None, 2.5)


@pytest.mark.parametrize("raw", [0, -5, NAN, INF, "0", "0s", "0x normal", "nan", "inf",
                                 "soon", "", "3y", True, None, [300], "5m" * 30])  # fmt: skip
def test_a_threshold_that_is_not_a_positive_finite_time_is_refused(raw: object) -> None:
    with pytest.raises(ValueError, match="is not a queue threshold"):
        parse_threshold(raw)


def test_a_relative_threshold_is_a_multiple_of_normal_with_a_floor() -> None:
    relative = QueuePolicy(factor=3.0)
    assert threshold_for(relative, 100.0) == 300.0
    assert threshold_for(relative, 2.0) == 60.0  # 3 x 2 s is no threshold
    assert threshold_for(QueuePolicy(threshold=120), 100.0) == 120.0  # absolute: normal unused


def test_a_relative_threshold_without_a_normal_yet_falls_back_to_the_absolute_one() -> None:
    assert threshold_for(QueuePolicy(factor=3.0), None) == DEFAULT_THRESHOLD
    assert threshold_for(QueuePolicy(threshold=600, factor=3.0), 0.0) == 600.0
    assert threshold_for(QueuePolicy(factor=3.0), NAN) == DEFAULT_THRESHOLD


# health


def test_a_queue_waiting_past_its_threshold_with_no_consumer_is_stalled() -> None:
    verdict = judge(queue(consumers=()), EMAILS)
    assert (verdict.health, verdict.kind, verdict.cause) == ("stalled", "queue_stalled",
                                                             "no_consumer")  # fmt: skip
    assert verdict.reason == (
        "oldest message waiting 47 min (threshold 5 min); 312 waiting; "
        "no completion for 46 min; no worker consumes this queue"
    )
    assert verdict.severity_hint == "P1"  # critical and stalled
    assert verdict.queue == "emails" and verdict.facts["threshold"] == 300.0


def test_a_queue_that_still_completes_work_is_a_backlog_not_a_stall() -> None:
    verdict = judge(queue(completed_recent=100, completed_per_min=20), EMAILS)
    assert (verdict.health, verdict.kind, verdict.cause) == ("backlog", "queue_backlog", None)
    assert verdict.reason == (
        "oldest message waiting 47 min (threshold 5 min); 312 waiting; "
        "100 completed in the last 5 min (about 15 min to drain)"
    )
    assert verdict.severity_hint is None  # slow, not stopped: the settings decide


def test_consumers_that_took_nothing_for_longer_than_the_oldest_waits_are_not_consuming() -> None:
    deaf = (Consumer("w1", 50 * MIN, 0, 0, 4), Consumer("w2", None, 0, 0, 4))
    verdict = judge(queue(consumers=deaf), EMAILS)
    assert verdict.health == "stalled" and verdict.cause == "not_consuming"
    assert verdict.reason.endswith("2 workers consume it but none has taken a message for "
                                   "50 min (stopped after a broker reconnect?)")  # fmt: skip


def test_a_consumer_that_never_took_a_message_is_not_consuming() -> None:
    verdict = judge(queue(consumers=(Consumer("w1", None, 0, 0, 4),)), EMAILS)
    assert verdict.cause == "not_consuming"
    assert "1 worker consumes it but none has taken a message ever" in verdict.reason


def test_every_slot_busy_and_some_stuck_is_a_stall_of_stuck_work() -> None:
    full = (Consumer("w1", 50 * MIN, 4, 3, 4), Consumer("w2", 49 * MIN, 2, 0, 2))
    verdict = judge(queue(consumers=full), EMAILS)
    assert verdict.cause == "all_busy_stuck"  # full slots explain why nothing is taken
    assert verdict.reason.endswith("all 6 worker slots are busy, 3 of them stuck")


def test_full_slots_without_stuck_runs_or_recent_takes_leave_the_cause_unknown() -> None:
    long_runs = (Consumer("w1", 2 * MIN, 4, 0, 4),)
    verdict = judge(queue(consumers=long_runs), EMAILS)
    assert verdict.cause == "unknown" and "all 4 worker slots are busy with long runs" in (
        verdict.reason
    )
    verdict = judge(queue(), EMAILS)  # takes messages, nothing completes
    assert verdict.cause == "unknown" and verdict.health == "stalled"


def test_a_stall_of_a_queue_that_is_not_critical_leaves_the_severity_to_the_settings() -> None:
    assert judge(queue(), QueuePolicy()).severity_hint is None


def test_a_stall_without_a_known_last_completion_names_the_window() -> None:
    verdict = judge(queue(last_completed_age=None, window=600), EMAILS)
    assert "no completion in the last 10 min" in verdict.reason


def test_an_age_that_is_a_lower_bound_says_at_least() -> None:
    verdict = judge(queue(oldest_is_lower_bound=True), EMAILS)
    assert verdict.reason.startswith("oldest message waiting at least 47 min")


def test_a_queue_within_its_threshold_is_ok() -> None:
    verdict = judge(queue(oldest_age=5 * MIN), EMAILS)
    assert verdict.health == "ok" and verdict.kind is None
    assert judge(queue(oldest_age=4 * MIN), EMAILS).health == "ok"


def test_a_paused_queue_never_alerts() -> None:
    verdict = judge(queue(paused=True, consumers=()), EMAILS)
    assert (verdict.health, verdict.kind, verdict.reason) == ("paused", None, "paused, 312 waiting")


def test_an_empty_queue_or_an_unknown_age_is_no_alert() -> None:
    assert judge(queue(messages=0, oldest_age=None), EMAILS).health == "empty"
    assert judge(queue(messages=0), EMAILS).health == "empty"  # a stale age of an empty queue
    verdict = judge(queue(oldest_age=None), EMAILS)
    assert verdict.health == "ok" and verdict.kind is None and "unknown" in verdict.reason


def test_the_relative_threshold_judges_against_normal_for_this_hour() -> None:
    relative = QueuePolicy(factor=3.0)
    assert judge(queue(oldest_age=20 * MIN), relative, normal_oldest_age=10 * MIN).health == "ok"
    assert judge(queue(oldest_age=31 * MIN), relative, normal_oldest_age=10 * MIN).health == (
        "stalled"
    )


# resolution


def test_a_queue_incident_resolves_with_hysteresis() -> None:
    assert resolved(queue(messages=0), EMAILS)
    assert resolved(queue(oldest_age=2 * MIN), EMAILS)  # under half of 5 min
    assert not resolved(queue(oldest_age=4 * MIN), EMAILS)  # ok again, but not well under
    assert not resolved(queue(oldest_age=None), EMAILS)  # unknown: stays open
    assert resolved(queue(paused=True), EMAILS)  # paused on purpose


# who waits


def test_who_waits_counts_distinct_accounts_and_names_a_few() -> None:
    contexts = [{"account_id": str(n)} for n in (99, 12, 15, 12, 120, 7)]
    assert who_waits(contexts) == (5, "~5 accounts (account_id=7, 12, 15, …)")
    assert who_waits([{"account_id": "12"}, {"account_id": "12"}]) == (
        1, "1 account (account_id=12)"
    )  # fmt: skip
    assert who_waits([{"tenant": "acme"}, {"tenant": "globex"}]) == (
        2, "2 tenants (tenant=acme, globex)"
    )  # fmt: skip


def test_who_waits_names_what_the_key_counts() -> None:
    assert who_waits([{"accountId": "a"}, {"accountId": "b"}])[1].startswith("2 accounts")
    assert who_waits([{"uuid": "a"}, {"uuid": "b"}]) == (2, "2 uuids (uuid=a, b)")


def test_who_waits_counts_by_the_key_with_most_values() -> None:
    contexts = [{"account_id": str(n), "region": "eu"} for n in range(10)]
    count, label = who_waits(contexts)
    assert count == 10 and label.startswith("~10 accounts (account_id=0, 1, 2, …)")


def test_who_waits_is_robust_to_junk() -> None:
    junk: list = [None, "x", 5, {}, {"": "1"}, {"account_id": ""}, {"account_id": None},
                  {1: "2"}, {"account_id": True}]  # fmt: skip
    junk.append({"account_id": "\x1b[31m" + "9" * 5000})
    count, label = who_waits(junk)
    assert count == 1 and "\x1b" not in label and len(label) < 150
    assert who_waits([]) == (0, "")
    assert who_waits(None) == (0, "")  # type: ignore[arg-type]


# the line a person reads


def test_the_summary_reads_as_one_plain_line() -> None:
    facts = queue()
    who = "~120 accounts (account_id=12, 15, 99, …)"
    assert describe(facts, judge(facts, EMAILS), EMAILS, who=who) == (
        "Send password reset email: oldest waiting 47 min, 312 waiting, "
        "~120 accounts (account_id=12, 15, 99, …); last completion 46 min ago"
    )


def test_a_summary_without_an_action_names_the_queue() -> None:
    facts = queue(completed_recent=12)
    assert describe(facts, judge(facts, QueuePolicy()), QueuePolicy()) == (
        "queue emails: oldest waiting 47 min, 312 waiting; 12 completed in the last 5 min"
    )
    facts = queue(last_completed_age=None)
    assert describe(facts, judge(facts, EMAILS), EMAILS).endswith(
        "; nothing completed in the last 5 min"
    )


def test_summaries_of_quiet_queues_are_short() -> None:
    for facts, line in [(queue(paused=True), "Send password reset email: paused, 312 waiting"),
                        (queue(messages=0), "Send password reset email: nothing waiting"),
                        (queue(oldest_age=30), "Send password reset email: oldest waiting "
                                               "30 s, 312 waiting")]:  # fmt: skip
        assert describe(facts, judge(facts, EMAILS), EMAILS) == line


# hostile numbers


def test_hostile_numbers_never_raise() -> None:
    hostile = Consumer("w\x1b", NAN, -3, INF, NAN)  # type: ignore[arg-type]
    for facts in [
        queue(messages=NAN, oldest_age=NAN),
        queue(messages=INF, oldest_age=INF, reserved=-1, completed_recent=NAN),
        queue(oldest_age=-5.0),  # clock skew: just arrived
        queue(consumers=(hostile,), completed_per_min=INF, last_completed_age=-1, window=NAN),
        queue(completed_recent=3, completed_per_min=NAN, window=-10),
    ]:
        verdict = judge(facts, EMAILS, normal_oldest_age=NAN)
        assert isinstance(describe(facts, verdict, EMAILS), str)
        assert isinstance(resolved(facts, EMAILS, NAN), bool)
    assert judge(queue(messages=NAN), EMAILS).health == "empty"
    assert judge(queue(oldest_age=NAN), EMAILS).health == "ok"
    assert judge(queue(oldest_age=-5.0), EMAILS).health == "ok"
    stalled = judge(queue(consumers=(hostile,)), EMAILS)
    assert stalled.cause == "not_consuming"  # no usable receive age, no slots known


def test_a_hostile_policy_reads_as_the_default_threshold() -> None:
    for bad in (NAN, -1.0, 0.0, INF):
        assert threshold_for(QueuePolicy(threshold=bad), None) == DEFAULT_THRESHOLD
    assert threshold_for(QueuePolicy(factor=NAN), 100.0) == DEFAULT_THRESHOLD
    assert threshold_for(QueuePolicy(factor=-3.0), 100.0) == DEFAULT_THRESHOLD
    assert threshold_for(QueuePolicy(factor=3.0), INF) == DEFAULT_THRESHOLD

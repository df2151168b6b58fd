"""Beat schedule health is pure: a schedule, the last dispatch, start and success, and now in."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from celery import Celery
from celery.schedules import crontab, schedule, solar

from celery_watchdog.model.schedules import (
    GRACE_MAX,
    ScheduleVerdict,
    check,
    default_grace,
    max_silence,
    next_due_after,
)

DAY = 1_795_996_800.0  # 2026-11-30 00:00 UTC, a Monday
MIN, HOUR = 60.0, 3600.0
H13, H14, H15, H16 = (DAY + h * HOUR for h in (13, 14, 15, 16))
UTC, BERLIN = timezone.utc, ZoneInfo("Europe/Berlin")
NAN, INF = math.nan, math.inf
HOURLY, QUARTERLY = crontab(minute=0), crontab(minute="*/15")
FIVE_MIN = schedule(timedelta(minutes=5))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


def billing(sched: object = HOURLY, **kw: object) -> ScheduleVerdict:
    args: dict = {"last_dispatched": H13, "last_started": H13 + 2, "last_succeeded": H13 + 30,
                  "now": H14, "first_seen": DAY - 86400}  # fmt: skip
    args.update(kw)
    return check("billing.sync", "billing.sync", sched, **args)


def a_solar() -> object:
    # solar needs the ephem package to be built; only its type matters here.
    return solar.__new__(solar)


# when a schedule is next due


def test_an_interval_is_due_one_period_after_its_last_run() -> None:
    assert next_due_after(FIVE_MIN, H14) == H14 + 5 * MIN
    assert next_due_after(schedule(90), H14, BERLIN) == H14 + 90  # no zone in an interval
    assert next_due_after(timedelta(minutes=1), H14) == H14 + MIN  # as beat_schedule takes it
    assert next_due_after(300, H14) == H14 + 300


def test_an_hourly_crontab_is_next_due_strictly_after_the_given_time() -> None:
    assert next_due_after(HOURLY, H14) == H15
    assert next_due_after(HOURLY, H14 - 1) == H14
    assert next_due_after(HOURLY, H14 + 1) == H15


def test_a_quarter_hour_crontab_is_due_every_fifteen_minutes() -> None:
    assert next_due_after(QUARTERLY, H14) == H14 + 15 * MIN
    assert next_due_after(QUARTERLY, H14 + 7 * MIN) == H14 + 15 * MIN
    assert next_due_after(QUARTERLY, H14 + 45 * MIN) == H15


def test_a_crontab_is_read_in_the_zone_beat_runs_it_in() -> None:
    nine = crontab(hour=9, minute=0)
    assert next_due_after(nine, H14, UTC) == utc(2026, 12, 1, 9)
    assert next_due_after(nine, H14, BERLIN) == utc(2026, 12, 1, 8)  # CET: UTC+1
    assert next_due_after(nine, utc(2026, 7, 1), BERLIN) == utc(2026, 7, 1, 7)  # CEST: UTC+2
    assert next_due_after(HOURLY, H14, BERLIN) == H15  # whole hours are the same everywhere


@pytest.mark.parametrize("at", [H14, utc(2026, 3, 29), utc(2026, 10, 25), utc(2026, 7, 1, 8)])
@pytest.mark.parametrize("spec", [{"hour": "2,9", "minute": "30"}, {"minute": "*/15"},
                                  {"hour": 0, "minute": 0, "day_of_month": 1}])  # fmt: skip
def test_next_due_agrees_with_celerys_own_estimate(at: float, spec: dict) -> None:
    app = Celery(set_as_current=False)
    app.conf.timezone = "Europe/Berlin"
    local_now = datetime.fromtimestamp(at, BERLIN)
    cron = crontab(**spec, app=app, nowfun=lambda: local_now)
    expected = at + cron.remaining_estimate(local_now).total_seconds()
    assert next_due_after(cron, at, BERLIN) == expected


def test_what_is_neither_an_interval_nor_a_crontab_has_no_due_time() -> None:
    for junk in (a_solar(), None, "hourly", object(), 0, -5, NAN, True, 1e-9):
        assert next_due_after(junk, H14) is None
    for after in (NAN, INF, -1.0, 1e300):
        assert next_due_after(HOURLY, after) is None
        assert next_due_after(FIVE_MIN, after) is None


def test_the_default_grace_is_a_tenth_of_the_period_within_half_a_minute_and_five() -> None:
    assert default_grace(60) == 30.0
    assert default_grace(15 * MIN) == 90.0
    assert default_grace(HOUR) == 300.0
    assert default_grace(86400) == 300.0
    assert default_grace(None) == default_grace(NAN) == default_grace(-1) == GRACE_MAX


# missed runs


def test_a_new_entry_is_not_missed_before_its_first_due_time() -> None:
    verdict = billing(last_dispatched=None, last_started=None, last_succeeded=None,
                      first_seen=H14 + 10 * MIN, now=H14 + 50 * MIN)  # fmt: skip
    assert (verdict.health, verdict.kind, verdict.next_due) == ("ok", None, H15)
    assert verdict.what == "billing.sync: next due 15:00 UTC"


def test_a_new_entry_never_sent_past_its_first_due_time_is_missed() -> None:
    verdict = billing(last_dispatched=None, last_started=None, last_succeeded=None,
                      first_seen=H14 + 10 * MIN, now=H15 + 6 * MIN)  # fmt: skip
    assert verdict.health == "missed" and verdict.due_at == H15
    assert verdict.what == (
        "billing.sync due at 15:00 UTC was not sent by beat (beat down?); never sent"
    )


def test_no_dispatch_since_an_hour_ago_is_beat_down() -> None:
    verdict = billing(now=H14 + 30 * MIN)
    assert (verdict.health, verdict.kind) == ("missed", "missed_run")
    assert verdict.what == (
        "billing.sync due at 14:00 UTC was not sent by beat (beat down?); last sent 13:00 UTC"
    )
    assert verdict.due_at == H14 and verdict.next_due == H15
    assert verdict.facts["missed"] == "not_sent" and verdict.facts["grace"] == 300.0


def test_a_due_time_just_past_is_late_within_the_grace_and_missed_after_it() -> None:
    assert billing(now=H14 + 5).health == "ok"  # beat's tick and the clocks: not even late
    late = billing(now=H14 + 3 * MIN)
    assert (late.health, late.kind, late.due_at) == ("late", None, H14)
    assert late.what == "billing.sync due at 14:00 UTC not sent yet (3 min late)"
    assert billing(now=H14 + 5 * MIN - 1).health == "late"
    assert billing(now=H14 + 5 * MIN).health == "missed"  # due <= now - grace


def test_an_interval_not_sent_one_period_and_its_grace_after_the_last_run_is_missed() -> None:
    def five(now: float) -> ScheduleVerdict:
        return billing(FIVE_MIN, last_dispatched=H14, last_started=H14 + 1,
                       last_succeeded=H14 + 3, now=now)  # fmt: skip

    assert five(H14 + 5 * MIN + 5).health == "ok"
    assert five(H14 + 5 * MIN + 20).health == "late"
    missed = five(H14 + 6 * MIN)  # 30 s of grace for a 5 min interval
    assert missed.health == "missed" and missed.due_at == H14 + 5 * MIN
    assert missed.next_due == H14 + 10 * MIN


def test_an_explicit_grace_replaces_the_default() -> None:
    assert billing(now=H14 + 61, grace=60).health == "missed"
    assert billing(now=H14 + 61, grace=NAN).health == "late"  # junk: the default 5 min


def test_a_dispatch_no_worker_started_is_missed_after_the_grace() -> None:
    waiting = {"last_dispatched": H14, "last_started": H13 + 2}
    assert billing(now=H14 + 4 * MIN, **waiting).health == "ok"
    verdict = billing(now=H14 + 6 * MIN, **waiting)
    assert verdict.health == "missed" and verdict.facts["missed"] == "not_started"
    assert verdict.what == (
        "billing.sync sent at 14:00 UTC but never started (no worker took it within 5 min)"
    )
    assert verdict.due_at == H14 and verdict.next_due == H15


def test_a_start_stamped_a_little_before_its_dispatch_counts_as_started() -> None:
    assert billing(last_dispatched=H14 + 3, last_started=H14 + 1, now=H14 + 20 * MIN).health == "ok"


def test_a_run_still_going_longer_than_the_interval_is_missed_as_never_finished() -> None:
    hourly = schedule(timedelta(hours=1))
    verdict = billing(hourly, last_dispatched=H15 + 2, last_started=H14 + 2,
                      last_succeeded=H13 + 30, now=H16 + 2)  # fmt: skip
    assert verdict.health == "missed" and verdict.facts["missed"] == "not_finished"
    assert verdict.what == "billing.sync started at 14:00 UTC but has not finished (running 2 h)"
    assert verdict.due_at == H14 + 2


def test_a_hung_run_explains_why_the_next_one_waits() -> None:
    verdict = billing(last_dispatched=H15, last_started=H14 + 1, now=H15 + 6 * MIN)
    assert verdict.facts["missed"] == "not_finished"  # rather than "the next never started"
    assert verdict.what.endswith("(running 1 h 6 min)")
    assert billing(last_dispatched=H14, last_started=H14 + 1, now=H14 + 50 * MIN).health == "ok"


def test_a_run_that_ended_in_failure_is_not_never_finished() -> None:
    verdict = billing(last_dispatched=H15, last_started=H14 + 1, last_finished=H14 + 9,
                      now=H15 + 6 * MIN)  # fmt: skip
    assert verdict.facts["missed"] == "not_started"  # the failure itself is failure_rules' call


def test_an_entry_named_apart_from_its_task_names_both() -> None:
    verdict = check("nightly-billing", "billing.sync", HOURLY, last_dispatched=H13,
                    last_started=None, last_succeeded=None, now=H14 + 30 * MIN)  # fmt: skip
    assert verdict.what.startswith("nightly-billing (billing.sync) due at 14:00 UTC")


def test_times_of_another_day_carry_their_date() -> None:
    verdict = billing(last_dispatched=DAY - HOUR, now=DAY + HOUR)
    assert verdict.what == ("billing.sync due at 00:00 UTC was not sent by beat (beat down?); "
                            "last sent 2026-11-29 23:00 UTC")  # fmt: skip


def test_a_crontab_in_berlin_is_due_and_told_in_berlin_time() -> None:
    nine = crontab(hour=9, minute=0)
    kw = {"last_dispatched": None, "last_started": None, "last_succeeded": None,
          "first_seen": H14, "now": utc(2026, 12, 1, 8, 6)}  # fmt: skip
    verdict = billing(nine, tz=BERLIN, **kw)
    assert verdict.health == "missed" and verdict.due_at == utc(2026, 12, 1, 8)
    assert verdict.what.startswith("billing.sync due at 09:00 CET was not sent")
    assert billing(nine, tz=UTC, **kw).health == "ok"  # 09:00 UTC is an hour away


def test_solar_schedules_are_skipped_with_a_note() -> None:
    verdict = billing(a_solar())
    assert (verdict.health, verdict.kind) == ("skipped", None)
    assert verdict.what == "billing.sync: solar schedules are not checked"


# max silence


def test_a_task_silent_past_its_max_silence_says_for_how_long() -> None:
    assert max_silence("billing.sync", H14 - 2 * HOUR - 10 * MIN, H14, 2 * HOUR) == (
        "billing.sync has not succeeded for 2 h 10 min (max_silence 2 h)"
    )
    assert max_silence("billing.sync", H14 - 2 * HOUR, H14, 2 * HOUR) is None


def test_a_task_that_never_succeeded_counts_from_when_it_was_first_seen() -> None:
    assert max_silence("billing.sync", None, H14, 2 * HOUR, since=H14 - 3 * HOUR) == (
        "billing.sync has never succeeded in 3 h (max_silence 2 h)"
    )
    assert max_silence("billing.sync", None, H14, 2 * HOUR) is None


# hostile numbers


def test_hostile_times_never_raise() -> None:
    hostile: list[Any] = [NAN, INF, -INF, -1.0, 1e300, "soon", None]
    for bad in hostile:
        verdict = billing(last_dispatched=bad, last_started=bad, last_succeeded=bad,
                          first_seen=bad, grace=bad)  # fmt: skip
        assert verdict.health in ("ok", "late", "missed")
        assert billing(now=bad).health == "skipped"
        assert max_silence("billing.sync", bad, H14, 2 * HOUR, since=bad) is None
        assert max_silence("billing.sync", H13, bad, bad) is None
    junk_zone = billing(tz="Mars/Olympus", now=H14 + 30 * MIN)  # read as UTC
    assert junk_zone.what.startswith("billing.sync due at 14:00 UTC")


def test_hostile_schedules_never_raise() -> None:
    assert billing(1e-9).health == "skipped"  # not a usable interval
    huge = billing(timedelta(days=999_999_999), now=H14)  # due past the year 9999
    assert huge.health == "ok" and "(epoch)" in huge.what
    assert billing(object()).what == "billing.sync: object schedules are not checked"

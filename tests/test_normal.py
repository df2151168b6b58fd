"""What is normal for this hour of the week: per task name, runs, failure rate and runtime p95 from
the weeks before, kept in one 12-byte cell per hour (written by flush.lua through the real write
path), shown by ``status``; per queue, completions per hour beside the oldest age."""

from __future__ import annotations

import math
from typing import Any

import pytest

from celery_watchdog import install
from celery_watchdog.cli.render import status_text
from celery_watchdog.model.normal import HourCell, NameNormal, bucket_seconds
from celery_watchdog.views.status import status_doc
from tests.helpers import make_app

WEEK = 7 * 86400


def ended(i: int, name: str, runtime: float, age: float, outcome: str = "succeeded") -> dict:
    return {
        "kind": "end", "id": f"{name}-{age}-{i}", "name": name, "worker": "w@h", "pid": 1,
        "state": "SUCCESS" if outcome == "succeeded" else "FAILURE", "outcome": outcome,
        "age": age, "runtime": runtime, "first": True, "started_age": age + runtime,
    }  # fmt: skip


# -- pure --------------------------------------------------------------------------------------


def test_a_cell_reads_its_runs_failures_retries_and_p95_bucket() -> None:
    raw = (1234).to_bytes(4, "big") + (56).to_bytes(3, "big") + (7).to_bytes(3, "big")
    cell = HourCell.unpack(raw + (60).to_bytes(2, "big"))
    assert (cell.runs, cell.failures, cell.retries) == (1234, 56, 7)
    # Bucket 59 holds runtimes whose ms + 1 lies in [1.1^59, 1.1^60): 276 ms to 304 ms.
    assert cell.p95 is not None and 0.27 < cell.p95 < 0.31
    assert HourCell.unpack(bytes(12)).p95 is None and bucket_seconds(0) is None


def test_normal_is_the_median_of_the_weeks_with_history_and_none_without() -> None:
    cells = [HourCell(100, 2, 0, 1.0), HourCell(120, 0, 1, 2.0), HourCell(90, 1, 0, 9.0),
             HourCell(0, 0, 0, None)]  # fmt: skip
    normal = NameNormal.of(cells)
    assert normal is not None
    assert normal.runs_per_hour == 100 and normal.runtime_p95 == 2.0 and normal.samples == 3
    assert normal.failure_rate == pytest.approx(3 / 310)
    assert NameNormal.of([HourCell(0, 0, 0, None)]) is None and NameNormal.of([]) is None


# -- through the real write path ---------------------------------------------------------------


def test_runtime_p95_runs_and_failures_per_hour_of_the_week_come_back_as_normal(
    redis_url: str,
) -> None:
    app = make_app(redis_url)
    wd = install(app)
    assert wd is not None
    store = wd.store()
    limits = wd.recorder.limits
    events: list[dict[str, Any]] = []
    for back in range(1, 5):  # four weeks: 50 runs at this hour, 95 % under 0.5 s, 1 failure
        for i in range(50):
            runtime = 0.2 if i < 47 else 3.0
            outcome = "failed" if i == 0 else "succeeded"
            events.append(ended(i, "n.report", runtime, back * WEEK, outcome))
    # Hostile runtimes never break the histogram: NaN, negative, absurd.
    events += [ended(90 + i, "n.report", r, WEEK) for i, r in enumerate((math.nan, -1, 1e12))]
    assert not store.runs.write_batch(events, [], limits).rejected
    normal = store.names.normal(["n.report", "n.never"], store.now())
    assert "n.never" not in normal
    got = normal["n.report"]
    assert 50 <= got.runs_per_hour <= 53
    assert got.failure_rate is not None and 0.01 < got.failure_rate < 0.03
    # The p95 of 47 x 0.2 s and 3 x 3 s is 3 s (the 48th of 50), within the 10 % bucket.
    assert got.runtime_p95 is not None and 2.7 < got.runtime_p95 < 3.3

    doc = status_doc(store, wd)
    assert doc["tasks"]["n.report"]["normal"]["runtime_p95"] == pytest.approx(
        got.runtime_p95, rel=0.01
    )
    text = status_text(doc, store.now())
    assert "NORMAL THIS HOUR" in text and "p95 3" in text


def test_the_hour_of_the_week_history_of_a_name_is_one_fixed_size_string(redis_url: str) -> None:
    app = make_app(redis_url)
    wd = install(app)
    assert wd is not None
    store = wd.store()
    events = [ended(i, "n.size", 0.01, i * 3600.0) for i in range(0, 24 * 7 * 2, 5)]
    assert not store.runs.write_batch(events, [], wd.recorder.limits).rejected
    keys = sorted(store.r.scan_iter(f"{store.p}:hw:n.size:*"))
    assert 2 <= len(keys) <= 3  # two weeks back from now span two or three weeks
    for key in keys:
        assert store.r.strlen(key) == 168 * 12
        ttl = store.r.ttl(key)
        assert 0 < ttl <= 5 * WEEK + 7200  # gone four weeks after its own week ended

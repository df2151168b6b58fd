"""Failures people can read and act on, with an in-process worker on a real Redis: reasons
bucketed from real exceptions, a retry chain's first error beside its last, one ``failed``
page for a task name failing in a row (resolved by a success), and a failure spike judged
against the recorded history of this hour of the week."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from celery import Celery

from celery_watchdog import install
from celery_watchdog.monitor.check import run_pass
from celery_watchdog.runtime import Watchdog
from celery_watchdog.store import Store
from celery_watchdog.testing import capture_alerts
from celery_watchdog.views.documents import task_doc
from celery_watchdog.views.status import status_doc
from tests.helpers import make_app, run_worker, wait_for

pytestmark = pytest.mark.timeout(120)


class VendorTimeout(Exception):
    """Imitates requests' ReadTimeout: the bucket comes from the class name in the MRO."""


def runtime_of(app: Celery) -> Watchdog:
    wd = install(app)
    assert wd is not None
    return wd


def ended(store: Store, task_id: str, state: str = "FAILURE") -> Any:
    def find() -> Any:
        runs = store.runs.of_task(task_id)
        return runs[0] if runs and runs[0].state == state else None

    return wait_for(find, timeout=15, what=f"{task_id} in state {state}")


def define(app: Celery) -> dict[str, Any]:
    fixed: dict[str, bool] = {}
    @app.task(name="f.socket_timeout", shared=False)
    def socket_timeout() -> None:
        raise socket.timeout("timed out")  # noqa: UP041 (the alias is what socket code raises)

    @app.task(name="f.refused", shared=False)
    def refused() -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    @app.task(name="f.missing", shared=False)
    def missing(order_id: int) -> None:
        raise KeyError(f"order {order_id}")

    @app.task(name="f.bad_card", shared=False, alert_context=("account_id",))
    def bad_card(account_id: int, card: str = "4111") -> str:
        if fixed.get("bad_card"):
            return "charged"
        raise ValueError(f"card number invalid for account {account_id}")

    @app.task(name="f.wrapped", shared=False)
    def wrapped() -> None:
        try:
            raise VendorTimeout("read timed out after 30 s")
        except VendorTimeout as exc:
            raise RuntimeError("charge failed") from exc

    @app.task(name="f.chain", shared=False, bind=True, max_retries=2, default_retry_delay=0)
    def chain(self: Any) -> None:
        if self.request.retries < 2:
            raise self.retry(exc=ConnectionError("vendor unreachable"))
        raise ValueError("vendor said: amount must be positive")

    @app.task(name="f.sometimes", shared=False)
    def sometimes(ok: bool) -> str:
        if not ok:
            raise LookupError("customer 12 has no address")
        return "done"

    tasks: dict[str, Any] = {t.name.split(".")[1]: t for t in (
        socket_timeout, refused, missing, bad_card, wrapped, chain, sometimes)}  # fmt: skip
    tasks["fixed"] = fixed
    return tasks


def test_failures_are_bucketed_from_real_exceptions_and_their_causes(redis_url: str) -> None:
    app = make_app(redis_url)
    tasks = define(app)
    wd = runtime_of(app)
    store = wd.store()
    with run_worker(app):
        sent = {
            "socket_timeout": tasks["socket_timeout"].delay(),
            "refused": tasks["refused"].delay(),
            "missing": tasks["missing"].delay(7),
            "bad_card": tasks["bad_card"].delay(12),
            "wrapped": tasks["wrapped"].delay(),
        }
        reasons = {key: ended(store, r.id).reason for key, r in sent.items()}
    assert reasons == {
        "socket_timeout": "timeout", "refused": "connection", "missing": "missing record",
        "bad_card": "bad input", "wrapped": "timeout",
    }  # fmt: skip
    names = status_doc(store, wd)["tasks"]
    assert names["f.bad_card"]["top_reason"] == "bad input"
    assert names["f.bad_card"]["reasons_24h"] == {"bad input": 1}
    assert "card number invalid" in names["f.bad_card"]["reason_examples"]["bad input"]


def test_a_retry_chain_keeps_its_first_error_beside_its_last(redis_url: str) -> None:
    app = make_app(redis_url)
    tasks = define(app)
    wd = runtime_of(app)
    store = wd.store()
    with run_worker(app):
        result = tasks["chain"].delay()
        run = ended(store, result.id)
    assert run.exception == "ValueError: vendor said: amount must be positive"
    assert run.reason == "bad input" and run.retries == 2
    assert run.first_error is not None and "vendor unreachable" in run.first_error
    assert run.first_reason == "connection"
    failure = task_doc(store, wd, result.id)["watchdog"]["failure"]
    assert failure["first_reason"] == "connection" and failure["reason"] == "bad input"
    with capture_alerts() as alerts:
        run_pass(wd, store)
    # It gave up after its retries: that pages at once, whatever the streak.
    page = alerts.assert_sent(kind="failed", task_name="f.chain")
    assert "gave up after 2 retries" in page.summary and page.task_id == result.id


def test_a_task_failing_three_times_in_a_row_pages_once_and_resolves_on_success(
    redis_url: str,
) -> None:
    app = make_app(redis_url)
    tasks = define(app)
    wd = runtime_of(app)
    store = wd.store()
    with run_worker(app):
        for account in (12, 15):
            ended(store, tasks["bad_card"].delay(account).id)
        with capture_alerts() as before:
            run_pass(wd, store)
        before.assert_not_sent(kind="failed")  # two in a row: not yet
        ended(store, tasks["bad_card"].delay(99).id)
        with capture_alerts() as alerts:
            first = run_pass(wd, store)
            run_pass(wd, store)
        page = alerts.assert_sent(kind="failed", task_name="f.bad_card")
        assert [f.kind for f in first.failing] == ["failed"]
        assert "failed 3 times in a row (bad input: ValueError: card number invalid" in (
            page.summary
        )
        assert "hit 3 accounts" in page.summary and "account_id=99" in page.summary
        assert page.next_step.startswith("the input is bad")
        assert page.severity == "P2"

        ended(store, tasks["sometimes"].delay(True).id, "SUCCESS")  # another name: no effect
        with capture_alerts() as still:
            run_pass(wd, store)
        still.assert_not_sent(kind="failed")

        ended(store, tasks["bad_card"].delay(1).id)  # fails again: still one incident
        tasks["fixed"]["bad_card"] = True  # the fix is deployed
        ended(store, tasks["bad_card"].delay(5).id, "SUCCESS")
        with capture_alerts() as after:
            run_pass(wd, store)
        resolved = after.assert_sent(kind="failed", notice="resolved")
        assert resolved.incident.resolution == "f.bad_card succeeds again"
        after.assert_not_sent(kind="failed", notice="opened")


def test_a_failure_spike_is_judged_against_this_hour_of_the_weeks_before(redis_url: str) -> None:
    app = make_app(redis_url)
    tasks = define(app)
    wd = runtime_of(app)
    store = wd.store()
    limits = wd.recorder.limits
    # Four weeks of history at this hour, through the real write path: 100 runs, 2 failures
    # each week (events aged by whole weeks land in those weeks' hour-of-week counters).
    week = 7 * 86400
    history = []
    for back in range(1, 5):
        for i in range(100):
            outcome = "failed" if i < 2 else "succeeded"
            history.append({
                "kind": "end", "id": f"old-{back}-{i}", "name": "f.sometimes", "worker": "w@h",
                "pid": 1, "state": "FAILURE" if outcome == "failed" else "SUCCESS",
                "outcome": outcome, "age": back * week, "runtime": 0.01, "first": True,
                "started_age": back * week + 0.01,
            })  # fmt: skip
    assert not store.runs.write_batch(history, [], limits).rejected
    with run_worker(app, concurrency=4):
        results = [tasks["sometimes"].delay(i % 3 != 0) for i in range(30)]
        for r in results:
            r.get(timeout=20, propagate=False)
        wait_for(lambda: sum(store.names.stats(["f.sometimes"], store.now())["f.sometimes"]
                             .last_hour.values()) >= 30, what="30 runs counted")  # fmt: skip
        with capture_alerts() as alerts:
            report = run_pass(wd, store)
    spike = alerts.assert_sent(kind="failure_spike", task_name="f.sometimes")
    assert "10 of 30 runs failed in the last hour (33%), normally" in spike.summary
    assert "mostly missing record" in spike.summary
    assert {f.kind for f in report.failing} >= {"failure_spike"}


def test_no_spike_without_enough_runs_or_against_a_history_that_fails_as_often(
    redis_url: str,
) -> None:
    app = make_app(redis_url)
    tasks = define(app)
    wd = runtime_of(app)
    store = wd.store()
    with run_worker(app):
        for i in range(6):
            tasks["sometimes"].delay(i % 2 == 0).get(timeout=20, propagate=False)
        time.sleep(1.5)
        with capture_alerts() as alerts:
            run_pass(wd, store)
    alerts.assert_not_sent(kind="failure_spike")

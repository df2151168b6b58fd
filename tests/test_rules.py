"""Health rules are pure: (run, policy, now) -> verdict, tested with plain numbers."""

from __future__ import annotations

from typing import Any

from celery_watchdog.model.policy import TaskPolicy
from celery_watchdog.model.records import Run
from celery_watchdog.model.rules import health

POLICY = TaskPolicy(heartbeat_timeout=60, soft_timeout=100, hard_timeout=300, max_deliveries=3)


def running(**fields: Any) -> Run:
    base: dict[str, Any] = {"task_id": "t1", "name": "reports.build", "state": "STARTED",
                            "worker": "w1@h", "pid": 10, "started": 1000.0}  # fmt: skip
    base.update(fields)
    return Run(**base)


def test_a_watched_task_that_heartbeats_and_progresses_is_ok() -> None:
    run = running(watched=True, last_heartbeat=1050.0, last_progress=1050.0)
    assert health(run, POLICY, now=1060.0).health == "ok"


def test_a_watched_task_without_a_heartbeat_for_the_timeout_is_stuck() -> None:
    run = running(watched=True, last_heartbeat=1010.0, last_progress=1010.0)
    verdict = health(run, POLICY, now=1080.0)
    assert verdict.health == "stuck"
    assert "no heartbeat for 70s" in verdict.reason


def test_heartbeats_without_progress_for_the_timeout_are_a_stall() -> None:
    run = running(watched=True, last_heartbeat=1079.0, last_progress=1010.0)
    verdict = health(run, POLICY, now=1080.0)
    assert verdict.health == "stuck"
    assert "progress has not moved" in verdict.reason


def test_a_step_past_its_own_timeout_is_stuck_even_with_fresh_heartbeats() -> None:
    run = running(watched=True, last_heartbeat=1039.0, last_progress=1039.0, step="fetch rows",
                  step_started=1000.0, step_timeout=30.0)  # fmt: skip
    verdict = health(run, POLICY, now=1040.0)
    assert verdict.health == "stuck" and "fetch rows" in verdict.reason


def test_a_plain_task_is_never_stuck_for_lack_of_heartbeats() -> None:
    assert health(running(), POLICY, now=1090.0).health == "ok"


def test_runtime_past_soft_budget_is_slow_and_past_hard_budget_is_overtime() -> None:
    assert health(running(), POLICY, now=1101.0).health == "slow"
    assert health(running(), POLICY, now=1301.0).health == "overtime"


def test_no_budgets_means_no_slow_or_overtime_verdicts() -> None:
    assert health(running(), TaskPolicy(), now=1_000_000.0).health == "ok"


def test_a_run_whose_worker_stopped_reporting_is_lost() -> None:
    verdict = health(running(), POLICY, now=1001.0, worker_alive=False)
    assert verdict.health == "lost" and "w1@h" in verdict.reason


def test_a_task_id_running_twice_at_once_is_a_duplicate() -> None:
    assert health(running(), POLICY, now=1001.0, copies=2).health == "duplicate"


def test_a_message_delivered_more_than_max_deliveries_is_poison() -> None:
    assert health(running(deliveries=4), POLICY, now=1001.0).health == "poison"


def test_a_finished_run_is_ok_whatever_its_age() -> None:
    done = Run(task_id="t1", name="n", state="SUCCESS", started=1.0, finished=2.0)
    assert health(done, POLICY, now=1e9, worker_alive=False).health == "ok"


def test_a_run_that_ended_because_its_process_died_stays_lost() -> None:
    done = Run(task_id="t1", name="n", state="FAILURE", finished=2.0, outcome="lost",
               exception="WorkerLostError: child process 7 died")  # fmt: skip
    verdict = health(done, POLICY, now=1e9)
    assert verdict.health == "lost" and "child process 7" in verdict.reason

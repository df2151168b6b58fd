"""The monitor's pure decisions: deadlines, learned budgets, what to do, when it is blind."""

from __future__ import annotations

from celery_watchdog.model.plans import plan
from celery_watchdog.model.policy import TaskPolicy
from celery_watchdog.model.records import Run
from celery_watchdog.model.rules import Budgets, blindness, deadline, health, learn, with_budgets

RUN = Run(task_id="t", name="n", state="STARTED", worker="w", started=1000.0, deliveries=1)


def test_a_watched_run_is_due_one_heartbeat_timeout_after_its_last_progress() -> None:
    policy = TaskPolicy(heartbeat_timeout=60)
    assert deadline(policy, started=1000, last_progress=1030, watched=True) == 1090


def test_the_earliest_of_heartbeat_step_and_budgets_wins() -> None:
    policy = TaskPolicy(heartbeat_timeout=60, soft_timeout=40, hard_timeout=500)
    assert deadline(policy, started=1000, last_progress=1030, watched=True) == 1040
    due = deadline(
        policy, started=1000, last_progress=1030, step_started=1001, step_timeout=5, watched=True
    )
    assert due == 1006


def test_a_plain_run_without_budgets_is_looked_at_again_after_a_heartbeat_timeout() -> None:
    assert deadline(TaskPolicy(heartbeat_timeout=300), started=1000, last_progress=None,
                    watched=False) == 1300  # fmt: skip


def test_after_a_verdict_the_next_deadline_is_the_next_one_in_the_future() -> None:
    policy = TaskPolicy(heartbeat_timeout=60, soft_timeout=40, hard_timeout=500)
    assert deadline(policy, started=1000, last_progress=1100, watched=True, after=1041) == 1160
    assert deadline(policy, started=1000, last_progress=1100, watched=False, after=1600) == 1660


def test_budgets_are_learned_from_thirty_runs_as_two_and_five_times_p99() -> None:
    runtimes = sorted([1.0] * 29 + [100.0])
    assert learn(runtimes[:29], min_runs=30, soft_floor=1, hard_floor=1) is None
    assert learn(runtimes, min_runs=30, soft_floor=1, hard_floor=1) == Budgets(200.0, 500.0)


def test_learned_budgets_never_go_below_their_floors() -> None:
    learned = learn([0.01] * 40, min_runs=30, soft_floor=60, hard_floor=300)
    assert learned == Budgets(60, 300)


def test_explicit_budgets_win_over_learned_ones() -> None:
    policy = with_budgets(TaskPolicy(soft_timeout=10), Budgets(60, 300))
    assert (policy.soft_timeout, policy.hard_timeout) == (10, 300)


def test_a_plain_task_past_its_learned_hard_budget_is_overtime() -> None:
    verdict = health(RUN, TaskPolicy(), now=1400, learned=Budgets(60, 300))
    assert verdict.health == "overtime"


def test_a_stuck_idempotent_run_with_deliveries_left_is_stopped_and_requeued() -> None:
    p = plan("stuck", TaskPolicy(idempotent=True, max_deliveries=3), RUN, broker_redelivers=False)
    assert (p.stop, p.then) == (True, "requeue")


def test_a_stuck_run_that_is_not_idempotent_is_stopped_and_dead_lettered() -> None:
    p = plan("stuck", TaskPolicy(), RUN, broker_redelivers=False)
    assert (p.stop, p.then) == (True, "dead_letter")
    assert p.why == "not idempotent"


def test_on_stuck_alert_only_reports() -> None:
    p = plan("stuck", TaskPolicy(on_stuck="alert"), RUN, broker_redelivers=False)
    assert (p.stop, p.then) == (False, "none")


def test_slow_and_duplicate_runs_are_never_stopped() -> None:
    for kind in ("slow", "duplicate"):
        assert plan(kind, TaskPolicy(idempotent=True), RUN, broker_redelivers=False).then == "none"


def test_a_lost_run_the_broker_redelivers_is_left_to_the_broker() -> None:
    p = plan("lost", TaskPolicy(idempotent=True), RUN, broker_redelivers=True)
    assert (p.stop, p.then) == (False, "none")


def test_a_lost_run_out_of_delivery_budget_is_dead_lettered() -> None:
    from dataclasses import replace

    run = replace(RUN, deliveries=3)
    p = plan("lost", TaskPolicy(idempotent=True, max_deliveries=3), run, broker_redelivers=False)
    assert (p.stop, p.then) == (False, "dead_letter")


def test_the_watchdog_is_blind_after_three_intervals_without_a_pass() -> None:
    assert blindness({"at": "1000"}, now=1029, interval=10) is None
    reason = blindness({"at": "1000"}, now=1031, interval=10)
    assert reason and "no monitor pass for 31 s" in reason
    assert "ever completed" in (blindness({}, now=1, interval=10) or "")


def test_a_long_pass_that_just_ended_is_proof_of_life() -> None:
    # Started 40 s ago, took 35 s: it ended 5 s ago (blind only after 3 intervals of 10 s).
    assert blindness({"at": "1000", "duration": "35"}, now=1040, interval=10) is None
    assert blindness({"at": "1000", "duration": "nan"}, now=1040, interval=10) is not None


class Conf:
    def __init__(self, acks_late: bool, reject: bool) -> None:
        self.task_acks_late = acks_late
        self.task_reject_on_worker_lost = reject


class Task:
    acks_late = None
    reject_on_worker_lost = None


def test_only_an_unacknowledged_message_comes_back_by_itself() -> None:
    from celery_watchdog.model.plans import broker_redelivers

    task = Task()
    task.acks_late = True  # type: ignore[assignment]
    assert broker_redelivers(task, Conf(True, False), worker_gone=True)
    assert not broker_redelivers(task, Conf(True, False), worker_gone=False)  # acked as failed
    assert broker_redelivers(task, Conf(True, True), worker_gone=False)
    task.acks_late = False  # type: ignore[assignment]
    assert not broker_redelivers(task, Conf(False, True), worker_gone=True)


def test_a_finished_run_keeps_the_verdict_the_monitor_acted_on() -> None:
    from dataclasses import replace

    done = replace(RUN, state="REVOKED", finished=2000.0, verdict="stuck",
                   verdict_reason="no heartbeat for 20s")  # fmt: skip
    verdict = health(done, TaskPolicy(), now=3000)
    assert (verdict.health, verdict.reason) == ("stuck", "no heartbeat for 20s")

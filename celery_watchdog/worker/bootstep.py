"""The worker's main-process reporter: one snapshot per worker every few seconds.

It runs in the main process on purpose: a child stuck in C code, or killed, cannot report for
itself, but its parent still can. The snapshot (active requests with child pid and child CPU
seconds) expires after ~3 intervals, so an expired snapshot means the worker is gone.
A request that vanished from the active set while its child died without recording an end
(``acks_late`` + ``task_reject_on_worker_lost`` fire no signal at all) is recorded as lost.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
from typing import Any

import celery
from celery import bootsteps
from celery.worker import state as worker_state

from .. import faults, runtime
from ..alerts.incidents import Alerter
from ..model import diagnosis, events, redis_errors, rules
from ..model.masking import mask_url
from ..model.rules import blindness
from ..store import RUNNING_TTL
from .deliveries import DeliveryGate
from .message import original_message
from .procfs import cpu_seconds, pid_alive

logger = logging.getLogger("celery_watchdog")
RETRY = 0.5  # seconds between snapshot attempts while Redis is failing


class Reporter:
    """Builds and writes snapshots; separate from the bootstep so tests can drive it."""

    def __init__(self, worker: Any, wd: runtime.Watchdog, gate: DeliveryGate | None = None) -> None:
        self.worker = worker
        self.wd = wd
        self.gate = gate
        self.hostname: str = worker.hostname
        self.interval = wd.settings.snapshot_interval
        self._seen: dict[tuple[str, int | None], tuple[str, float]] = {}
        self._children: set[int] = set()
        self._saved: set[str] = set()
        self._cpu_prev: dict[int, tuple[float, float]] = {}
        self.blind: str | None = None
        self._blind_logged = -1e9
        self._alerting: threading.Thread | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reported_once = False

    def start(self) -> None:
        self.wd.recorder.hostname = self.hostname
        self._thread = threading.Thread(
            target=self._loop, name="celery-watchdog-reporter", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.wd.recorder.flush()
        self._write(online=False)

    def _loop(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                self.report()
                if failing:
                    logger.warning("celery_watchdog: Redis at %s is reachable again",
                                   mask_url(self.wd.settings.redis_url or ""))  # fmt: skip
                failing = False
            except Exception as exc:  # keep reporting; never take the worker down
                if not self._reported_once:  # once, at start-up: the worker still starts
                    self._reported_once = True
                    logger.error(
                        "celery_watchdog: cannot use its Redis: %s. Tasks run, but the watchdog "
                        "records nothing until Redis is usable.",
                        redis_errors.describe(exc, self.wd.settings.redis_url),
                    )  # fmt: skip
                else:
                    faults.report("snapshot", exc, redis_errors.describe(exc))
                failing = True
            self._reported_once = True
            # After a failure, try again soon: until this worker's snapshot is back, the
            # monitor has to wait (and its runs look unaccounted for).
            self._stop.wait(min(self.interval, RETRY) if failing else self.interval)

    def report(self) -> None:
        requests = list(worker_state.active_requests)
        self._save_messages(requests)
        self._record_vanished(requests)
        self._reap_dead_children()
        self._write(online=True, requests=requests)
        self._check_blind()
        if self.gate is not None:
            self.gate.refresh()

    def _check_blind(self) -> None:
        """Say so when nobody is watching: no monitor pass for 3 check intervals."""
        store = self.wd.recorder.store
        last = store.monitor.last_pass()
        now = store.now()
        outage = store.workers.evidence().outage
        self.blind = blindness(last, now, self.wd.settings.check_interval, outage)
        if self.blind and last and time.monotonic() - self._blind_logged > 300:
            self._blind_logged = time.monotonic()
            logger.error("celery_watchdog is BLIND: %s", self.blind)
        if self.blind and last:
            self._alert_blind(self.blind, now)

    def _alert_blind(self, reason: str, now: float) -> None:
        """Open (once, whichever worker is first) and remind the blind incident.

        In its own thread: a channel that hangs must never delay the snapshot, whose expiry
        would make this worker's runs look lost.
        """
        if self._alerting is not None and self._alerting.is_alive():
            return

        def alert() -> None:
            try:
                store = self.wd.recorder.store
                # Still blind? A pass may have ended since we looked: no stale alert.
                interval = self.wd.settings.check_interval
                outage = store.workers.evidence().outage
                still = blindness(store.monitor.last_pass(), store.now(), interval, outage)
                if still:
                    Alerter(self.wd, store, now).blind(still, self.hostname)
            except Exception as exc:
                logger.warning("celery_watchdog: could not alert that it is blind: %s", exc)

        self._alerting = threading.Thread(target=alert, name="celery-watchdog-blind", daemon=True)
        self._alerting.start()

    def _save_messages(self, requests: list[Any]) -> None:
        """Keep the original message of runs active for a whole interval (replay needs it).

        Short runs never pay for this; a run that is stuck or lost later is long by then.
        """
        keep = {}
        for r in requests:
            key = (r.id, r.worker_pid)
            if key in self._seen and r.id not in self._saved:
                doc = original_message(r)
                if doc is not None:
                    keep[r.id] = doc
        if keep:
            self.wd.recorder.store.messages.save(keep, ttl=RUNNING_TTL)
            self._saved.update(keep)
        self._saved &= {r.id for r in requests}

    def _reap_dead_children(self) -> None:
        """A SIGKILLed child takes its unflushed buffer along: settle its runs left open."""
        pids = set(self._processes())
        gone = self._children - pids
        self._children = pids
        for pid in gone:
            if pid_alive(pid):
                continue
            for task_id, name in self.wd.recorder.store.runs.open_of(self.hostname, pid):
                state = self._backend_state(task_id)
                if state in ("SUCCESS", "FAILURE"):
                    outcome: events.Outcome = "succeeded" if state == "SUCCESS" else "failed"
                    self._end(task_id, name, pid, state, outcome, None)
                else:
                    self._end(task_id, name, pid, "FAILURE", "lost", _died(pid))

    def _record_vanished(self, requests: list[Any]) -> None:
        """Requests gone from the active set whose child is dead ended without a signal."""
        # Keyed by (id, pid): a redelivery of the same id is a new request in a new child.
        current = {(r.id, r.worker_pid): (r.name, r.time_start or 0.0) for r in requests}
        dead: dict[int, list[tuple[float, str, str]]] = {}
        for (task_id, pid), (name, started) in self._seen.items():
            if (task_id, pid) not in current and pid is not None and not pid_alive(pid):
                dead.setdefault(pid, []).append((started, task_id, name))
        for pid, runs in dead.items():
            # A child runs one task at a time: the latest one is what it was running at death.
            # Earlier ones finished, but their ends may have died in the child's buffer; the
            # result backend (written synchronously by the child) tells how they ended.
            runs.sort()
            *earlier, (_, task_id, name) = runs
            # ... unless the child finished it and died later, running a message it took
            # after our last look (a crash loop): the result backend knows a success.
            if self._backend_state(task_id) == "SUCCESS":
                self._end(task_id, name, pid, "SUCCESS", "succeeded", None)
            else:
                self._end(task_id, name, pid, "FAILURE", "lost", _died(pid))
            for _, other_id, other_name in earlier:
                state = self._backend_state(other_id)
                if state in ("SUCCESS", "FAILURE"):
                    done: events.Outcome = "succeeded" if state == "SUCCESS" else "failed"
                    self._end(other_id, other_name, pid, state, done, None)
        self._seen = current

    def _end(
        self, task_id: str, name: str, pid: int, state: str, outcome: events.Outcome,
        why: str | None,
    ) -> None:  # fmt: skip
        self.wd.recorder.add(
            events.guessed_end(task_id, name, self.hostname, pid, state, outcome, why)
        )

    def _backend_state(self, task_id: str) -> str | None:
        try:
            return str(self.worker.app.AsyncResult(task_id).state)
        except Exception:  # no result backend, or it is down: leave the run to the monitor
            return None

    def _write(self, online: bool, requests: list[Any] | None = None) -> None:
        snapshot = self.snapshot(requests or [])
        # Every worker silent longer than this means the store was out, not the workers.
        gap = 1.5 * self.interval + 1
        self.wd.recorder.store.workers.write_snapshot(
            self.hostname, snapshot, ttl=3 * self.interval, online=online, gap=gap
        )

    def snapshot(self, requests: list[Any]) -> dict[str, Any]:
        redactor = self.wd.redactor
        now = time.time()
        active = []
        cpu_now = {}
        for r in requests:
            pid = r.worker_pid or (
                os.getpid() if self._pool_name() in ("solo", "threads") else None
            )
            cpu = cpu_seconds(pid)
            if pid is not None and cpu is not None:
                cpu_now[pid] = (cpu, time.monotonic())
            active.append(
                {
                    "id": r.id,
                    "name": r.name,
                    "pid": pid,
                    "started_age": (now - r.time_start) if r.time_start else None,
                    "cpu": cpu,
                    # Measured here, in the main process: a child spinning in C with the GIL
                    # held cannot report for itself, but its CPU time still grows.
                    "cpu_pct": self._cpu_percent(pid, cpu),
                    "args": redactor.args(r.args, self.wd.recorder.batcher.param_names(r.task)),
                    **self._tracking(r, now),
                    "kwargs": redactor.kwargs(r.kwargs),
                }
            )
        self._cpu_prev = cpu_now
        recorder = self.wd.recorder
        return {
            "pid": os.getpid(),
            "pool": self._pool_name(),
            "concurrency": getattr(self.worker, "concurrency", None),
            "queues": sorted(self._queues()),
            # Seconds since this worker last took a message with each routing key.
            "received_ages": self._received_ages(),
            "processes": self._processes(),
            "active": active,
            # Flower's stats.total and registered: counts per task name since worker start.
            "total": dict(worker_state.total_count),
            "registered": sorted(n for n in self.worker.app.tasks if not n.startswith("celery.")),
            "software": {"celery": celery.__version__, "python": _python()},
            "watchdog": {
                "dropped": recorder.dropped,
                "errors": recorder.errors,
                "blind": self.blind,
            },
        }

    def _tracking(self, r: Any, now: float) -> dict[str, Any]:
        """For a prefork run old enough that its child should have reported it by now.

        A child spinning in C code with the GIL held never lets its flusher run; the
        snapshot script then records the run from what we know here, so the monitor can
        still judge it (stuck and busy, not lost).
        """
        age = (now - r.time_start) if r.time_start else 0.0
        if self._pool_name() != "prefork" or age < 2 * self.interval + 1:
            return {}
        policy = self.wd.policy(r.task)
        watched = bool(getattr(r.task, "_watchdog_watched", False))
        after = rules.deadline(policy, started=0.0, last_progress=0.0, watched=watched)
        return {"track": True, "watched": watched, "deadline_after": after}

    def _cpu_percent(self, pid: int | None, cpu: float | None) -> float | None:
        prev = self._cpu_prev.get(pid) if pid is not None else None
        if prev is None or cpu is None:
            return None
        return diagnosis.cpu_percent(prev[0], cpu, time.monotonic() - prev[1])

    def _pool_name(self) -> str:
        cls = type(getattr(self.worker, "pool", None) or object)
        module = cls.__module__.rsplit(".", 1)[-1]
        return {"prefork": "prefork", "solo": "solo", "thread": "threads"}.get(module, module)

    def _received_ages(self) -> dict[str, float]:
        if self.gate is None:
            return {}
        now = time.monotonic()
        return {k: round(now - t, 3) for k, t in list(self.gate.last_received.items())}

    def _queues(self) -> list[str]:
        try:
            return [q.name for q in self.worker.app.amqp.queues.consume_from.values()]
        except Exception:
            return []

    def _processes(self) -> list[int]:
        try:
            return list(self.worker.pool.info.get("processes", []))
        except Exception:
            return []


def _died(pid: int) -> str:
    return f"WorkerLostError: child process {pid} died while running it"


def _python() -> str:
    return platform.python_version()


class WatchdogStep(bootsteps.StartStopStep):
    """Worker blueprint step: start the reporter once the pool exists."""

    requires = {"celery.worker.components:Pool"}
    label = "celery_watchdog"

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.reporter: Reporter | None = None
        self.gate: DeliveryGate | None = None
        wd = runtime.for_app(worker.app)
        if wd is not None:
            wd.validate_tasks()  # a bad task option stops the worker here, naming it
            # Set before the pool forks, so children record runs under the node name too
            # (an in-process tracer may only know the bare host name).
            wd.recorder.hostname = worker.hostname
            self.gate = DeliveryGate(wd, worker.hostname)
            self.reporter = Reporter(worker, wd, self.gate)

    def start(self, worker: Any) -> None:
        if self.gate is not None:
            self.gate.connect()
        if self.reporter is not None:
            self.reporter.start()

    def stop(self, worker: Any) -> None:
        if self.gate is not None:
            self.gate.disconnect()
        if self.reporter is not None:
            try:
                self.reporter.stop()
            except Exception as exc:
                faults.report("snapshot", exc, f"final snapshot failed: {exc}")

    shutdown = terminate = stop  # warm and cold shutdowns both end the reporter


def add_bootstep(app: Any) -> None:
    app.steps["worker"].add(WatchdogStep)

"""Flower-compatible documents built from the store, shared by the CLI and the HTTP server.

Plain functions returning dicts: no printing, no click, no HTTP. Each document reads the one
clock (``store.now()``, the Redis server's ``TIME``) once, unless the caller passes the ``now``
it will also render with, and judges every run with the pure rules (:func:`.rules.health`).

Shapes (DESIGN §2):

- :func:`tasks_doc` -> Flower's ``/api/tasks``: ``{task_id: {uuid, name, state, ...,
  "watchdog": {...}}}``. A task id running twice at once (a duplicate) appears once per run:
  the first run under the task id, the others under ``"<task_id>#2"``, ``"#3"``…; every entry
  keeps the real id in ``uuid``, so a Flower script that reads ``task["uuid"]`` still works.
- :func:`task_doc` -> Flower's ``/api/task/info/<id>``, plus ``watchdog.runs`` (every run).
- :func:`workers_doc` -> Flower's ``/api/workers``: ``{hostname: {stats, active,
  active_queues, timestamp, watchdog}}``.
- :func:`status_doc` -> ``{timestamp, workers: {online, offline}, tasks: {name: {...}}}``.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..model import rules
from ..model.ids import TaskLookupError, unique_id
from ..model.policy import TaskPolicy
from ..model.records import ActiveRequest, Run, Verdict, WorkerInfo
from .flower_query import (
    check_sort,
    compile_search,
    matches,
    one_of,
    received_at,
    received_within,
    sort_entries,
)

if TYPE_CHECKING:
    from ..runtime import Watchdog
    from ..store import Store

#: Flower's task fields (``celery.events.state.Task._fields``), in Flower's order.
TASK_FIELDS = (
    "uuid", "name", "state", "received", "sent", "started", "rejected", "succeeded", "failed",
    "retried", "revoked", "args", "kwargs", "eta", "expires", "retries", "worker", "result",
    "exception", "timestamp", "runtime", "traceback", "exchange", "routing_key", "clock",
    "client", "root", "root_id", "parent", "parent_id", "children",
)  # fmt: skip
HEALTHS = ("ok", "slow", "stuck", "overtime", "lost", "poison", "duplicate")
FINISHED_SCAN = 1000  # finished runs read at most per document (newest first)


@dataclass(frozen=True)
class Judged:
    """A run with its verdict and the facts the verdict was drawn from."""

    run: Run
    verdict: Verdict
    policy: TaskPolicy
    copies: int
    cpu: float | None


class _Scene:
    """What one document knows about the cluster at one ``now``: workers, CPU, copies."""

    def __init__(self, store: Store, wd: Watchdog, now: float | None) -> None:
        self.wd = wd
        self.now = store.now() if now is None else now
        self.workers = store.workers.all()
        self.alive = {w.hostname: w.online for w in self.workers}
        self.cpu = {
            (a.task_id, a.pid): a.cpu for w in self.workers for a in w.active if a.cpu is not None
        }
        self.copies: Counter[str] = Counter()
        self.learned: dict[str, rules.Budgets] = {}  # the budgets the monitor judges with
        s = wd.settings
        self.evidence = store.workers.evidence()
        # The monitor's own reading: while silence proves nothing, nobody is shown lost/stuck.
        self.doubt = rules.doubt(
            self.evidence, self.now, snapshot_interval=s.snapshot_interval,
            flush_interval=s.flush_interval,
        )  # fmt: skip

    def policy(self, name: str) -> TaskPolicy:
        # The task object carries decorator options (heartbeat_timeout=…); a bare name only
        # gets policies and settings, so prefer the registered task when the app knows it.
        task = self.wd.app.tasks.get(name) if name else None
        return self.wd.policy(task if task is not None else name)

    def learn(self, store: Store, names: set[str]) -> None:
        """The budgets the monitor learned for these task names (one round trip)."""
        found = store.names.budgets(sorted(names - set(self.learned)))
        self.learned.update({name: rules.Budgets(*sh) for name, sh in found.items()})

    def judge(self, run: Run) -> Judged:
        policy = self.policy(run.name)
        copies = self.copies[run.task_id] if run.running else 1
        # A worker we have no snapshot of cannot vouch for its runs: same as an expired one.
        alive = self.alive.get(run.worker or "", False)
        verdict = rules.health(run, policy, self.now, worker_alive=alive, copies=copies,
                               learned=self.learned.get(run.name),
                               doubtful=self.doubt is not None)  # fmt: skip
        return Judged(run, verdict, policy, copies, self.cpu.get((run.task_id, run.pid)))


def _judge_running(store: Store, scene: _Scene, first: int | None = None) -> list[Judged]:
    """Runs in progress, most overdue first, judged; only the ``first`` ones read (their
    copies are counted over all of them: a duplicate is a duplicate wherever it sorts)."""
    keys = store.runs.running_keys()
    scene.copies.update(runkey.split("|", 1)[0] for runkey, _ in keys)
    running = store.runs.load(keys if first is None else keys[:first], forget_stale=True)
    scene.learn(store, {run.name for run in running})
    return [scene.judge(run) for run in running]


# -- tasks ---------------------------------------------------------------------------------


def _timestamp(run: Run) -> float | None:
    if not run.running and run.finished is not None:
        return run.finished
    stamps = [t for t in (run.last_heartbeat, run.started, run.received) if t is not None]
    return max(stamps, default=None)


def flower_task(judged: Judged, now: float) -> dict[str, Any]:
    """One run as Flower's ``Task.as_dict()`` plus our ``watchdog`` object."""
    run, verdict, policy = judged.run, judged.verdict, judged.policy
    doc: dict[str, Any] = dict.fromkeys(TASK_FIELDS)
    doc.update(
        uuid=run.task_id, name=run.name, state=run.state, received=run.received,
        started=run.started, args=run.args, kwargs=run.kwargs, eta=run.eta, expires=run.expires,
        retries=run.retries, worker=run.worker, result=run.result, exception=run.exception,
        timestamp=_timestamp(run), runtime=run.runtime, traceback=run.traceback,
        routing_key=run.queue, root=run.root_id, root_id=run.root_id, parent=run.parent_id,
        parent_id=run.parent_id, children=[],
        **{key: run.times.get(key) for key in ("succeeded", "failed", "retried", "revoked")},
    )  # fmt: skip
    elapsed = now - run.started if run.running and run.started is not None else None
    doc["watchdog"] = {
        "health": verdict.health, "reason": verdict.reason,
        "last_heartbeat": run.last_heartbeat, "last_progress": run.last_progress,
        "step": run.step, "step_started": run.step_started, "step_timeout": run.step_timeout,
        "processed": run.processed, "total": run.total, "details": dict(run.details),
        "deliveries": run.deliveries, "pid": run.pid, "cpu": judged.cpu,
        "watched": run.watched, "running": run.running, "elapsed": elapsed,
        "deadline": run.deadline, "copies": judged.copies, "queue": run.queue,
        "outcome": run.outcome, "owner": policy.owner, "runbook": policy.runbook,
        "failure": failure_of(run),
    }  # fmt: skip
    return doc


def failure_of(run: Run) -> dict[str, Any] | None:
    """How it failed, in a plain bucket; a retry chain's first error beside its last."""
    if not (run.reason or run.first_error):
        return None
    return {
        "reason": run.reason, "last_error": run.exception,
        "first_error": run.first_error, "first_reason": run.first_reason,
        "first_error_at": run.first_error_at,
    }  # fmt: skip


def tasks_doc(
    store: Store, wd: Watchdog, *, state: str | None = None, taskname: str | None = None,
    workername: str | None = None, limit: int | None = None, health: str | None = None,
    now: float | None = None, offset: int = 0, sort_by: str | None = None,
    received_start: float | None = None, received_end: float | None = None,
    search: str | None = None,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Running runs (most overdue first), then recently finished ones (newest first).

    Flower's ``/api/tasks`` parameters: ``offset`` skips that many matches, ``sort_by`` (one
    of :data:`SORT_KEYS`, ``-`` first for descending) replaces our order, ``received_start``
    and ``received_end`` (epoch seconds) bound when a task was received, ``search`` is
    Flower's query language (:mod:`.search`). A bad ``sort_by`` or ``search`` raises
    ValueError before anything is read.
    """
    check_sort(sort_by)
    matches_search = compile_search(search) if search else None
    scene = _Scene(store, wd, now)
    offset = max(offset, 0)
    # Without a sort the first matches are the answer: stop once we have them; without a
    # filter either, read no more runs than that (plus one finished per running run, as a
    # finished run whose task runs again now is skipped: its running entry tells more).
    enough = None if sort_by or limit is None else offset + limit
    filtered = any((state, taskname, workername, health, search, received_start, received_end))
    running = _judge_running(store, scene, None if filtered else enough)
    scan = FINISHED_SCAN if enough is None or filtered else enough + len(running)
    finished = (
        scene.judge(run)  # lazily: a page of 10 judges 10 runs
        for run in store.runs.finished(limit=min(scan, FINISHED_SCAN))
        if run.task_id not in scene.copies
    )
    entries: list[tuple[str, dict[str, Any]]] = []
    seen: Counter[str] = Counter()
    for judged in itertools.chain(running, finished):
        run = judged.run
        if not (
            one_of(run.state, state)
            and matches(run.name, taskname)
            and matches(run.worker, workername)
            and one_of(judged.verdict.health, health)
            and received_within(
                received_at(run.received, run.started), received_start, received_end
            )
        ):
            continue
        doc = flower_task(judged, scene.now)
        if matches_search is not None and not matches_search(doc):
            continue
        seen[run.task_id] += 1
        n = seen[run.task_id]
        entries.append((run.task_id if n == 1 else f"{run.task_id}#{n}", doc))
        if enough is not None and len(entries) >= enough:
            break
    if sort_by:
        sort_entries(entries, sort_by)
    end = None if limit is None else offset + limit
    return dict(entries[offset:end])


def resolve_task_id(store: Store, task_id_or_prefix: str, retention: float) -> str:
    """The full task id for an id or a unique prefix, or :class:`TaskLookupError`."""
    wanted = task_id_or_prefix.strip()
    if not wanted:
        raise TaskLookupError("a task id (or a unique prefix of one) is required")
    if store.runs.of_task(wanted):
        return wanted
    missing = (
        f"no task with id or prefix {wanted!r} (unknown, or finished more than "
        f"watchdog_retention={retention:g} s ago)"
    )
    return unique_id(wanted, store.runs.find_task_ids(wanted, limit=10), "task", missing)


def task_doc(
    store: Store, wd: Watchdog, task_id_or_prefix: str, *, now: float | None = None
) -> dict[str, Any]:
    """Flower's ``/api/task/info/<id>``; ``watchdog.runs`` lists every run of a duplicate."""
    task_id = resolve_task_id(store, task_id_or_prefix, wd.settings.retention)
    scene = _Scene(store, wd, now)
    runs = store.runs.of_task(task_id)
    scene.copies.update(run.task_id for run in runs if run.running)
    scene.learn(store, {run.name for run in runs if run.running})
    judged = [scene.judge(run) for run in runs]
    if not judged:  # expired between the lookup and the read
        raise TaskLookupError(f"task {task_id!r} is no longer recorded")
    worst = max(judged, key=lambda j: _severity(j.verdict.health))
    doc = flower_task(worst, scene.now)
    doc["watchdog"]["runs"] = [_run_summary(j, scene.now) for j in judged]
    return doc


def _run_summary(judged: Judged, now: float) -> dict[str, Any]:
    wd = flower_task(judged, now)["watchdog"]
    keys = ("health", "reason", "pid", "cpu", "step", "processed", "total", "last_heartbeat",
            "last_progress", "elapsed")  # fmt: skip
    run = judged.run
    return {"worker": run.worker, "state": run.state, "started": run.started} | {
        key: wd[key] for key in keys
    }


def _severity(health: str) -> int:
    order = ("ok", "slow", "duplicate", "overtime", "stuck", "poison", "lost")
    return order.index(health) if health in order else 0


# -- workers -------------------------------------------------------------------------------


def _active_entry(a: ActiveRequest, hostname: str) -> dict[str, Any]:
    """An entry of Celery's ``inspect().active()``, as the worker's snapshot saw it."""
    return {
        "id": a.task_id, "name": a.name, "args": a.args, "kwargs": a.kwargs, "type": a.name,
        "hostname": hostname, "time_start": a.started, "acknowledged": None,
        "delivery_info": None, "worker_pid": a.pid, "watchdog": {"cpu": a.cpu},
    }  # fmt: skip


def flower_worker(worker: WorkerInfo, now: float) -> dict[str, Any]:
    """One worker as Flower's ``/api/workers`` entry (the parts a snapshot can fill)."""
    return {
        "stats": {
            "pid": worker.pid,
            "pool": {"max-concurrency": worker.concurrency, "processes": list(worker.processes)},
            "sw_ver": worker.software.get("celery"),
            "total": dict(worker.totals),
        },
        "registered": list(worker.registered),
        "active": [_active_entry(a, worker.hostname) for a in worker.active],
        "active_queues": [{"name": q, "routing_key": q} for q in worker.queues],
        "timestamp": worker.last_seen,
        "watchdog": {
            "online": worker.online,
            "last_seen": worker.last_seen,
            "age": max(0.0, now - worker.last_seen),
            "pool": worker.pool,
            "software": dict(worker.software),
            **dict(worker.watchdog),
        },
    }


def workers_doc(store: Store, *, now: float | None = None) -> dict[str, dict[str, Any]]:
    """Every worker seen in the last day, newest report first; ``watchdog.online`` says alive,
    ``watchdog.errors`` the watchdog's own errors there (kind -> count in the last hour, last)."""
    now = store.now() if now is None else now
    errors = store.workers.faults(now)
    docs = {}
    for w in store.workers.all():
        doc = docs[w.hostname] = flower_worker(w, now)
        doc["watchdog"]["errors"] = errors.get(w.hostname, {})
    return docs

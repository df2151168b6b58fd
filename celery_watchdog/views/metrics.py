"""The figures ``/metrics`` serves, as plain data: metric families built from the documents.

Pure: every builder takes documents already read (the status document, worker records, the
queue documents of ``celery watchdog queues --json``, incidents) and returns :class:`Family`
objects; :mod:`..http.metrics` reads the store at scrape time and turns them into
prometheus-client families. Nothing here keeps state between scrapes, so replicas agree.

Names follow celery-exporter (danihodovic/celery-exporter, ``src/exporter.py``) where the
meaning is the same, so its dashboards keep working; ours start with ``celery_watchdog_``.
What is served differently from celery-exporter, and why:

- ``celery_task_started_total{name,hostname}`` is the worker's own counter of tasks it began
  (Celery's ``stats()["total"]``, from its snapshot): a true counter, reset when the worker
  restarts (``rate()`` handles that).
- ``celery_task_{succeeded,failed,retried,revoked}_total{name}`` and the histogram
  ``celery_task_runtime{name}`` count every run since the first one the watchdog recorded
  (kept 30 days after a name's last run), per task name only: the totals are not kept per
  worker or queue. The histogram has prometheus-client's default bounds; the store counts
  runtimes in 10 %-wide buckets, each counted under the bounds its middle is within, so a
  bound is right to 10 %.
- ``hostname`` is Celery's whole node name (``celery@host``), not only the part after ``@``:
  two workers on one host stay two series, and a counter never sums two processes.
- ``celery_active_consumer_count`` is served for every broker, counted from the workers'
  snapshots (on RabbitMQ, celery-exporter asks the broker; a Celery worker is one consumer).

Label values a task controls (task names, queue names, host names) are made one printable
line (:func:`..model.humanize.cut`: no lone surrogate reaches the encoder) and capped in
number: the :data:`TASK_NAMES_MAX` most recently seen task names, the :data:`QUEUES_MAX`
deepest queues; the rest are summed under ``"other"``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..model.humanize import cut
from ..model.records import WorkerInfo
from ..store.incidents import IncidentDoc
from .documents import HEALTHS

TASK_NAMES_MAX = 500
QUEUES_MAX = 200
HOSTS_MAX = 1000
INCIDENTS_READ = 1000  # open incidents read one by one; beyond, counted under kind "other"
LABEL_CHARS = 200
OTHER = "other"
PERCENTILES = (("p50", "p50_runtime"), ("p95", "p95_runtime"))


def label(value: object) -> str:
    """A label value: one printable line, cut. Prometheus-client escapes quotes, backslashes
    and newlines, but a lone surrogate would crash its UTF-8 encoder: it becomes ``\\udc80``."""
    return cut(value, LABEL_CHARS)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass
class Family:
    """One metric family: its samples keyed by label values (already made safe)."""

    name: str
    kind: Literal["gauge", "counter"]
    help: str
    labels: tuple[str, ...] = ()
    samples: dict[tuple[str, ...], float] = field(default_factory=dict)

    def add(
        self, value: Any, *labels: object, combine: Callable[[float, float], float] | None = None
    ) -> None:
        """Add a sample; one that lands on label values already taken (two names cut to the
        same line, names summed under "other") is combined, by default summed."""
        number = _finite(value)
        if number is None:
            return
        key = tuple(label(v) for v in labels)
        assert len(key) == len(self.labels), (self.name, key)
        if key in self.samples:
            number = (combine or operator.add)(self.samples[key], number)
        self.samples[key] = number


class Cap:
    """Keeps the first ``limit`` of ``ranked`` as themselves; every other value is "other".

    Compared as label values: a name the recorder stored with its lone surrogate escaped and
    the same name raw from a worker's snapshot are one task."""

    def __init__(self, ranked: Iterable[object], limit: int) -> None:
        self.kept: set[str] = set()
        for value in ranked:
            if len(self.kept) >= limit:
                break
            self.kept.add(label(value))

    def __call__(self, value: object) -> str:
        shown = label(value)
        return shown if shown in self.kept else OTHER


# -- per task name, from the status document -----------------------------------------------


def task_families(status: Mapping[str, Any], names: Cap) -> list[Family]:
    """Running runs by the one judge's verdict, last success, outcomes and runtimes per name."""
    now = float(status["timestamp"])
    runs = Family("celery_watchdog_runs", "gauge",
                  "Runs in progress by health, as the watchdog judges them now "
                  "(ok, slow, stuck, overtime, lost, poison, duplicate; absent: none).",
                  ("task", "health"))  # fmt: skip
    last_success = Family("celery_watchdog_task_last_success_seconds", "gauge",
                          "Seconds since a run of this task last succeeded "
                          "(names kept 7 days after their last run).", ("task",))  # fmt: skip
    outcomes = Family("celery_watchdog_task_outcomes_last_hour", "gauge",
                      "Runs of this task that ended in the last hour, by outcome (a sliding "
                      "window, not a counter).", ("task", "outcome"))  # fmt: skip
    runtime = Family("celery_watchdog_task_runtime_seconds", "gauge",
                     "Runtime percentiles over the last 1000 runs of this task (not a histogram: "
                     "the store keeps recent runtimes, not cumulative buckets).",
                     ("task", "percentile"))  # fmt: skip
    streak = Family("celery_watchdog_task_failing_streak", "gauge",
                    "Failures in a row since this task last succeeded (only when > 0).",
                    ("task",))  # fmt: skip
    for name, doc in status.get("tasks", {}).items():
        task = names(name)
        for health in HEALTHS:  # only the healths present: 7 series x 500 names is a lot
            if doc.get("health", {}).get(health):
                runs.add(doc["health"][health], task, health)
        for outcome, n in doc.get("counts_1h", {}).items():
            outcomes.add(n, task, outcome)
        if task == OTHER:
            continue  # a time or a percentile of many names summed means nothing
        success = _finite(doc.get("last_success"))
        if success is not None:
            last_success.add(max(0.0, now - success), task)
        for percentile, key in PERCENTILES:
            runtime.add(doc.get(key), task, percentile)
        if doc.get("failing_streak"):
            streak.add(doc["failing_streak"], task)
    return [runs, last_success, outcomes, runtime, streak]


def watchdog_families(status: Mapping[str, Any], check_interval: float) -> list[Family]:
    """The watchdog's own state from the status document: its last pass, blindness, its
    errors, dead letters and alert delivery per channel."""
    now = float(status["timestamp"])
    wd = status["watchdog"]
    last_pass = Family("celery_watchdog_monitor_last_pass_seconds", "gauge",
                       "Seconds since the monitor's last completed pass (absent: never).",
                       )  # fmt: skip
    interval = Family("celery_watchdog_monitor_check_interval_seconds", "gauge",
                      "How often the monitor should pass (watchdog_check_interval).")  # fmt: skip
    blind = Family("celery_watchdog_monitor_blind", "gauge",
                   "1 while the watchdog cannot see (no recent pass, or worker reports "
                   "stopped), else 0.")  # fmt: skip
    dead = Family("celery_watchdog_dead_letters", "gauge", "Messages in the dead-letter queue.")
    errors = Family("celery_watchdog_errors_last_hour", "gauge",
                    "The watchdog's own errors in the last hour, per source (worker) and "
                    "kind (a sliding window, not a counter).", ("source", "kind"))  # fmt: skip
    failures = Family("celery_watchdog_alert_delivery_failures", "counter",
                      "Alert deliveries that failed, per channel (kept 7 days after the "
                      "channel's last delivery).", ("channel",))  # fmt: skip
    delivered = Family("celery_watchdog_alert_deliveries", "counter",
                       "Alert deliveries that succeeded, per channel.",
                       ("channel",))  # fmt: skip
    channel_ok = Family("celery_watchdog_alert_channel_ok", "gauge",
                        "1 when the channel's last delivery succeeded, else 0.",
                        ("channel",))  # fmt: skip
    at = _finite(wd.get("last_pass"))
    if at is not None:
        last_pass.add(max(0.0, now - at))
    interval.add(check_interval)
    blind.add(1 if wd.get("blind") else 0)
    dead.add(wd.get("dead_letters"))
    for e in wd.get("errors", ()):
        errors.add(e.get("count_1h"), e.get("source"), e.get("kind"))
    for ch in wd.get("alert_channels", ()):
        failures.add(ch.get("failed"), ch.get("channel"))
        delivered.add(ch.get("delivered"), ch.get("channel"))
        channel_ok.add(1 if ch.get("ok") else 0, ch.get("channel"), combine=min)
    return [last_pass, interval, blind, dead, errors, failures, delivered, channel_ok]


# -- workers -------------------------------------------------------------------------------


def worker_families(workers: Sequence[WorkerInfo], names: Cap) -> list[Family]:
    """celery-exporter's worker gauges, and the workers' own started-task counters."""
    up = Family("celery_worker_up", "gauge",
                "Indicates if a worker has recently sent a heartbeat (its snapshot is fresh).",
                ("hostname",))  # fmt: skip
    active = Family("celery_worker_tasks_active", "gauge",
                    "The number of tasks the worker is currently processing",
                    ("hostname",))  # fmt: skip
    started = Family("celery_task_started", "counter",
                     "Tasks the worker began executing since it started (its own count, "
                     "Celery's stats()['total']).", ("name", "hostname"))  # fmt: skip
    hosts = Cap((w.hostname for w in workers), HOSTS_MAX)  # newest report first
    for w in workers:
        host = hosts(w.hostname)
        up.add(1 if w.online else 0, host, combine=max)
        active.add(len(w.active) if w.online else 0, host)
        if not isinstance(w.totals, Mapping):
            continue
        for name, n in w.totals.items():
            started.add(n, names(str(name)), host)
    return [up, active, started]


# -- queues, from the documents of ``celery watchdog queues --json`` -----------------------


def queue_families(
    docs: Sequence[Mapping[str, Any]], workers: Sequence[WorkerInfo]
) -> list[Family]:
    """Depth, oldest waiting message, consumers and processes per queue."""
    length = Family("celery_queue_length", "gauge", "The number of message in broker queue.",
                    ("queue_name",))  # fmt: skip
    consumers = Family("celery_active_consumer_count", "gauge",
                       "The number of active consumer in broker queue (workers consuming it, "
                       "from their snapshots).", ("queue_name",))  # fmt: skip
    worker_count = Family("celery_active_worker_count", "gauge",
                          "The number of active workers in broker queue.",
                          ("queue_name",))  # fmt: skip
    processes = Family("celery_active_process_count", "gauge",
                       "The number of active processes in broker queue. Each worker may have "
                       "more than one process.", ("queue_name",))  # fmt: skip
    oldest = Family("celery_watchdog_queue_oldest_age_seconds", "gauge",
                    "Age of the oldest waiting message (0 when none waits; absent when "
                    "unknown).", ("queue_name",))  # fmt: skip
    lower = Family("celery_watchdog_queue_oldest_age_is_lower_bound", "gauge",
                   "1 when the oldest age is counted from when the watchdog first saw the "
                   "message (it carried no publish stamp), else 0.", ("queue_name",))  # fmt: skip
    reserved = Family("celery_watchdog_queue_reserved", "gauge",
                      "Messages workers took from the queue and have not acknowledged.",
                      ("queue_name",))  # fmt: skip
    concurrency = {w.hostname: w.concurrency or 0 for w in workers if w.online}
    ranked = sorted(docs, key=lambda d: (-(_finite(d.get("messages")) or 0), str(d.get("name"))))
    queues = Cap((str(d.get("name")) for d in ranked), QUEUES_MAX)
    for d in docs:
        if d.get("error"):
            continue  # unread: no figure rather than a wrong zero (counted as a scrape error)
        name = queues(str(d.get("name")))
        who = [str(c.get("worker")) for c in d.get("consumers", ())]
        length.add(d.get("messages"), name)
        consumers.add(len(who), name)
        worker_count.add(len(who), name)
        processes.add(sum(concurrency.get(w, 0) for w in who), name)
        reserved.add(d.get("reserved"), name)
        age = _finite(d.get("oldest_age"))
        if age is None and not d.get("messages"):
            age = 0.0
        if age is not None:
            oldest.add(age, name, combine=max)
            lower.add(1 if d.get("oldest_age_is_lower_bound") else 0, name, combine=max)
    return [length, consumers, worker_count, processes, oldest, lower, reserved]


def queue_errors(docs: Sequence[Mapping[str, Any]]) -> int:
    """Queues the broker could not be asked about."""
    return sum(1 for d in docs if d.get("error"))


# -- incidents and quarantine --------------------------------------------------------------


def incident_families(incidents: Sequence[IncidentDoc], total: int) -> list[Family]:
    """Unresolved incidents (open, acknowledged or snoozed) by kind and severity."""
    family = Family("celery_watchdog_incidents_open", "gauge",
                    "Incidents not resolved yet (open, acknowledged or snoozed), by kind and "
                    "severity.", ("kind", "severity"))  # fmt: skip
    for inc in incidents:
        if inc.active:
            family.add(1, inc.kind, inc.severity)
    beyond = total - len(incidents)
    if beyond > 0:
        family.add(beyond, OTHER, OTHER)
    return [family]


def quarantine_family(count: int) -> Family:
    family = Family("celery_watchdog_quarantined_fingerprints", "gauge",
                    "Inputs that failed the same way again and again, parked until released.",
                    )  # fmt: skip
    family.add(count)
    return family


def scrape_families(
    errors: Mapping[str, int], parts: Iterable[str], seconds: float
) -> list[Family]:
    """How this scrape went: a failing part is skipped and counted, never a failed scrape."""
    errs = Family("celery_watchdog_scrape_errors", "gauge",
                  "Parts of this scrape that could not be read (their metrics are missing); "
                  "queues the broker could not be asked about count under part=\"queues\".",
                  ("part",))  # fmt: skip
    for part in parts:
        errs.add(errors.get(part, 0), part)
    took = Family("celery_watchdog_scrape_duration_seconds", "gauge",
                  "How long reading this scrape's figures took.")  # fmt: skip
    took.add(seconds)
    return [errs, took]

"""``/metrics``' counters and histogram of task runs since the first one the watchdog recorded
(celery-exporter's ``celery_task_*_total`` and ``celery_task_runtime``), from each task name's
totals (``store.names.totals``). Pure, like :mod:`.metrics`, whose :class:`~.metrics.Family`
and label rules they share.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..model.normal import NameTotals
from .metrics import Cap, Family, label

HISTOGRAM_NAMES_MAX = 100  # task names with a runtime histogram of their own (most recent)
# prometheus-client's default histogram bounds (celery-exporter's too), in seconds.
RUNTIME_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                  10.0)  # fmt: skip
# Outcome in the store -> celery-exporter's counter (served with the _total suffix).
TOTALS = (("succeeded", "celery_task_succeeded", "Sucessfully processed tasks."),
          ("failed", "celery_task_failed", "Failed tasks."),
          ("retried", "celery_task_retried", "Retried tasks."),
          ("revoked", "celery_task_revoked", "Revoked tasks."),
          ("lost", "celery_watchdog_task_lost",
           "Runs whose worker or child died while running them."))  # fmt: skip


@dataclass
class Histogram:
    """A histogram family: per label values, cumulative counts under :data:`RUNTIME_BOUNDS`
    (the last for +Inf) and the sum."""

    name: str
    help: str
    labels: tuple[str, ...]
    bounds: tuple[float, ...]
    samples: dict[tuple[str, ...], tuple[list[int], float]] = field(default_factory=dict)


def total_families(
    totals: Mapping[str, NameTotals], names: Cap, histogram_names: Cap
) -> list[Family | Histogram]:
    """celery-exporter's task counters and runtime histogram, from the totals since the first
    run of each name (names past the caps summed as "other": 17 lines a name make the
    histogram the biggest family, so it keeps fewer names, :data:`HISTOGRAM_NAMES_MAX`; a sum
    of histograms is still a true histogram)."""
    counters = {outcome: Family(name, "counter", text, ("name",))
                for outcome, name, text in TOTALS}  # fmt: skip
    runtime = Histogram("celery_task_runtime", "Histogram of task runtime measurements.",
                        ("name",), RUNTIME_BOUNDS)  # fmt: skip
    for name, t in totals.items():
        task = names(name)
        for outcome, family in counters.items():
            if t.outcomes.get(outcome):  # as celery-exporter's: a series from its first run
                family.add(t.outcomes[outcome], task)
        counts, total = t.histogram(RUNTIME_BOUNDS)
        key = (label(histogram_names(name)),)
        if key in runtime.samples:  # names summed under "other"
            old, old_total = runtime.samples[key]
            counts, total = [a + b for a, b in zip(old, counts, strict=True)], old_total + total
        runtime.samples[key] = (counts, total)
    return [*counters.values(), runtime]

"""``GET /metrics``: Prometheus text, read from the store at scrape time.

A prometheus-client custom collector builds every family when Prometheus asks, from the same
documents the CLI prints (``status --json``, ``queues --json``): the server holds no counters
of its own, so replicas behind a load balancer serve the same figures. Each request gets a
fresh :class:`~prometheus_client.CollectorRegistry` (never the process-wide default one, so
two apps, or two tests, never mix). What is served, and how it differs from celery-exporter,
is in :mod:`..views.metrics`.

A scrape never fails because one part does: a part that raises (an unreadable record, a broker
that does not answer) is logged and skipped, and ``celery_watchdog_scrape_errors{part}``
counts it, so an alert can tell "no figure" from "zero".
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..model.records import WorkerInfo
from ..monitor.queues import read as read_queues
from ..store import Store
from ..views import counters
from ..views import metrics as figures
from ..views.status import status_doc
from .context import ServerContext, context_of
from .security import require_read

log = logging.getLogger(__name__)

PARTS = ("clock", "status", "workers", "queues", "incidents", "quarantine")


class Scrape:
    """One scrape: each part read on its own, at one ``now``; a part that raises is logged,
    skipped and counted, so it costs only its own figures."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx, self.wd = ctx, ctx.wd
        self.store: Store  # taken in the clock part: even that may fail
        self.now = 0.0
        self.names = figures.Cap((), 0)  # until read: every name is "other", never unbounded
        self.workers: list[WorkerInfo] = []
        self.errors: Counter[str] = Counter()
        self.families: list[figures.Family | counters.Histogram] = []

    def families_now(self) -> list[figures.Family | counters.Histogram]:
        started = time.perf_counter()
        if self._part("clock", self._clock):
            self._part("status", self._status)
            if self._part("workers", self._workers):
                self._part("queues", self._queues)
            else:
                self.errors["queues"] += 1  # a queue's consumers come from the snapshots
            self._part("incidents", self._incidents)
            self._part("quarantine", self._quarantine)
        else:  # no Redis: nothing else can be read either
            self.errors.update(p for p in PARTS if p != "clock")
        took = time.perf_counter() - started
        return [*self.families, *figures.scrape_families(self.errors, PARTS, took)]

    def _part(
        self, name: str, read: Callable[[], Iterable[figures.Family | counters.Histogram]]
    ) -> bool:
        try:
            self.families.extend(read())
            return True
        except Exception:
            log.warning("/metrics: cannot read the %s part; its figures are skipped", name,
                        exc_info=True)  # fmt: skip
            self.errors[name] += 1
            return False

    def _clock(self) -> list[figures.Family]:
        self.store = self.ctx.store()
        self.now = self.store.now()  # the one clock, for every part of this scrape
        return []

    def _status(self) -> list[figures.Family | counters.Histogram]:
        most = figures.TASK_NAMES_MAX
        self.names = figures.Cap(self.store.names.recent(most), most)
        doc = status_doc(self.store, self.wd, now=self.now)
        totals = self.store.names.totals(list(doc.get("tasks", {})))
        histogram_names = figures.Cap(self.store.names.recent(counters.HISTOGRAM_NAMES_MAX),
                                      counters.HISTOGRAM_NAMES_MAX)  # fmt: skip
        return [*figures.task_families(doc, self.names),
                *counters.total_families(totals, self.names, histogram_names),
                *figures.watchdog_families(doc, self.wd.settings.check_interval)]  # fmt: skip

    def _workers(self) -> list[figures.Family]:
        self.workers = self.store.workers.all()
        return figures.worker_families(self.workers, self.names)

    def _queues(self) -> list[figures.Family]:
        # The very documents ``celery watchdog queues --json`` prints (read from the broker
        # now), so the page, the CLI and Prometheus never disagree.
        # Who waits is not a metric: only the heads are read (what a monitor pass reads).
        docs = read_queues(self.wd, self.store, self.now, self.workers, sample_all=False)
        self.errors["queues"] += figures.queue_errors(docs)
        return figures.queue_families(docs, self.workers)

    def _incidents(self) -> list[figures.Family]:
        incidents = self.store.incidents
        return figures.incident_families(incidents.active(figures.INCIDENTS_READ),
                                         incidents.active_count())  # fmt: skip

    def _quarantine(self) -> list[figures.Family]:
        return [figures.quarantine_family(len(self.store.quarantine.all()))]


def gather(ctx: ServerContext) -> list[figures.Family | counters.Histogram]:
    """Every family of one scrape (:class:`Scrape`)."""
    return Scrape(ctx).families_now()


def to_prometheus(family: figures.Family | counters.Histogram) -> Metric:
    """A :class:`~.views.metrics.Family` as prometheus-client's family of that type."""
    if isinstance(family, counters.Histogram):
        histogram = HistogramMetricFamily(family.name, family.help, labels=family.labels)
        bounds = [*(repr(float(b)) for b in family.bounds), "+Inf"]
        for labels, (counts, total) in family.samples.items():
            histogram.add_metric(list(labels), list(zip(bounds, counts, strict=True)), total)
        return histogram
    kind = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
    metric = kind(family.name, family.help, labels=family.labels)
    for labels, value in family.samples.items():
        metric.add_metric(list(labels), value)
    return metric


class StoreCollector(Collector):
    """Reads the store each time it is collected; keeps nothing between scrapes."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        for family in gather(self.ctx):
            yield to_prometheus(family)


def registry_for(ctx: ServerContext) -> CollectorRegistry:
    """A registry of its own (never prometheus-client's global one) holding our collector;
    ``auto_describe`` stays off, so registering it reads nothing."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(ctx))
    return registry


def metrics(request: Request) -> Response:
    """Prometheus text exposition. A plain function: Starlette runs it in its thread pool,
    so the blocking store reads never stall the event loop."""
    require_read(request)
    body = generate_latest(registry_for(context_of(request)))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def metrics_routes() -> list[BaseRoute]:
    """The routes :func:`.app.create_app` mounts."""
    return [Route("/metrics", metrics, methods=["GET"])]

"""``/healthcheck`` (Flower's: ``OK`` while the server answers) and ``/healthz`` (what a load
balancer or an uptime checker polls): 200 ``{"ok": true}`` only while the monitor is passing
and every queue marked ``critical`` in ``watchdog_queue_policies`` has a live worker
consuming it; else 503 ``{"ok": false, "reasons": [...]}``. Both are open (no token): a
checker rarely carries one, and the reasons name only queues and the monitor."""

from __future__ import annotations

from collections.abc import Sequence

import redis
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from ..model import redis_errors
from ..model.records import WorkerInfo
from ..model.rules import blindness
from ..runtime import Watchdog
from ..store import Store
from .context import context_of
from .responses import JSON


def healthcheck(request: Request) -> Response:
    return PlainTextResponse("OK")


def unhealthy_reasons(wd: Watchdog, store: Store) -> list[str]:
    """Why the cluster is not healthy, in words; empty when it is."""
    now = store.now()
    evidence = store.workers.evidence()
    # The same judgement as `status` ("nobody is watching"), from the same model function.
    blind = blindness(store.monitor.last_pass(), now, wd.settings.check_interval,
                      evidence.outage)  # fmt: skip
    reasons = [f"the monitor is not passing: {blind}"] if blind else []
    return reasons + unserved_critical_queues(wd, store.workers.all())


def unserved_critical_queues(wd: Watchdog, workers: Sequence[WorkerInfo]) -> list[str]:
    served = {q for w in workers if w.online for q in w.queues}
    return [
        f"critical queue {name!r} has no live worker consuming it"
        for name, policy in sorted(wd.settings.queue_policies.items())
        if policy.critical and name not in served
    ]


def healthz(request: Request) -> Response:
    ctx = context_of(request)
    try:
        reasons = unhealthy_reasons(ctx.wd, ctx.store())
    except redis.RedisError as exc:
        reasons = [redis_errors.describe(exc)]
    if reasons:
        return JSON({"ok": False, "reasons": reasons}, status_code=503)
    return JSON({"ok": True})


def health_routes() -> list[BaseRoute]:
    return [
        Route("/healthcheck", healthcheck, methods=["GET", "HEAD"]),
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
    ]

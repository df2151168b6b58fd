"""Flower's HTTP API at Flower's paths, with Flower's shapes and query parameters, so a script
written against Flower works unchanged; answered from the watchdog's records (no Celery
events needed), with each task's verdict added under ``watchdog``.

``GET /api/tasks`` (``limit``, ``offset``, ``sort_by`` (``-`` for descending), ``workername``,
``taskname``, ``state``, ``received_start``/``received_end`` (``%Y-%m-%d %H:%M``), ``search``;
ours: ``health``), ``/api/task/info/<id>``, ``/api/task/types``, ``/api/task/result/<id>``
(``timeout``), ``/api/workers`` (``workername``, ``status``), ``/api/queues/length`` and
``POST /api/task/revoke/<id>`` (``terminate``, ``signal``; the operator token).
"""

from __future__ import annotations

import contextlib
from typing import Any

from celery.backends.base import DisabledBackend
from celery.exceptions import TimeoutError as ResultTimeout
from celery.result import AsyncResult
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..operations.documents import queues_doc
from ..operations.revoke import MAX_ID, revoke
from ..views import documents as views
from ..views.flower_query import SearchSyntaxError
from . import audit, params
from .context import context_of
from .responses import JSON
from .results import result_doc
from .security import require_operator, require_read

RESULT_WAIT_MAX = 30.0  # seconds a result request may hold a server thread


def tasks(request: Request) -> Response:
    require_read(request)
    ctx, q = context_of(request), request.query_params
    store = ctx.store()
    try:
        doc = views.tasks_doc(
            store, ctx.wd, state=_all(params.text(q, "state")),
            taskname=_all(params.text(q, "taskname")),
            workername=_all(params.text(q, "workername")),
            health=params.text(q, "health"), limit=params.integer(q, "limit"),
            offset=params.integer(q, "offset") or 0, sort_by=params.text(q, "sort_by"),
            received_start=params.flower_time(q, "received_start"),
            received_end=params.flower_time(q, "received_end"),
            search=params.text(q, "search"),
        )  # fmt: skip
    except (SearchSyntaxError, ValueError) as exc:
        raise params.bad(str(exc)) from None
    return JSON(doc)


def _all(value: str | None) -> str | None:
    """Flower's pages send ``All`` for "no filter"."""
    return None if value in (None, "", "All") else value


def task_info(request: Request) -> Response:
    require_read(request)
    ctx = context_of(request)
    return JSON(views.task_doc(ctx.store(), ctx.wd, request.path_params["task_id"]))


def task_types(request: Request) -> Response:
    """The task names seen lately (Flower: the names its events showed)."""
    require_read(request)
    names = context_of(request).store().names.recent()
    return JSON({"task-types": sorted(n for n in names if n)})


def task_result(request: Request) -> Response:
    """The result backend's state and result, as Flower reads it (``AsyncResult``); 503 when
    the app has no result backend. The result is redacted like every argument."""
    require_read(request)
    ctx = context_of(request)
    task_id = request.path_params["task_id"]
    if not task_id or len(task_id) > MAX_ID or not task_id.isprintable():
        raise params.bad("a task id (printable, at most 255 characters) is required")
    timeout = params.seconds(request.query_params, "timeout", maximum=RESULT_WAIT_MAX)
    result = AsyncResult(task_id, app=ctx.app)
    if isinstance(result.backend, DisabledBackend):
        raise HTTPException(503, "the app has no result backend (result_backend is not set)")
    ready = result.ready()
    if timeout and not ready:
        # On a timeout, answer with the state as it is, as without a timeout.
        with contextlib.suppress(ResultTimeout):
            result.get(timeout=timeout, propagate=False, disable_sync_subtasks=False)
        ready = result.ready()
    return JSON(result_doc(task_id, result, ready, ctx.wd.redactor))


def workers(request: Request) -> Response:
    """Flower's ``/api/workers``; ``status=true``: only ``{hostname: alive}``; ``refresh`` is
    accepted and ignored (the workers' snapshots are always fresh)."""
    require_read(request)
    q = request.query_params
    status = params.flag(q, "status")
    params.flag(q, "refresh")
    name = params.text(q, "workername")
    docs = views.workers_doc(context_of(request).store())
    if status:
        return JSON({host: doc["watchdog"]["online"] for host, doc in docs.items()})
    if name:
        if name not in docs:
            raise HTTPException(404, f"Unknown worker '{name}'")
        return JSON({name: docs[name]})
    return JSON(docs)


def queue_lengths(request: Request) -> Response:
    require_read(request)
    ctx = context_of(request)
    store = ctx.store()
    return JSON(queues_doc(ctx.wd, store, store.now()))


async def task_revoke(request: Request) -> Response:
    """Flower's revoke: ``{"message": "Revoked '<id>'"}``; an audit line says who."""
    q = await params.post_params(request)
    by = require_operator(request)
    ctx = context_of(request)
    terminate = params.flag(q, "terminate")
    signal = params.text(q, "signal") or "SIGTERM"
    wanted = request.path_params["task_id"]

    def work() -> Any:
        return revoke(ctx.wd, ctx.store(), wanted, terminate=terminate, signal=signal)

    done = await run_in_threadpool(work)
    audit.record(by, "revoke", done.task_id, terminate=terminate, signal=done.signal,
                 known=done.known)  # fmt: skip
    return JSON({"message": f"Revoked '{done.task_id}'", "terminate": terminate,
                 "signal": done.signal})  # fmt: skip


def flower_routes() -> list[BaseRoute]:
    return [
        Route("/api/tasks", tasks, methods=["GET"]),
        Route("/api/task/info/{task_id:path}", task_info, methods=["GET"]),
        Route("/api/task/types", task_types, methods=["GET"]),
        Route("/api/task/result/{task_id:path}", task_result, methods=["GET"]),
        Route("/api/workers", workers, methods=["GET"]),
        Route("/api/queues/length", queue_lengths, methods=["GET"]),
        Route("/api/task/revoke/{task_id:path}", task_revoke, methods=["POST"]),
    ]

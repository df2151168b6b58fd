"""Our API under ``/api/watchdog/…``: each GET answers the document the CLI prints with
``--json`` for the same question (the same builder), each POST makes the change the CLI makes
(the same operation), after :func:`.security.require_operator`, with an audit line.

GET ``status``, ``queues``, ``schedules``, ``incidents`` (``all=true``: resolved too),
``incidents/<id>``, ``dlq`` (``task``, ``limit``), ``dlq/<id>``, ``pauses``, ``quarantine``,
``quarantine/<fp>``. POST ``incidents/<id>/ack|snooze|resolve`` (``note``; snooze: ``for``),
``dlq/<id>/replay`` (``dry_run``, ``queue``, ``force``), ``pause`` / ``resume`` (``task`` or
``queue``; pause: ``for``, ``note``), ``quarantine/<fp>/release``. Parameters come from the
query string, a form or a JSON object body. Ids may be unique prefixes, as in the CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .. import dlq as deadletters
from ..operations import incidents as incident_actions
from ..operations import pauses as pause_actions
from ..operations.documents import dead_letter, dlq_doc, queues_doc, schedules_doc
from ..operations.quarantine import release as release_input
from ..store import Store
from ..views.incidents import find_incident, incidents_doc
from ..views.pauses import pauses_doc
from ..views.quarantine import quarantine_doc, quarantined_doc
from ..views.status import status_doc
from . import audit, params
from .context import ServerContext, context_of
from .responses import JSON
from .security import require_operator, require_read

PREFIX = "/api/watchdog"
NOTE_CHARS = 500


# -- reads -----------------------------------------------------------------------------------


def _read(build: Callable[[ServerContext, Store, Request], Any]) -> Callable[[Request], Response]:
    """A GET endpoint: the read check, then the document from one store at one ``now``."""

    def endpoint(request: Request) -> Response:
        require_read(request)
        ctx = context_of(request)
        return JSON(build(ctx, ctx.store(), request))

    endpoint.__name__ = build.__name__
    return endpoint


def status(ctx: ServerContext, store: Store, request: Request) -> Any:
    return status_doc(store, ctx.wd)


def queues(ctx: ServerContext, store: Store, request: Request) -> Any:
    return queues_doc(ctx.wd, store, store.now())


def schedules(ctx: ServerContext, store: Store, request: Request) -> Any:
    return schedules_doc(ctx.wd, store, store.now())


def incidents(ctx: ServerContext, store: Store, request: Request) -> Any:
    show_all = params.flag(request.query_params, "all")
    return incidents_doc(store, store.now(), show_all=show_all)


def incident(ctx: ServerContext, store: Store, request: Request) -> Any:
    return find_incident(store, request.path_params["incident_id"]).as_dict()


def dlq(ctx: ServerContext, store: Store, request: Request) -> Any:
    q = request.query_params
    return dlq_doc(ctx.wd, store, task=params.text(q, "task"), limit=params.integer(q, "limit"))


def dlq_entry(ctx: ServerContext, store: Store, request: Request) -> Any:
    return dead_letter(store, request.path_params["entry_id"]).to_doc(ctx.wd.redactor)


def pauses(ctx: ServerContext, store: Store, request: Request) -> Any:
    return pauses_doc(store, store.now())


def quarantine(ctx: ServerContext, store: Store, request: Request) -> Any:
    return quarantine_doc(store, store.now())


def quarantined(ctx: ServerContext, store: Store, request: Request) -> Any:
    return quarantined_doc(store, request.path_params["fp"])


# -- changes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ask:
    """A change asked for: by whom, on what (the path's ids), with which parameters."""

    ctx: ServerContext
    store: Store
    path: Mapping[str, str]
    q: Mapping[str, str]
    by: str


Change = Callable[[Ask], dict[str, Any]]


def _change(action: str, work: Change) -> Callable[[Request], Any]:
    """A POST endpoint: parameters, the operator check, the change (in a worker thread: it
    talks to Redis and maybe the broker), an audit line, then ``{"ok": true, "target", …}``;
    a change that was tried and did not happen answers ``ok: false`` with its ``error`` and
    409 (refused as things stand) or 502 (the broker failed)."""

    async def endpoint(request: Request) -> Response:
        q = await params.post_params(request)
        by = require_operator(request)
        ctx = context_of(request)
        ask = Ask(ctx, ctx.store(), request.path_params, q, by)
        body = {"ok": True, **await run_in_threadpool(work, ask)}
        details = {k: body[k] for k in ("state", "until", "dry_run") if k in body}
        audit.record(by, action, str(body["target"]), ok=body["ok"], **details)
        status = 200 if body["ok"] else body.pop("status", 409)
        return JSON(body, status_code=status)

    endpoint.__name__ = action.replace("-", "_")
    return endpoint


def _note(q: Mapping[str, str]) -> str:
    note = params.text(q, "note") or ""
    if len(note) > NOTE_CHARS:
        raise params.bad(f"note: at most {NOTE_CHARS} characters")
    return note


def ack(ask: Ask) -> dict[str, Any]:
    done = incident_actions.change(
        ask.store, ask.path["incident_id"], "acknowledged", by=ask.by, note=_note(ask.q)
    )
    return {"target": done.incident.id, "state": done.state}


def snooze(ask: Ask) -> dict[str, Any]:
    for_ = params.text(ask.q, "for") or ""
    done = incident_actions.change(
        ask.store, ask.path["incident_id"], "snoozed", by=ask.by, note=_note(ask.q), for_=for_
    )
    return {"target": done.incident.id, "state": done.state, "until": done.until}


def resolve(ask: Ask) -> dict[str, Any]:
    found, notices = incident_actions.resolve(
        ask.ctx.wd, ask.store, ask.path["incident_id"], by=ask.by, note=_note(ask.q)
    )
    deliveries = [
        {"channel": d.channel, "ok": d.ok, "error": d.error} for n in notices for d in n.deliveries
    ]
    return {"target": found.id, "state": "resolved", "deliveries": deliveries}


def replay(ask: Ask) -> dict[str, Any]:
    """One entry replayed (a new task id) or, with ``dry_run``, what would be published."""
    dry_run = params.flag(ask.q, "dry_run")
    task_id = deadletters.resolve(ask.store, ask.path["entry_id"])
    results = deadletters.replay(
        ask.ctx.app, ask.store, [task_id], queue=params.text(ask.q, "queue") or None,
        dry_run=dry_run, force=params.flag(ask.q, "force"), now=ask.store.now(),
    )  # fmt: skip
    doc = {"target": task_id, "dry_run": dry_run, "results": [r.to_doc() for r in results]}
    failed = [r for r in results if not r.ok]
    if failed:
        status = 502 if failed[0].outcome == "failed" else 409
        doc.update(ok=False, error=failed[0].reason or failed[0].outcome, status=status)
    return doc


def _target(q: Mapping[str, str]) -> str:
    name = params.text(q, "task") or params.text(q, "name")
    return pause_actions.target(name, params.text(q, "queue"))


def pause(ask: Ask) -> dict[str, Any]:
    what = _target(ask.q)
    until = pause_actions.pause(
        ask.ctx.wd, ask.store, what, by=ask.by, for_=params.text(ask.q, "for"), note=_note(ask.q)
    )
    return {"target": what, "until": until}


def resume(ask: Ask) -> dict[str, Any]:
    what = _target(ask.q)
    done = pause_actions.resume(ask.ctx.wd, ask.store, what, by=ask.by)
    doc = {"target": what, **done}
    if done["failed"]:  # some held messages are back in line: resume again once it is fixed
        doc.update(ok=False, error=f"stopped at a failed publish: {done['failed']}", status=502)
    return doc


def release(ask: Ask) -> dict[str, Any]:
    return {"target": release_input(ask.store, ask.path["fp"], by=ask.by)}


def watchdog_routes() -> list[BaseRoute]:
    reads = [
        ("/status", status), ("/queues", queues), ("/schedules", schedules),
        ("/incidents", incidents), ("/incidents/{incident_id}", incident), ("/dlq", dlq),
        ("/dlq/{entry_id}", dlq_entry), ("/pauses", pauses), ("/quarantine", quarantine),
        ("/quarantine/{fp}", quarantined),
    ]  # fmt: skip
    changes = [
        ("/incidents/{incident_id}/ack", "incident-ack", ack),
        ("/incidents/{incident_id}/snooze", "incident-snooze", snooze),
        ("/incidents/{incident_id}/resolve", "incident-resolve", resolve),
        ("/dlq/{entry_id}/replay", "dlq-replay", replay),
        ("/pause", "pause", pause), ("/resume", "resume", resume),
        ("/quarantine/{fp}/release", "quarantine-release", release),
    ]  # fmt: skip
    return [
        *(Route(PREFIX + path, _read(build), methods=["GET"]) for path, build in reads),
        *(Route(PREFIX + path, _change(action, work), methods=["POST"])
          for path, action, work in changes),
    ]  # fmt: skip

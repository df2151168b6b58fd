"""The queues a Celery app declares, read from its configuration alone.

Read from ``app.conf`` rather than ``app.amqp.queues`` so that nothing is imported or built:
a string router names an import path of user code, and a callable router decides per task,
so both are skipped; a route's task-name key may be a glob, but the queue it names is plain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def queue_names(app: Any) -> list[str]:
    """Sorted, deduplicated names from ``task_queues``, ``task_default_queue`` and the
    queues named in ``task_routes`` (dicts, lists of dicts or of pairs)."""
    conf = app.conf
    found: set[str] = set()
    found.update(_declared(conf.get("task_queues")))
    default = conf.get("task_default_queue")
    if isinstance(default, str) and default:
        found.add(default)
    found.update(_routed(conf.get("task_routes")))
    return sorted(found)


def _declared(queues: Any) -> Iterable[str]:
    if not queues:
        return []
    if isinstance(queues, Mapping):  # the old {name: options} form
        return [name for name in queues if isinstance(name, str) and name]
    if isinstance(queues, str):
        queues = [queues]
    return [name for queue in queues if (name := _queue_name(queue))]


def _routed(routes: Any) -> list[str]:
    # celery.app.routes.prepare: one route or a list/tuple of them; a Mapping or a list/tuple
    # of (pattern, route) pairs is a MapRoute; anything else (a string, a callable) is a router.
    if not routes:
        return []
    if not isinstance(routes, (list, tuple)):
        routes = [routes]
    found: list[str] = []
    for route in routes:
        if isinstance(route, Mapping):
            pairs: Iterable[Any] = route.items()
        elif isinstance(route, (list, tuple)):
            pairs = route
        else:
            continue
        for pair in pairs:
            if isinstance(pair, (list, tuple)) and len(pair) == 2:
                found.extend(_destination(pair[1]))
    return found


def _destination(target: Any) -> list[str]:
    """MapRoute's value: a dict whose ``queue`` is a name or a Queue, a bare name, a Queue."""
    if isinstance(target, Mapping):
        target = target.get("queue")
    name = _queue_name(target)
    return [name] if name else []


def _queue_name(queue: Any) -> str | None:
    name = queue if isinstance(queue, str) else getattr(queue, "name", None)
    return name if isinstance(name, str) and name else None

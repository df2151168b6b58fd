"""A person revokes a task (Flower's ``POST /api/task/revoke/<id>``, ``watchdog revoke``).

Celery's own revoke: every worker remembers the id and discards its message when it comes;
with ``terminate`` the worker running it signals the child (prefork only). The worker's
``task_revoked`` signal then records the run's end, so ``tasks`` shows it REVOKED.
"""

from __future__ import annotations

from dataclasses import dataclass

from celery.platforms import signals

from ..model.ids import TaskLookupError
from ..runtime import Watchdog
from ..store import Store
from ..views.documents import resolve_task_id
from . import INVALID, Refused

MAX_ID = 255  # Celery's ids are 36 characters; a longer "id" is a mistake or an attack


@dataclass(frozen=True)
class Revoked:
    task_id: str
    terminate: bool
    signal: str
    known: bool  # the store had a record of it (else it may not have arrived yet)


def check_signal(signal: str) -> str:
    """The signal's canonical name (``TERM`` -> ``SIGTERM``), or :class:`Refused`: a bad name
    would otherwise only fail in the worker, where nobody sees it."""
    name = signal.strip().upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    try:
        signals.signum(name)
    except (AttributeError, TypeError, ValueError):
        why = f"signal: {signal!r} is not a signal name (SIGTERM, SIGKILL…)"
        raise Refused(why, INVALID) from None
    return name


def revoke(
    wd: Watchdog, store: Store, wanted: str, *, terminate: bool = False,
    signal: str = "SIGTERM",
) -> Revoked:  # fmt: skip
    """Revoke the task an id (or a unique prefix of a recorded one) names. An id the store
    does not know is revoked as given, as Flower does: it may simply not have arrived yet."""
    wanted = wanted.strip()
    if not wanted or len(wanted) > MAX_ID or not wanted.isprintable():
        raise Refused("a task id (printable, at most 255 characters) is required", INVALID)
    name = check_signal(signal)
    try:
        task_id, known = resolve_task_id(store, wanted, wd.settings.retention), True
    except TaskLookupError as exc:
        if exc.candidates:  # an ambiguous prefix: revoking the literal text would do nothing
            raise
        task_id, known = wanted, False
    wd.app.control.revoke(task_id, terminate=terminate, signal=name)
    return Revoked(task_id, terminate, name, known)

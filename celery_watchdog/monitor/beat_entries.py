"""Every entry beat runs, wherever it is kept: ``beat_schedule``, RedBeat's Redis, or
django-celery-beat's database.

The schedulers' own libraries read their entries (``RedBeatSchedulerEntry.from_key``,
``PeriodicTask.schedule``): the watchdog never parses their storage itself. A scheduler is read
when ``beat_scheduler`` names it, or, since beat's ``-S`` option is not visible here, when it is
installed and configured (``redbeat_redis_url``; ``django_celery_beat`` in Django's installed
apps). A scheduler that cannot be read adds a note, never an error: the other entries are still
checked.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from .. import faults

ONE_OFF = "one-off"  # django-celery-beat's clocked / one_off entries: no recurring due time


def entries(app: Celery) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """{entry name: {"task", "schedule", "source"}} of every enabled entry, and notes on what
    could not be read. ``beat_schedule`` entries win a name clash (beat merges them in)."""
    found: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    scheduler = str(app.conf.beat_scheduler or "")
    for reader in (_django, _redbeat):
        try:
            more = reader(app, scheduler)
        except Exception as exc:  # a broken scheduler store never stops the other checks
            note = f"{reader.__name__.strip('_')} beat entries not read: {faults.describe(exc)}"
            faults.report("schedules", exc, note)  # shown with the watchdog's own errors
            notes.append(note)
            continue
        found.update(more)
    for name, spec in (app.conf.beat_schedule or {}).items():
        if isinstance(spec, dict) and spec.get("task"):
            found[name] = {**spec, "source": "beat_schedule"}
    return found, notes


def _redbeat(app: Celery, scheduler: str) -> dict[str, dict[str, Any]]:
    wanted = "redbeat" in scheduler.lower()
    if not wanted and not app.conf.get("redbeat_redis_url"):
        return {}
    try:
        from redbeat.schedulers import (  # type: ignore[import-untyped]  # untyped library
            RedBeatSchedulerEntry,
            ensure_conf,
            get_redis,
        )
    except ImportError:
        if wanted:
            raise
        return {}
    conf = ensure_conf(app)
    out = {}
    for key in get_redis(app).zrange(conf.schedule_key, 0, -1):
        try:
            entry = RedBeatSchedulerEntry.from_key(key, app=app)
        except KeyError:  # removed between the two reads
            continue
        if entry.enabled:
            out[entry.name] = {"task": entry.task, "schedule": entry.schedule, "source": "redbeat"}
    return out


def _django(app: Celery, scheduler: str) -> dict[str, dict[str, Any]]:
    wanted = "django_celery_beat" in scheduler
    try:
        from django.apps import apps  # type: ignore[import-untyped]  # no django-stubs here
    except ImportError:
        if wanted:
            raise
        return {}
    if not apps.ready or not apps.is_installed("django_celery_beat"):
        if wanted:
            raise RuntimeError("Django is not set up in this process (django.setup())")
        return {}
    from django_celery_beat.models import PeriodicTask  # type: ignore[import-untyped]

    out = {}
    for task in PeriodicTask.objects.filter(enabled=True):
        if task.one_off or task.clocked_id:
            continue  # runs once at a time given, not on a schedule: nothing recurs to miss
        out[task.name] = {"task": task.task, "schedule": task.schedule, "source": "django"}
    return out

"""Beat entries kept outside ``beat_schedule`` are checked too: RedBeat's (in Redis, with a real
``celery beat -S redbeat.RedBeatScheduler``) and django-celery-beat's (a real database)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.schedules import schedule

from celery_watchdog import install
from celery_watchdog.monitor.check import run_pass
from celery_watchdog.monitor.schedules import read
from celery_watchdog.testing import capture_alerts
from tests.helpers import (
    REPO_ROOT,
    PreforkWorker,
    make_app,
    stop_process_group,
    unique_prefix,
    wait_for,
)

pytestmark = pytest.mark.timeout(150)


def entry(wd: Any, store: Any, name: str) -> dict[str, Any] | None:
    return next((d for d in read(wd, store, store.now()) if d["entry"] == name), None)


def test_a_redbeat_entry_is_checked_and_missed_when_beat_stops(redis_url: str) -> None:
    pytest.importorskip("redbeat", reason="celery-redbeat is not installed")
    from redbeat.schedulers import RedBeatSchedulerEntry

    conf = {
        "redbeat_redis_url": redis_url, "redbeat_key_prefix": unique_prefix("rb") + ":",
        "beat_scheduler": "redbeat.RedBeatScheduler", "watchdog_beat_grace": 2,
        "watchdog_snapshot_interval": 0.5, "watchdog_flush_interval": 0.2,
    }  # fmt: skip
    with PreforkWorker(redis_url, prefix=unique_prefix("wdrb"), conf=conf) as worker:
        wd = install(worker.app)
        assert wd is not None
        store = wd.store()
        # Made at run time, as RedBeat users do: in Redis only, not in beat_schedule.
        RedBeatSchedulerEntry("rb-tick", "tests.workerapp.noop", schedule(1.0),
                              app=worker.app).save()  # fmt: skip
        log = open(os.path.join(tempfile.mkdtemp(prefix="wd-rb-"), "beat.log"), "ab")  # noqa: SIM115
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.workerapp", "beat", "-l", "INFO"],
            cwd=REPO_ROOT, env=worker.env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            doc = wait_for(lambda: (d := entry(wd, store, "rb-tick")) and d["last_succeeded"]
                           and d, timeout=60, what="rb-tick sent by RedBeat and run")  # fmt: skip
            assert doc["source"] == "redbeat" and doc["task"] == "tests.workerapp.noop"
        finally:
            stop_process_group(beat)
        time.sleep(4.0)
        with capture_alerts() as alerts:
            run_pass(wd, store)
            run_pass(wd, store)
        page = alerts.assert_sent(kind="missed_run")
        assert "rb-tick" in page.summary and "not sent" in page.summary


@pytest.fixture(scope="module")
def django_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    django = pytest.importorskip("django", reason="Django is not installed")
    pytest.importorskip("django_celery_beat", reason="django-celery-beat is not installed")
    from django.conf import settings
    from django.core.management import call_command

    path = tmp_path_factory.mktemp("django") / "db.sqlite3"
    if settings.configured:
        pytest.skip("Django was configured by something else in this process")
    settings.configure(
        INSTALLED_APPS=["django_celery_beat"], USE_TZ=True, TIME_ZONE="UTC",
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}},
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    )  # fmt: skip
    django.setup()
    call_command("migrate", "django_celery_beat", verbosity=0)
    yield path
    # Django stays set up in this process: later tests' schedules must not see these entries.
    from django_celery_beat.models import PeriodicTask

    PeriodicTask.objects.all().delete()


def test_django_celery_beat_entries_are_read_from_its_database(
    redis_url: str, django_db: Path
) -> None:
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    every = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)
    nightly = CrontabSchedule.objects.create(minute="0", hour="3")
    PeriodicTask.objects.create(name="dj-tick", task="d.tick", interval=every)
    PeriodicTask.objects.create(name="dj-nightly", task="d.nightly", crontab=nightly)
    PeriodicTask.objects.create(name="dj-off", task="d.off", interval=every, enabled=False)
    app = make_app(redis_url, beat_scheduler="django_celery_beat.schedulers:DatabaseScheduler",
                   watchdog_beat_grace=1)  # fmt: skip
    wd = install(app)
    assert wd is not None
    store = wd.store()
    docs = {d["entry"]: d for d in read(wd, store, store.now())}
    assert {"dj-tick", "dj-nightly"} <= set(docs) and "dj-off" not in docs
    assert docs["dj-tick"]["source"] == "django" and docs["dj-nightly"]["next_due"]
    time.sleep(3.0)  # due every second, never sent: no beat runs
    tick = {d["entry"]: d for d in read(wd, store, store.now())}["dj-tick"]
    assert tick["kind"] == "missed_run" and "not sent" in tick["what"]

"""Activation: by settings or install(app), exactly once, off when disabled, loud when wrong."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import redis
from celery import Celery, signals

from celery_watchdog import ConfigError, WatchedTask, install
from celery_watchdog.runtime import for_app
from celery_watchdog.worker.bootstep import WatchdogStep
from tests.helpers import REPO_ROOT, make_app, run_worker, unique_prefix, wait_for


def receivers_of_ours(signal: signals.Signal) -> int:
    return sum(1 for key, _ in signal.receivers if "celery_watchdog" in str(key))


def test_listing_the_package_in_imports_hooks_the_app_exactly_once(redis_url: str) -> None:
    app = make_app(redis_url)
    first = for_app(app)
    assert first is not None and install(app) is first
    with run_worker(app):
        pass
    with run_worker(app):
        # The delivery gate listens while a worker of this app runs, in its main process.
        assert receivers_of_ours(signals.task_received) == 1
    assert list(app.steps["worker"]).count(WatchdogStep) == 1
    for signal in (signals.task_prerun, signals.task_postrun):
        assert receivers_of_ours(signal) == 1
    assert receivers_of_ours(signals.task_received) == 0


def test_install_hooks_an_app_that_does_not_list_the_package(redis_url: str) -> None:
    app = Celery("explicit", broker=redis_url, backend=redis_url, set_as_current=False)
    prefix = unique_prefix()
    app.conf.update(watchdog_key_prefix=prefix)

    @app.task(name="explicit.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    wd = install(app)
    assert wd is not None and wd.settings.redis_url == redis_url  # from the redis broker
    store = wd.store()
    with run_worker(app):
        result = add.delay(1, 2)
        assert result.get(timeout=10) == 3
        wait_for(lambda: store.runs.of_task(result.id), what="the run recorded")


def test_an_app_that_is_neither_listed_nor_installed_is_not_recorded(redis_url: str) -> None:
    app = Celery("bystander", broker=redis_url, backend=redis_url, set_as_current=False)

    @app.task(name="bystander.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    with run_worker(app):
        assert add.delay(1, 2).get(timeout=10) == 3
        time.sleep(1)
    assert for_app(app) is None
    client = redis.Redis.from_url(redis_url)
    assert not [k for k in client.keys("*") if k.startswith(b"watchdog:")]


def test_watchdog_enabled_false_turns_everything_off(redis_url: str) -> None:
    app = make_app(redis_url, watchdog_enabled=False)
    prefix = app.conf.watchdog_key_prefix

    @app.task(name="off.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    with run_worker(app):
        assert add.delay(1, 2).get(timeout=10) == 3
        time.sleep(1)
    assert install(app) is None
    assert WatchdogStep not in app.steps["worker"]
    assert redis.Redis.from_url(redis_url).keys(f"{prefix}:*") == []


def test_a_bad_task_option_stops_the_worker_naming_the_task(redis_url: str) -> None:
    app = make_app(redis_url)

    @app.task(name="bad.export", shared=False, base=WatchedTask, bind=True, heartbeat_timeout=-1)
    def export(self: WatchedTask) -> None:
        pass

    with pytest.raises(ConfigError, match=r"bad\.export\.heartbeat_timeout=-1"), run_worker(app):
        pass


def test_a_bad_setting_is_refused_when_the_app_is_hooked(redis_url: str) -> None:
    app = make_app(redis_url, watchdog_check_interval="often")
    with pytest.raises(ConfigError, match="watchdog_check_interval='often'"):
        install(app)


def test_beat_starts_with_the_watchdog_imported(redis_url: str, tmp_path: object) -> None:
    env_conf = '{"beat_schedule_filename": "' + f"{tmp_path}/schedule" + '"}'
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.workerapp", "beat", "--loglevel=INFO"],
        cwd=REPO_ROOT,
        env={
            **__import__("os").environ,
            "WATCHDOG_TEST_REDIS_URL": redis_url,
            "WATCHDOG_TEST_PREFIX": unique_prefix(),
            "WATCHDOG_TEST_CONF": env_conf,
            "PYTHONPATH": str(REPO_ROOT),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    time.sleep(4)
    alive = proc.poll() is None
    proc.terminate()
    out = proc.communicate(timeout=10)[0].decode(errors="replace")
    assert alive, out
    assert "Traceback" not in out and "beat: Starting" in out

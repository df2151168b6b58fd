"""Test harness: apps, in-process workers and prefork worker subprocesses on a private Redis.

Everything here talks to real processes: a real ``redis-server`` (``celery_watchdog.embedded``)
and real Celery workers. Prefork subprocesses are needed wherever kill, terminate or hard time
limits matter; in-process workers (threads/solo) start in ~0.1 s and suit everything else.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil  # type: ignore[import-untyped]  # no types-psutil in the dev extras
import pytest
import redis
from celery import Celery, Task
from celery.contrib.testing.worker import start_worker

from tests import workerapp

REPO_ROOT = Path(__file__).resolve().parent.parent
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


def unique_prefix(label: str = "wdtest") -> str:
    """A watchdog key prefix no other test (or worker) uses."""
    return f"{label}-{uuid.uuid4().hex[:10]}"


def make_app(redis_url: str, **conf: Any) -> Celery:
    """A Celery app with broker, backend and watchdog store on ``redis_url``.

    Each app gets its own ``watchdog_key_prefix`` (override it through ``conf``) so that
    two tests, or two apps in one test, never read each other's records.
    """
    app = Celery(f"test-{uuid.uuid4().hex[:6]}", set_as_current=False)
    app.conf.update(
        broker_url=redis_url,
        result_backend=redis_url,
        watchdog_redis_url=redis_url,
        watchdog_key_prefix=unique_prefix(),
        imports=["celery_watchdog"],
        broker_connection_retry_on_startup=True,
    )
    app.conf.update(conf)
    return app


@contextlib.contextmanager
def run_worker(
    app: Celery, pool: str = "threads", concurrency: int = 2, **kwargs: Any
) -> Iterator[Any]:
    """An in-process worker consuming ``app``'s queues for the duration of the block.

    ``start_worker`` builds a ``WorkController``, whose loader imports ``app.conf.imports``
    (so ``celery_watchdog`` hooks in as it would in production). The ping check is off: it
    needs ``celery.contrib.testing.tasks`` registered, and a started consumer is ready anyway.
    """
    kwargs.setdefault("hostname", f"inproc-{uuid.uuid4().hex[:8]}@{socket.gethostname()}")
    with start_worker(
        app,
        pool=pool,
        concurrency=concurrency,
        perform_ping_check=False,
        shutdown_timeout=kwargs.pop("shutdown_timeout", 15.0),
        **kwargs,
    ) as worker:
        yield worker


def wait_for(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy; return that, or fail the test."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate!r}")
        time.sleep(interval)


def group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes of process group ``pgid``."""
    found = []
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(ProcessLookupError, psutil.Error):
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def stop_process_group(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> list[int]:
    """SIGTERM the group led by ``proc``, SIGKILL what is left; return pids that survived."""
    pgid = proc.pid  # start_new_session=True makes the child its group's leader.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    # Wait for the whole group, not only the leader: pool children can outlive the parent.
    while time.monotonic() < deadline:
        proc.poll()
        if proc.returncode is not None and not group_members(pgid):
            return []
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    proc.wait(timeout=5)
    deadline = time.monotonic() + 5
    while (left := group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p.pid for p in left]


class PreforkWorker:
    """``celery -A tests.workerapp worker -P prefork`` in its own process group."""

    def __init__(
        self,
        redis_url: str,
        prefix: str | None = None,
        concurrency: int = 2,
        conf: Mapping[str, Any] | None = None,
        extra_args: tuple[str, ...] = ("--without-mingle", "--without-gossip"),
        log_dir: Path | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.prefix = prefix or unique_prefix("wdworker")
        self.concurrency = concurrency
        self.conf = dict(conf or {})
        self.extra_args = extra_args
        # A literal host part (what `%h` would expand to) so the ping destination matches.
        self.name = f"{self.prefix}@{socket.gethostname()}"
        log_dir = log_dir or Path(tempfile.mkdtemp(prefix="watchdog-worker-"))
        self.log_path = log_dir / f"{self.prefix}.log"
        # The client side: the same tasks and settings, used to send tasks and control commands.
        self.app = workerapp.create_app(redis_url, self.prefix, self.conf)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def main_pid(self) -> int:
        assert self._proc is not None, "worker not started"
        return self._proc.pid

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "tests.workerapp", "worker",
            "-P", "prefork", "-c", str(self.concurrency), "--loglevel=INFO",
            "-n", self.name, *self.extra_args,
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            WATCHDOG_TEST_REDIS_URL=self.redis_url,
            WATCHDOG_TEST_PREFIX=self.prefix,
            WATCHDOG_TEST_CONF=json.dumps(self.conf),
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
            PYTHONUNBUFFERED="1",
        )
        return env

    def start(self, timeout: float = 30.0) -> PreforkWorker:
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self.command(),
                cwd=REPO_ROOT,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # Wait for the "ready." line before pinging: a ping sent before the worker's control
        # queue exists is lost, and each lost ping costs its whole reply timeout.
        ready_line = f"{self.name} ready."
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._proc.poll() is None:
            if ready_line in self.log_text() and self.app.control.ping(
                destination=[self.name], timeout=1.0, limit=1
            ):
                return self
            time.sleep(0.05)
        code = self._proc.poll()
        self.stop(check=False)
        raise RuntimeError(
            f"worker {self.name} did not answer ping within {timeout:.0f}s "
            f"(exit code {code}). Last lines of {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 10.0, check: bool = True) -> None:
        """SIGTERM then SIGKILL the worker's whole process group; idempotent.

        The pool children get the SIGTERM too, so hung tasks do not hold the shutdown up, and
        the main process logs WorkerLostError for them: assert on lost runs before stopping.
        For a warm shutdown as ``docker stop`` does it, ``os.kill(worker.main_pid, SIGTERM)``.
        """
        proc, self._proc = self._proc, None
        if proc is None:
            return
        left = stop_process_group(proc, timeout)
        self.app.close()
        if check:
            assert not left, f"worker {self.name} left processes behind: {left}"

    def pids(self) -> list[int]:
        """Pids of the pool's child processes (not the main process)."""
        with contextlib.suppress(psutil.NoSuchProcess):
            return sorted(p.pid for p in psutil.Process(self.main_pid).children())
        return []

    def task(self, short_name: str) -> Task:
        """A test task from ``tests.workerapp`` bound to this worker's Redis."""
        return workerapp.task(self.app, short_name)

    def client(self) -> redis.Redis:
        """A client of this worker's Redis (strings decoded)."""
        return redis.Redis.from_url(self.redis_url, decode_responses=True)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(empty log)"

    def __enter__(self) -> PreforkWorker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def require_rabbitmq(url: str = RABBITMQ_URL, timeout: float = 2.0) -> str:
    """Return ``url`` when a RabbitMQ broker answers there, else skip the calling test."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:  # any failure means "not usable here"; the reason is reported
        pytest.skip(f"RabbitMQ is not reachable at {url}: {exc!r}")
    return url

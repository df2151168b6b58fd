"""Processes the benchmarks own: a private Redis server and prefork worker subprocesses.

Every process started here runs in its own process group and is registered for clean-up, so
an error, Ctrl-C or SIGTERM in the benchmark never leaves a worker or a Redis behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import redis

from celery_watchdog.embedded import find_redis_server

REPO_ROOT = Path(__file__).resolve().parent.parent
_owned: list[subprocess.Popen[bytes]] = []


# -- clean-up --------------------------------------------------------------------------------


def _stop_group(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the process group of ``proc`` (a warm shutdown), SIGKILL it if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    # The group may still hold children (pool processes) after the leader is gone.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    if proc in _owned:
        _owned.remove(proc)


def cleanup_all() -> None:
    """Stop every process this benchmark started (newest first: workers before Redis)."""
    for proc in reversed(list(_owned)):
        _stop_group(proc, timeout=5.0)


def install_signal_handlers() -> None:
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt so ``finally`` blocks run and clean up."""

    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise)
    # Python leaves SIGINT ignored when it started ignored (a background job of a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _spawn(
    args: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=env,
            start_new_session=True,  # own process group: killpg reaches the pool children
        )
    _owned.append(proc)
    return proc


def cpu_split(pid: int) -> tuple[float, float]:
    """User+system CPU seconds of a process, and of all its descendants (reaped ones too)."""
    proc = psutil.Process(pid)
    t = proc.cpu_times()
    descendants = t.children_user + t.children_system
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            ct = child.cpu_times()
            descendants += ct.user + ct.system
    return float(t.user + t.system), float(descendants)


def side_threads_cpu(pid: int) -> float:
    """CPU seconds of the descendants' threads other than their main ones (a flusher's)."""
    total = 0.0
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += sum(t.user_time + t.system_time for t in child.threads() if t.id != child.pid)
    return total


def cpu_tree(pid: int) -> float:
    """User+system CPU seconds of a process tree, read from /proc."""
    return sum(cpu_split(pid))


# -- Redis -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A throw-away ``redis-server`` on a free loopback port, never the system one."""

    def __init__(self, label: str = "bench") -> None:
        self.port = _free_port()
        self.binary = find_redis_server()
        self.dir = Path(tempfile.mkdtemp(prefix=f"watchdog-{label}-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            "--daemonize",
            "no",
        ]
        self.proc = _spawn(args, self.dir / "redis.log")
        client = self.client()
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server ({self.binary}) did not start; see {self.dir / 'redis.log'}"
                    ) from None
                time.sleep(0.02)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)

    def cpu(self) -> float:
        assert self.proc is not None
        return cpu_tree(self.proc.pid)

    def close(self) -> None:
        if self.proc is not None:
            _stop_group(self.proc, timeout=5.0)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- workers ---------------------------------------------------------------------------------


class Worker:
    """``celery -A benchmarks.benchapp worker -P prefork`` in its own process group."""

    def __init__(
        self,
        mode: str,
        redis_url: str,
        nodename: str,
        queue: str,
        log_dir: Path,
        concurrency: int = 2,
        events: bool = False,
        prefix: str = "watchdog",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.mode = mode
        self.nodename = nodename
        self.log = log_dir / f"{nodename.split('@')[0]}.log"
        env = dict(os.environ)
        env.update(
            BENCH_MODE=mode,
            BENCH_REDIS_URL=redis_url,
            BENCH_PREFIX=prefix,
            PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p),
        )
        env.update(extra_env or {})
        self.args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "benchmarks.benchapp",
            "worker",
            "-P",
            "prefork",
            "-c",
            str(concurrency),
            "-Q",
            queue,
            "-n",
            nodename,
            "-l",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
        ]
        if events:
            self.args.append("-E")
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, control_app: Any, timeout: float = 60.0) -> Worker:
        return self.spawn().wait_ready(control_app, timeout)

    def spawn(self) -> Worker:
        self.proc = _spawn(self.args, self.log, self.env)
        return self

    def wait_ready(self, control_app: Any, timeout: float = 60.0) -> Worker:
        """Return once the worker answers a ping (its consumer and pool are up)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.nodename} exited; see {self.log}:\n{self.tail()}")
            replies = control_app.control.ping(destination=[self.nodename], timeout=0.5)
            if replies:
                return self
        raise RuntimeError(f"worker {self.nodename} did not answer ping; see {self.log}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_tree(self.pid)

    def cpu_split(self) -> tuple[float, float]:
        """(main process, pool processes) CPU seconds."""
        return cpu_split(self.pid)

    def side_threads_cpu(self) -> float:
        """CPU seconds of the pool processes' non-main threads."""
        return side_threads_cpu(self.pid)

    def processes(self) -> int:
        return 1 + len(psutil.Process(self.pid).children(recursive=True))

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is not None:
            _stop_group(self.proc)
            self.proc = None

    def stop_soon(self) -> None:
        """Ask for a warm shutdown without waiting; ``stop()`` later reaps the group."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)

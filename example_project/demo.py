"""``python -m example_project demo``: a worker, beat and a live watchdog view in one command.

It starts (each in its own process group, logging to a temporary directory) an embedded Redis
unless one is given, ``celery worker -P prefork -c 4`` and ``celery beat``; enqueues a mix of
healthy, slow, stuck, crashing and failing tasks; then shows ``celery watchdog status`` and
``celery watchdog tasks`` every few seconds. Ctrl-C or ``--duration`` stops everything.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import FrameType
from typing import Any

from celery_watchdog.embedded import RedisServer

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REFRESH_SECONDS = 3.0
STOP_TIMEOUT = 10.0

_stop_requested = False  # set by the signal handler; see _interrupt()


def say(text: str = "") -> None:
    print(text, flush=True)


def celery_command(*args: str) -> list[str]:
    # The running interpreter, not whatever `celery` is first on PATH: same virtualenv for sure.
    return [sys.executable, "-m", "celery", "-A", "example_project", *args]


def child_env(redis_url: str) -> dict[str, str]:
    env = dict(os.environ, REDIS_URL=redis_url, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


def start_celery(
    name: str, args: list[str], env: dict[str, str], log_dir: Path
) -> subprocess.Popen[bytes]:
    with open(log_dir / f"{name}.log", "ab") as log:
        # Own session: the terminal's Ctrl-C reaches only the demo, which then stops the
        # worker and beat in order instead of having them die half-way on their own.
        return subprocess.Popen(
            celery_command(*args),
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process(name: str, proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, wait, SIGKILL whatever is left (pool children included)."""
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline and (proc.poll() is None or group_alive(pgid)):
        time.sleep(0.1)
    if proc.poll() is None or group_alive(pgid):
        say(f"[demo] {name} did not stop within {STOP_TIMEOUT:.0f}s; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 5
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
    say(f"[demo] {name} stopped (exit code {proc.returncode})")


def enqueue_mix() -> list[Any]:
    """Send the mix of tasks; return their AsyncResults, which the caller keeps (see run())."""
    # Imported here: the app reads REDIS_URL at import time, which run() has just set.
    from example_project import tasks

    results: list[Any] = []

    def send(task: Any, **kwargs: Any) -> None:
        results.append(task.apply_async(kwargs=kwargs))
        shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        say(f"[demo] enqueued {task.name.rsplit('.', 1)[-1]}({shown}) -> {results[-1].id}")

    # Healthy work first: with 4 children and 3 tasks that hang, order decides what runs.
    for user_id in (1, 2, 3):
        send(tasks.send_welcome_email, user_id=user_id)
    send(tasks.export_report, account_id=42, rows=200)
    send(tasks.export_report, account_id=7, rows=60)
    send(tasks.charge_card, account_id=42, amount=-5, card_token="tok_live_4242")
    send(tasks.resize_image, image_id=1001)
    send(tasks.sync_vendor, account_id=42)
    send(tasks.reindex, account_id=42)
    send(tasks.crunch_numbers)
    return results


def show(title: str, args: list[str], env: dict[str, str]) -> None:
    say(f"$ celery -A example_project {' '.join(args)}")
    try:
        done = subprocess.run(
            celery_command(*args), cwd=PROJECT_ROOT, env=env, capture_output=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        say(f"[demo] `{title}` took more than 30s; skipped")
        return
    out = done.stdout.decode(errors="replace").strip()
    if done.returncode != 0:
        # Keep the live view going: the next refresh may well succeed (Redis restarting, ...).
        err = done.stderr.decode(errors="replace").strip()
        tail = "\n".join(f"{out}\n{err}".strip().splitlines()[-15:])
        out = f"[demo] `{title}` failed (exit code {done.returncode}):\n{tail}"
    say(out or "(no output)")
    say()


def wait_for_worker(worker: subprocess.Popen[bytes], log_dir: Path, timeout: float = 30) -> bool:
    from example_project.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and worker.poll() is None and not _stop_requested:
        if app.control.ping(timeout=1.0, limit=1):
            return True
    tail = (log_dir / "worker.log").read_text(errors="replace").splitlines()[-20:]
    say("[demo] the worker did not start; last lines of its log:\n" + "\n".join(tail))
    return False


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM/SIGHUP take the same way out as Ctrl-C. SIGINT is set explicitly too: a parent
    # that ignores SIGINT (a background job, nohup) would otherwise make Ctrl-C a no-op.
    # The flag is what counts: a KeyboardInterrupt raised while Python runs a __del__ (Celery's
    # AsyncResult.__del__ talks to Redis) is printed and swallowed, so the loop checks the flag.
    global _stop_requested
    _stop_requested = True
    raise KeyboardInterrupt


def _sleep(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not _stop_requested and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(0.1, left))


def run(duration: float | None = None, redis_url: str | None = None) -> int:
    global _stop_requested
    _stop_requested = False
    started = time.monotonic()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    log_dir = Path(tempfile.mkdtemp(prefix="watchdog-demo-"))
    redis_server: RedisServer | None = None
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    results: list[Any] = []
    try:
        redis_url = redis_url or os.environ.get("REDIS_URL")
        if not redis_url:
            redis_server = RedisServer().start()
            redis_url = redis_server.url
        os.environ["REDIS_URL"] = redis_url
        env = child_env(redis_url)
        say(f"[demo] Redis: {redis_url}" + (" (embedded)" if redis_server else ""))
        say(f"[demo] logs: {log_dir}")
        node = f"demo-{uuid.uuid4().hex[:6]}@%h"
        worker_args = ["worker", "-P", "prefork", "-c", "4", "-l", "INFO", "-n", node]
        procs.append(("worker", start_celery("worker", worker_args, env, log_dir)))
        schedule = str(log_dir / "celerybeat-schedule")  # not in the project directory
        beat_args = ["beat", "-l", "INFO", "-s", schedule]
        procs.append(("beat", start_celery("beat", beat_args, env, log_dir)))
        if not wait_for_worker(procs[0][1], log_dir):
            return 0 if _stop_requested else 1
        results = enqueue_mix()
        while not _stop_requested and (duration is None or time.monotonic() - started < duration):
            if sys.stdout.isatty():
                say("\033[2J\033[H")  # clear the screen: a live view, not a scrolling log
            say(f"[demo] {time.monotonic() - started:.0f}s — Ctrl-C stops the demo")
            show("watchdog status", ["watchdog", "status"], env)
            show("watchdog tasks", ["watchdog", "tasks"], env)
            left = REFRESH_SECONDS if duration is None else duration - (time.monotonic() - started)
            _sleep(min(REFRESH_SECONDS, left))
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave processes behind.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        if _stop_requested:
            say("\n[demo] interrupted")
        # Dropping the results unsubscribes them from Redis: do it while Redis still runs.
        results.clear()
        say("[demo] stopping beat, worker and Redis ...")
        for name, proc in reversed(procs):
            stop_process(name, proc)
        if redis_server is not None:
            redis_server.close()
            say("[demo] embedded Redis stopped")
        say(f"[demo] logs kept in {log_dir}")
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
    return 0

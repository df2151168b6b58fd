"""The page in a real headless Chromium, served by a real uvicorn, during a real stuck run.

A prefork worker runs a ``WatchedTask`` that reports progress (1 of 2), then hangs in a step
whose name carries ``<script>alert(1)</script>`` and a secret; a monitor pass judges it stuck
and opens its incident. The browser sees the run with its progress bar and where it waits,
signs in with the operator token, acknowledges the incident by clicking, and sees it
acknowledged after the page refreshed itself in place (no reload). No console error (a CSP
violation would be one), no dialog (an ``alert`` would be an XSS), no sideways scroll on a
375 px phone. Screenshots go to ``tests/artifacts/``.

Debian's ``chromium`` is driven by the ``playwright`` package (``executable_path``): without
a Chromium the test is skipped, unless ``CI`` is set — then it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from celery_watchdog.embedded import RedisServer
from celery_watchdog.http.app import create_app
from celery_watchdog.monitor.check import run_pass
from celery_watchdog.testing import capture_alerts
from tests.helpers import PreforkWorker, wait_for

pytestmark = pytest.mark.timeout(60)

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TOKEN = "operator-token-for-the-browser-test"
CONF = {
    "watchdog_on_stuck": "alert",  # stays stuck (and on the page) instead of being stopped
    "watchdog_flush_interval": 0.3,
    "watchdog_snapshot_interval": 0.5,
    "watchdog_http_token": TOKEN,
}
DSN = "postgres://admin:hunter2pw@db/<script>alert(1)</script>"


def chromium() -> str:
    """Debian's Chromium (or the one named by CHROMIUM), or skip (fail under CI) saying why."""
    found = (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    missing = None
    if not found or not os.access(found, os.X_OK):
        missing = "no chromium binary (apt-get install chromium; .ci/run installs it)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "the playwright package is not installed (pip install -e '.[dev]')"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test must run in CI: {missing}")
        pytest.skip(missing)
    assert found
    return found


class Server:
    """uvicorn serving ``create_app(app)`` on a free port, in a thread."""

    def __init__(self, app: Any) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = uvicorn.Config(create_app(app), host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="off")  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def store(self) -> Any:
        return self.server.config.app.state.ctx.store()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=10, what="uvicorn to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def executable() -> str:
    return chromium()  # before anything is started: a skip costs nothing


@pytest.fixture(scope="module")
def stuck(executable: str) -> Iterator[tuple[str, Server]]:
    """A prefork worker with one run stuck in a step after 1 of 2 items, its incident open."""
    with (
        RedisServer() as redis_server,
        PreforkWorker(redis_server.url, conf=CONF) as worker,
        Server(worker.app) as server,
    ):
        wd = server.server.config.app.state.ctx.wd
        store = server.store()
        task_id = worker.task("hostile_text").delay(DSN, 60, fail=False).id

        def stack_taken() -> bool:
            runs = store.runs.of_task(task_id)
            return bool(runs and runs[0].stack and runs[0].processed == 1)

        wait_for(stack_taken, timeout=15, what="the stuck run's stack")
        with capture_alerts():
            wait_for(lambda: run_pass(wd).findings, timeout=15, interval=0.3,
                     what="the stuck verdict")  # fmt: skip
        yield task_id, server


def incident_id(server: Server, task_id: str) -> str:
    found = [i for i in server.store().incidents.active() if i.alert.get("task_id") == task_id]
    assert len(found) == 1, found
    return found[0].id


def test_the_page_in_a_browser_during_a_stuck_run(
    executable: str, stuck: tuple[str, Server]
) -> None:
    from playwright.sync_api import expect, sync_playwright

    task_id, server = stuck
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)  # fmt: skip
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
            page.goto(server.url + "/")

            # The stuck run: its word, its progress bar, where it waits; its argument as text.
            run = page.locator(f'#runs li[data-key^="run-{task_id}"]')
            expect(run.locator(".badge")).to_have_text("stuck")
            bar = run.locator("progress")
            expect(bar).to_have_attribute("value", "1")
            expect(bar).to_have_attribute("max", "2")
            expect(run).to_contain_text("1 of 2 done (50%)")
            expect(run.locator(".where")).to_contain_text("time.sleep")
            expect(run.locator(".where")).to_contain_text("tests/workerapp.py")
            expect(run).to_contain_text("<script>alert(1)</script>")  # shown, not run
            assert "hunter2pw" not in page.content()

            # A reader has no buttons; the operator token signs in (a form, then a redirect).
            incident = page.locator("#incidents li.incident", has_text="hostile_text")
            expect(incident.get_by_role("button", name="Acknowledge")).to_have_count(0)
            page.get_by_text("Sign in with the operator token to act").click()
            page.get_by_label("Token").fill(TOKEN)
            page.get_by_role("button", name="Sign in", exact=True).click()
            expect(page.locator(".account")).to_contain_text("Signed in as operator")

            # Acknowledge by clicking: the page updates in place (the marker survives).
            page.evaluate("window.__same_page = true")
            incident.get_by_role("button", name="Acknowledge").click()
            expect(incident.locator(".badge-state-acknowledged")).to_have_text("acknowledged")
            expect(incident.get_by_role("button", name="Acknowledge")).to_have_count(0)
            expect(page.locator("#live")).to_have_text("Incident acknowledged.")
            assert page.evaluate("window.__same_page") is True
            stored = server.store().incidents.get(incident_id(server, task_id))
            assert stored and stored.state == "acknowledged" and stored.by.startswith("operator")
            page.screenshot(path=str(ARTIFACTS / "page.png"), full_page=True)

            # The timer refreshes too, in place: the clock line moves on, nothing reloads, and
            # the control a person is on keeps its focus and its choice.
            snooze = incident.get_by_label("Snooze for")
            snooze.select_option("4h")
            snooze.focus()
            status = page.locator("#refresh-status time")
            first = status.get_attribute("datetime")
            expect(status).not_to_have_attribute("datetime", first or "", timeout=12_000)
            assert page.evaluate("window.__same_page") is True
            expect(snooze).to_be_focused()
            expect(snooze).to_have_value("4h")

            # A phone: nothing scrolls sideways.
            page.set_viewport_size({"width": 375, "height": 800})
            page.wait_for_timeout(200)
            widths = page.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
            )
            assert widths[0] <= widths[1], f"horizontal scroll at 375 px: {widths}"
            page.screenshot(path=str(ARTIFACTS / "page-375.png"), full_page=True)

            # The task's own page.
            page.set_viewport_size({"width": 1280, "height": 900})
            run_link = page.locator(f'#runs li[data-key^="run-{task_id}"] h3 a')
            run_link.click()
            expect(page.locator("h1")).to_have_text("tests.workerapp.hostile_text")
            expect(page.locator("#story")).to_contain_text("Incident opened")
            expect(page.locator("#story")).to_contain_text("Acknowledged")
        finally:
            browser.close()
    assert not problems, problems

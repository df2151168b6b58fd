"""Verdicts inside the Flower teams already run: a real ``celery flower`` lists a stuck run STUCK.

Flower builds task states from Celery events; an unknown ``task-<kind>`` event becomes the
task's state (``celery.events.state``). The monitor sends ``task-stuck`` as the run's own worker.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celery_watchdog import install
from tests.helpers import PreforkWorker, stop_process_group, wait_for
from tests.test_monitor import SilentServer, finding_for

pytest.importorskip("flower", reason="flower is not installed: no Flower to show verdicts in")
pytestmark = pytest.mark.timeout(90)
CONF = {
    "watchdog_snapshot_interval": 0.5,
    "watchdog_terminate_grace": 1.0,
    "watchdog_task_events": True,  # the client app (our monitor) sends verdicts as events
}


class Flower:
    """``celery -A tests.workerapp flower`` on a free localhost port, API open (no auth)."""

    def __init__(self, worker: PreforkWorker, workdir: Path) -> None:
        self.log_path = workdir / "flower.log"
        env = worker.env()
        env["FLOWER_UNAUTHENTICATED_API"] = "true"
        command = [
            sys.executable, "-m", "celery", "-A", "tests.workerapp", "flower",
            "--port=0", "--address=127.0.0.1",
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        port = wait_for(self._port, timeout=30, interval=0.1, what=f"its port in {self.log_path}")
        self.url = f"http://127.0.0.1:{port}"
        wait_for(lambda: self.get("/healthcheck", raw=True) == b"OK", what="flower /healthcheck")

    def _port(self) -> str | None:
        assert self.proc.poll() is None, f"flower exited:\n{self.log_path.read_text()[-3000:]}"
        found = re.search(r"Visit me at http://127\.0\.0\.1:(\d+)", self.log_path.read_text())
        return found.group(1) if found else None

    def get(self, path: str, raw: bool = False) -> Any:
        """The body (JSON decoded unless ``raw``), or None while Flower cannot answer it."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as resp:
                body = resp.read()
        except (urllib.error.URLError, OSError):  # HTTPError (404: unknown task yet) included
            return None
        return body if raw else json.loads(body)

    def state(self, task_id: str) -> str | None:
        info = self.get(f"/api/task/info/{task_id}")
        return info["state"] if info else None

    def wait_for_events(self, worker: PreforkWorker) -> None:
        """Events go over pub/sub, lost until Flower subscribes: probe until one shows up."""
        probes: list[str] = []

        def one_seen() -> bool:
            probes.append(worker.task("add").delay(1, 2).id)
            return any(self.state(task_id) == "SUCCESS" for task_id in probes)

        wait_for(one_seen, timeout=30, interval=0.5, what="flower to receive task events")

    def stop(self) -> None:
        left = stop_process_group(self.proc)
        assert not left, f"flower left processes behind: {left}"


@pytest.fixture
def worker(start_prefork_worker: Any) -> PreforkWorker:
    """A prefork worker sending task events (``-E``), as Flower needs."""
    return start_prefork_worker(
        conf=CONF, extra_args=("--without-mingle", "--without-gossip", "-E")
    )


@pytest.fixture
def flower(worker: PreforkWorker, tmp_path: Path) -> Iterator[Flower]:
    running = Flower(worker, tmp_path)
    try:
        yield running
    finally:
        running.stop()


def test_a_real_flower_lists_a_stuck_run_as_stuck_instead_of_started(
    worker: PreforkWorker, flower: Flower
) -> None:
    flower.wait_for_events(worker)

    wd = install(worker.app)
    assert wd is not None
    store = wd.store()
    server = SilentServer()
    try:
        result = worker.task("vendor_read").delay(server.port)
        wait_for(
            lambda: flower.state(result.id) == "STARTED", timeout=15, interval=0.2,
            what="STARTED in flower",
        )  # fmt: skip
        found = finding_for(wd, store, result.id, "stuck")
        wait_for(
            lambda: flower.state(result.id) == "STUCK", timeout=10, interval=0.2,
            what="STUCK in flower",
        )  # fmt: skip
    finally:
        server.close()

    assert found.run.worker == worker.name
    info = flower.get(f"/api/task/info/{result.id}")
    assert info["worker"] == worker.name  # shown against the run's own worker, not the monitor
    assert info["name"] == "tests.workerapp.vendor_read"
    listed = flower.get("/api/tasks?state=STUCK")
    assert list(listed) == [result.id] and listed[result.id]["state"] == "STUCK"

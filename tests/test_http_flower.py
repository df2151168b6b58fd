"""Scripts written against Flower work unchanged: a real ``celery flower`` and our real
``celery -A … watchdog serve`` run side by side on one cluster (a prefork worker sending task
events, ``-E``), and answer the same questions with the same fields and the same task ids."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urlencode

import pytest

from celery_watchdog.embedded import RedisServer
from tests.helpers import PreforkWorker, wait_for
from tests.test_flower import Flower

pytest.importorskip("flower", reason="flower is not installed: nothing to compare with")
pytestmark = [pytest.mark.timeout(120), pytest.mark.subprocess]


class Served(Flower):
    """``celery -A tests.workerapp watchdog serve --port 0``, the URL read from what it prints;
    asked and stopped as :class:`Flower` is."""

    def __init__(self, worker: PreforkWorker, workdir: Path, *args: str) -> None:
        # Not Flower.__init__ (it starts Flower): the same fields, filled by our server.
        self.log_path = workdir / "serve.log"
        command = [sys.executable, "-m", "celery", "-A", "tests.workerapp", "watchdog", "serve",
                   "--port", "0", *args]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command, env=worker.env(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.url = wait_for(self._url, timeout=30, interval=0.1, what=f"a URL in {self.log_path}")
        wait_for(lambda: self.get("/healthcheck", raw=True) == b"OK", what="serve /healthcheck")

    def _url(self) -> str | None:
        assert self.proc.poll() is None, f"serve exited:\n{self.log_path.read_text()[-3000:]}"
        found = re.search(r"status server on (http://127\.0\.0\.1:\d+)/", self.log_path.read_text())
        return found.group(1) if found else None


@dataclass
class Side:
    worker: PreforkWorker
    flower: Flower
    ours: Served
    ids: dict[str, str]


@pytest.fixture(scope="module")
def side(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Side]:
    redis_server.start()
    workdir = tmp_path_factory.mktemp("flower-side")
    worker = PreforkWorker(redis_server.url, concurrency=3, log_dir=workdir,
                           extra_args=("--without-mingle", "--without-gossip", "-E"))  # fmt: skip
    with worker:
        flower = Flower(worker, workdir)
        ours = Served(worker, workdir)
        try:
            flower.wait_for_events(worker)
            ids = {
                "succeeded": worker.task("add").delay(2, 3).id,
                "failed": worker.task("fail").delay("disk full").id,
            }
            for task_id in ids.values():
                worker.app.AsyncResult(task_id).get(timeout=15, propagate=False)
            ids["running"] = worker.task("sleep").delay(60).id
            expected = {"succeeded": "SUCCESS", "failed": "FAILURE", "running": "STARTED"}
            for key, state in expected.items():
                wait_for(partial(_in_both, flower, ours, ids[key], state), timeout=20,
                         interval=0.2, what=f"{key} {state} in both")  # fmt: skip
            yield Side(worker, flower, ours, ids)
        finally:
            ours.stop()
            flower.stop()


def _in_both(flower: Flower, ours: Served, task_id: str, state: str) -> bool:
    info = ours.get(f"/api/task/info/{task_id}") or {}
    return flower.state(task_id) == state and info.get("state") == state


def test_serve_prints_the_url_it_answers_on(side: Side) -> None:
    printed = side.ours.log_path.read_text()
    assert f"celery-watchdog status server on {side.ours.url}/" in printed
    assert side.ours.get("/healthcheck", raw=True) == b"OK"
    assert side.ours.url.startswith("http://127.0.0.1:")  # loopback unless told otherwise


def test_every_field_flower_gives_for_a_task_we_give_too(side: Side) -> None:
    theirs, ours = side.flower.get("/api/tasks"), side.ours.get("/api/tasks")
    for task_id in side.ids.values():
        assert set(theirs[task_id]) <= set(ours[task_id]), task_id
        assert ours[task_id]["state"] == theirs[task_id]["state"]
        assert ours[task_id]["worker"] == theirs[task_id]["worker"]
        assert ours[task_id]["name"] == theirs[task_id]["name"]
    for task_id in side.ids.values():
        info_theirs = side.flower.get(f"/api/task/info/{task_id}")
        info_ours = side.ours.get(f"/api/task/info/{task_id}")
        assert set(info_theirs) <= set(info_ours)


def test_workers_and_queue_lengths_have_flowers_fields(side: Side) -> None:
    name = side.worker.name
    theirs = side.flower.get("/api/workers?refresh=true")[name]
    ours = side.ours.get("/api/workers")[name]
    # Flower asks the workers (inspect); we read their snapshots, which hold no `conf` and
    # of `stats` only what a snapshot knows: pid, pool, totals.
    assert set(theirs) - {"conf"} <= set(ours)
    assert {"pid", "pool", "total"} <= set(theirs["stats"]) & set(ours["stats"])
    assert ours["stats"]["pool"]["max-concurrency"] == theirs["stats"]["pool"]["max-concurrency"]
    assert ours["stats"]["pool"]["processes"] == theirs["stats"]["pool"]["processes"]
    assert ours["registered"] == theirs["registered"]
    assert [q["name"] for q in ours["active_queues"]] == [
        q["name"] for q in theirs["active_queues"]
    ]
    assert side.ours.get("/api/workers?status=true") == side.flower.get("/api/workers?status=true")
    their_queues = side.flower.get("/api/queues/length")["active_queues"]
    our_queues = side.ours.get("/api/queues/length")["active_queues"]
    assert {q["name"] for q in their_queues} <= {q["name"] for q in our_queues}
    for queue in our_queues:
        assert {"name", "messages"} <= set(queue)


@pytest.mark.parametrize(
    "query",
    [
        {"state": "SUCCESS"},
        {"state": "FAILURE"},
        {"state": "STARTED"},
        {"taskname": "tests.workerapp.add"},
        {"taskname": "tests.workerapp.fail", "state": "FAILURE"},
        {"workername": "{worker}"},
        {"sort_by": "name", "limit": "2"},
        {"sort_by": "-name", "limit": "2", "offset": "1"},
        {"search": "disk"},
        {"search": "state:FAILURE OR name:tests.workerapp.sleep"},
        {"received_start": "2000-01-01 00:00"},
        {"received_end": "2000-01-01 00:00"},
    ],
)
def test_the_same_query_selects_the_same_tasks_as_flower(side: Side, query: dict[str, str]) -> None:
    query = {k: v.format(worker=side.worker.name) for k, v in query.items()}
    path = "/api/tasks?" + urlencode(query)
    theirs, ours = side.flower.get(path), side.ours.get(path)
    assert list(ours) == list(theirs) if "sort_by" in query else set(ours) == set(theirs)

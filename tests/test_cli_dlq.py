"""``celery -A tests.workerapp watchdog dlq …`` as a real subprocess, on entries of real runs."""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from celery_watchdog import dlq, install
from celery_watchdog.embedded import RedisServer
from celery_watchdog.model.records import Verdict
from celery_watchdog.store import Store
from tests import workerapp
from tests.helpers import run_worker, unique_prefix, wait_for
from tests.test_cli import celery

SECRET = "hunter2-s3cret"


@dataclass
class Cluster:
    """A worker that runs ``dlqcli.charge``, and one real dead-lettered run of it."""

    redis_url: str
    prefix: str
    app: Celery
    store: Store
    entry: dict[str, Any]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return celery("dlq", *args, redis_url=self.redis_url, prefix=self.prefix)

    def json(self, *args: str) -> Any:
        out = self.run(*args, "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def reset(self, *ids: str) -> list[str]:
        """The queue holds exactly these entries (copies of the real one), not replayed yet."""
        dlq.purge(self.store)
        redis.Redis.from_url(self.redis_url).delete("parked")
        ids = ids or (self.entry["id"],)
        for task_id in ids:
            message = {**self.entry["message"], "id": task_id}
            self.store.dlq.add({**self.entry, "id": task_id, "message": message})
        return list(ids)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    gate = threading.Event()
    with RedisServer() as server:
        prefix = unique_prefix("wdclidlq")
        app = workerapp.create_app(server.url, prefix, {"watchdog_snapshot_interval": 0.3})

        @app.task(name="dlqcli.charge", shared=False)
        def charge(password: str, account_id: int) -> list[Any]:
            gate.wait(15)
            return [password, account_id]

        wd = install(app)
        assert wd is not None
        store = wd.store()
        with run_worker(app, concurrency=2):
            try:
                task_id = charge.delay(SECRET, 7).id
                message = wait_for(lambda: store.messages.get(task_id), what="the saved message")
                run = wait_for(
                    lambda: next((r for r in store.runs.of_task(task_id) if r.running), None)
                )
                verdict = Verdict("stuck", "no heartbeat for 300 s")
                entry = dlq.make_entry(run, verdict, message, store.now(), idempotent=True)
                gate.set()
                yield Cluster(server.url, prefix, app, store, entry)
            finally:
                gate.set()
        app.close()


def test_dlq_list_prints_one_aligned_row_per_entry(cluster: Cluster) -> None:
    real, *_ = cluster.reset(cluster.entry["id"], "abc-1", "abc-2")
    out = cluster.run("list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "3 dead-letter entries: 3 waiting, 0 replayed"
    assert lines[2].split() == ["ID", "NAME", "VERDICT", "DEAD-LETTERED", "DELIVERIES", "WORKER",
                                "STATE", "REASON"]  # fmt: skip
    row = next(line for line in lines if line.startswith(real[:8]))
    assert re.search(r"dlqcli\.charge\s+stuck\s+(just now|\d+ s ago)\s+\d+\s+inproc-", row)
    assert re.search(r"\bdead\s+no heartbeat for 300 s$", row)
    header = lines[2]
    for line in lines[3:]:  # aligned: every column starts where its header does
        assert line[header.index("STATE") - 1] == " " and line[header.index("STATE")] != " "
    assert SECRET not in out.stdout


def test_dlq_list_json_is_keyed_by_task_id_and_holds_only_redacted_args(cluster: Cluster) -> None:
    [task_id] = cluster.reset()
    doc = cluster.json("list", "--task", "dlqcli.*")
    assert list(doc) == [task_id]
    entry = doc[task_id]
    assert entry["args"] == "([redacted], 7)" and entry["verdict"] == "stuck"
    assert entry["replayable"] is True and entry["state"] == "dead" and entry["idempotent"]
    assert SECRET not in json.dumps(doc)
    assert cluster.json("list", "--task", "other.*") == {}


def test_dlq_show_accepts_a_unique_prefix(cluster: Cluster) -> None:
    [task_id] = cluster.reset()
    out = cluster.run("show", task_id[:8])
    assert out.returncode == 0, out.stderr
    fields = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in out.stdout.splitlines())
    assert fields["Task"] == f"{task_id}  dlqcli.charge"
    assert fields["Verdict"] == "stuck: no heartbeat for 300 s"
    assert fields["Replayable"] == "yes" and fields["Args"] == "([redacted], 7)"
    assert fields["Worker"].startswith("inproc-") and fields["Idempotent"] == "yes"
    assert SECRET not in out.stdout
    doc = cluster.json("show", task_id[:8])
    assert doc["id"] == task_id and SECRET not in json.dumps(doc)


def test_an_unknown_or_ambiguous_dlq_id_fails_with_one_line(cluster: Cluster) -> None:
    cluster.reset("abc-1", "abc-2")
    unknown = cluster.run("show", "nope")
    assert unknown.returncode == 1
    assert unknown.stderr == "Error: no dead-letter entry with id or prefix 'nope'\n"
    ambiguous = cluster.run("replay", "abc")
    assert ambiguous.returncode == 1 and ambiguous.stderr.count("\n") == 1
    assert "ambiguous" in ambiguous.stderr and "abc-1, abc-2" in ambiguous.stderr


def test_dlq_replay_runs_the_original_task_once_unless_forced(cluster: Cluster) -> None:
    [task_id] = cluster.reset()
    out = cluster.run("replay", task_id[:8])
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "1 replayed."
    new_id = cluster.json("show", task_id)["audit"][0]["new_task_id"]
    assert new_id in out.stdout and SECRET not in out.stdout
    assert cluster.app.AsyncResult(new_id).get(timeout=10) == [SECRET, 7]

    again = cluster.run("replay", task_id)
    assert again.returncode == 1 and "already replayed as" in again.stdout
    forced = cluster.json("replay", task_id, "--force", "--queue", "parked")
    assert [r["outcome"] for r in forced] == ["replayed"] and forced[0]["queue"] == "parked"


def test_dlq_replay_all_dry_run_lists_what_would_be_published(cluster: Cluster) -> None:
    cluster.reset(cluster.entry["id"], "abc-1")
    doc = cluster.json("replay", "--all", "--task", "dlqcli.*", "--dry-run", "--queue", "parked")
    assert sorted(r["id"] for r in doc) == sorted([cluster.entry["id"], "abc-1"])
    assert {r["outcome"] for r in doc} == {"dry_run"} and SECRET not in json.dumps(doc)
    assert redis.Redis.from_url(cluster.redis_url).llen("parked") == 0
    human = cluster.run("replay", "--all", "--dry-run", "--batch", "1", "--rate", "50")
    assert human.returncode == 0 and "would replay" in human.stdout
    assert human.stdout.splitlines()[-1] == "Dry run: 2 would be replayed, nothing was published."
    assert cluster.run("replay", "--all", "abc-1").returncode == 2  # ids or --all, not both


def test_dlq_purge_asks_before_deleting(cluster: Cluster) -> None:
    cluster.reset(cluster.entry["id"], "abc-1", "abc-2")
    refused = cluster.run("purge", "--all")
    assert refused.returncode == 2 and "without --yes" in refused.stderr
    assert cluster.store.dlq.count() == 3
    out = cluster.run("purge", "abc-1", "--yes")
    assert out.returncode == 0 and out.stdout == "Purged 1 dead-letter entry.\n"
    assert cluster.run("purge", "--all", "--yes").stdout == "Purged 2 dead-letter entries.\n"
    assert cluster.store.dlq.count() == 0


def test_dlq_export_writes_json_lines_redacted_unless_asked(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.reset(cluster.entry["id"], "abc-1")
    out = cluster.run("export")
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert out.returncode == 0 and len(lines) == 2 and SECRET not in out.stdout
    path = tmp_path / "dlq.jsonl"
    full = cluster.run("export", "--output", str(path), "--include-messages")
    assert full.returncode == 0 and full.stderr == f"Exported 2 dead-letter entries to {path}.\n"
    assert SECRET in path.read_text() and path.stat().st_mode & 0o077 == 0


def test_dlq_output_shows_no_secret_value_and_no_terminal_control(cluster: Cluster) -> None:
    # An entry as an older version (or a path that forgot) may have stored it: raw text.
    dsn = "postgres://admin:pg-Pa55w0rd@db/app"
    hostile = "\x1b[2J\x1b]0;owned\x07\rOK\u202e"
    cluster.reset()
    task_id = "hostile-1"
    message = {**cluster.entry["message"], "id": task_id}
    cluster.store.dlq.add({
        **cluster.entry, "id": task_id, "message": message, "args": f"('{dsn}',)",
        "reason": f"quiet {hostile}", "step": f"connect {dsn} {hostile}",
        "last_error": f"OperationalError: {dsn} Bearer 0a1b2c3d4e5f {hostile}",
        "traceback": f"Traceback (most recent call last):\n  {dsn}\n{hostile}",
    })  # fmt: skip
    outputs = [
        cluster.run("list").stdout, cluster.run("show", task_id).stdout,
        cluster.run("show", task_id, "--json").stdout, cluster.run("list", "--json").stdout,
        cluster.run("export").stdout,
    ]  # fmt: skip
    for out in outputs:
        assert "hostile" in out  # the entry is there
        assert "pg-Pa55w0rd" not in out and "0a1b2c3d4e5f" not in out
        assert not {"\x1b", "\x07", "\r", "\u202e"} & set(out), out
    assert "postgres://admin:[redacted]@db/app" in outputs[1]  # the user and host stay

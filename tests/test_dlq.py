"""Dead-letter entries built from real runs on a real worker, and their replay through Redis."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery

from celery_watchdog import dlq, install
from celery_watchdog.embedded import RedisServer
from celery_watchdog.model.ids import TaskLookupError
from celery_watchdog.model.records import Run, Verdict
from celery_watchdog.runtime import Watchdog
from celery_watchdog.store import Store
from tests.helpers import make_app, run_worker, wait_for

FAST = {"watchdog_flush_interval": 0.1, "watchdog_snapshot_interval": 0.3}
SECRET = "hunter2-s3cret"
STUCK = Verdict("stuck", "no heartbeat for 300 s")


class Env:
    """An app whose task blocks until released, its watchdog and a worker running it."""

    def __init__(self, redis_url: str) -> None:
        self.app: Celery = make_app(redis_url, **FAST)
        self.gate = threading.Event()
        gate = self.gate

        @self.app.task(name="dlq.charge", shared=False, bind=True)
        def charge(self: Any, password: str, account_id: int, note: str = "") -> list[Any]:
            gate.wait(15)
            request = self.request
            return [password, account_id, note, request.get(dlq.REPLAY_HEADER),
                    request.get("tenant")]  # fmt: skip

        self.charge = charge
        wd = install(self.app)
        assert wd is not None
        self.wd: Watchdog = wd
        self.store: Store = wd.store()

    def dead_letter(self, *args: Any, keep_message: bool = True, **kwargs: Any) -> dict[str, Any]:
        """Run the task until its worker saved its message, then dead-letter it as stuck."""
        task_id = self.charge.apply_async(args, kwargs, headers={"tenant": "acme"}).id
        # 30 s, not 10: Celery's AsyncResult.__del__ of an earlier test's app whose Redis is
        # gone retries for up to 20 s in whichever thread the garbage collector runs in (seen
        # in CI: this worker's reporter), delaying the snapshot that saves the message.
        message = wait_for(lambda: self.store.messages.get(task_id), timeout=30,
                           what="the saved message")  # fmt: skip
        run = wait_for(
            lambda: next((r for r in self.store.runs.of_task(task_id) if r.running), None),
            timeout=30,
            what="the run recorded as started",
        )
        entry = dlq.make_entry(
            run, STUCK, message if keep_message else None, self.store.now(), idempotent=False
        )
        self.store.dlq.add(entry)
        return entry

    def replay(self, ids: list[str], **options: Any) -> list[dlq.ReplayResult]:
        return dlq.replay(self.app, self.store, ids, now=self.store.now(), **options)

    def entry(self, task_id: str) -> dlq.DeadLetter:
        found = dlq.get(self.store, task_id)
        assert found is not None
        return found


@pytest.fixture
def env(redis_url: str) -> Iterator[Env]:
    env = Env(redis_url)
    with run_worker(env.app, concurrency=3):
        try:
            yield env
        finally:
            env.gate.set()
    env.app.close()


def clone(entry: dict[str, Any], task_id: str) -> dict[str, Any]:
    """The same dead letter under another id (as if several runs had been removed)."""
    return {**entry, "id": task_id, "message": {**entry["message"], "id": task_id}}


def test_an_entry_keeps_the_verdict_and_where_the_run_was(env: Env) -> None:
    entry = env.entry(env.dead_letter(SECRET, 7)["id"])
    assert (entry.name, entry.verdict, entry.reason) == ("dlq.charge", "stuck", STUCK.reason)
    assert entry.state == "dead" and entry.replayable and not entry.replayed
    assert entry.args == "([redacted], 7)" and entry.queue == "celery"
    assert entry.worker and entry.worker.startswith("inproc-") and entry.deliveries >= 1
    assert entry.started and entry.dead_lettered_at and entry.started <= entry.dead_lettered_at
    assert entry.message and entry.message["headers"]["tenant"] == "acme"
    assert entry.audit == () and entry.idempotent is False


def test_make_entry_keeps_errors_progress_and_timestamps() -> None:
    run = Run(
        task_id="t-1", name="reports.build", state="FAILURE", worker="w1@host", pid=42,
        step="write rows", processed=40, total=100, started=100.0, last_heartbeat=150.0,
        deliveries=4, args="(1,)", exception="ValueError: boom", traceback="Traceback…",
    )  # fmt: skip
    entry = dlq.make_entry(run, Verdict("poison", "delivered 4 times"), None, 200.0,
                           idempotent=True, first_error="KeyError: 'x'")  # fmt: skip
    assert entry["first_error"] == "KeyError: 'x'" and entry["last_error"] == "ValueError: boom"
    assert (entry["step"], entry["processed"], entry["total"]) == ("write rows", 40, 100)
    assert (entry["started"], entry["last_heartbeat"], entry["dead_lettered_at"]) == (
        100.0, 150.0, 200.0)  # fmt: skip
    assert entry["state"] == "dead" and entry["audit"] == [] and entry["idempotent"] is True
    read_back = dlq.DeadLetter.from_doc({k: str(v) for k, v in entry.items() if v is not None})
    assert read_back.processed == 40 and read_back.deliveries == 4 and read_back.idempotent
    assert not read_back.replayable


def test_a_replayed_entry_runs_again_with_its_original_arguments_under_a_new_id(
    env: Env,
) -> None:
    old = env.dead_letter(SECRET, 7, note="urgent")["id"]
    env.gate.set()
    env.app.AsyncResult(old).get(timeout=10)
    env.app.control.revoke(old)  # as the monitor does: every worker now drops this id

    [result] = env.replay([old])

    assert result.outcome == "replayed" and result.new_task_id not in (None, old)
    replayed = env.app.AsyncResult(result.new_task_id).get(timeout=10)
    assert replayed == [SECRET, 7, "urgent", old, "acme"]
    entry = env.entry(old)
    assert entry.state == "replayed"
    [audit] = entry.audit
    assert audit["action"] == "replayed" and audit["new_task_id"] == result.new_task_id
    assert audit["queue"] == "celery" and audit["forced"] is False
    assert abs(audit["at"] - env.store.now()) < 5


def test_an_entry_replays_once_unless_forced(env: Env, redis_client: redis.Redis) -> None:
    old = env.dead_letter(SECRET, 1)["id"]
    [first] = env.replay([old], queue="parked")
    [second] = env.replay([old], queue="parked")
    assert first.outcome == "replayed"
    assert second.outcome == "refused" and not second.ok
    assert second.reason == f"already replayed as {first.new_task_id}; use --force to replay again"
    assert redis_client.llen("parked") == 1

    [forced] = env.replay([old], queue="parked", force=True)
    assert forced.outcome == "replayed" and forced.new_task_id != first.new_task_id
    assert redis_client.llen("parked") == 2
    assert [a["forced"] for a in env.entry(old).audit] == [False, True]


def test_a_dry_run_publishes_nothing_and_changes_nothing(
    env: Env, redis_client: redis.Redis
) -> None:
    old = env.dead_letter(SECRET, 2)["id"]
    before = env.store.dlq.get(old)
    [result] = env.replay([old], queue="parked", dry_run=True)
    assert result.outcome == "dry_run" and result.ok and result.new_task_id is None
    assert (result.name, result.queue, result.args) == ("dlq.charge", "parked", "([redacted], 2)")
    assert SECRET not in json.dumps(result.to_doc())
    assert redis_client.llen("parked") == 0 and redis_client.llen("celery") == 0
    assert env.store.dlq.get(old) == before


def test_a_replay_to_another_queue_lands_there_with_the_original_message(
    env: Env, redis_client: redis.Redis
) -> None:
    old = env.dead_letter(SECRET, 3)["id"]
    [result] = env.replay([old], queue="parked")
    assert result.queue == "parked" and env.entry(old).audit[0]["queue"] == "parked"
    [raw] = redis_client.lrange("parked", 0, -1)
    message = json.loads(raw)
    headers = message["headers"]
    assert headers["id"] == result.new_task_id and headers["task"] == "dlq.charge"
    assert headers[dlq.REPLAY_HEADER] == old and headers["tenant"] == "acme"
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert (args, kwargs) == ([SECRET, 3], {})


def test_a_replay_whose_publish_fails_leaves_the_entry_unchanged_and_replayable(
    env: Env, redis_url: str
) -> None:
    entry = env.dead_letter(SECRET, 4)
    old, other = entry["id"], entry["id"] + "-copy"
    env.store.dlq.add(clone(entry, other))
    before = env.store.dlq.get(old)
    with RedisServer() as down:
        pass  # started and stopped: nothing listens on its port any more
    broken = make_app(down.url, result_backend=redis_url, watchdog_redis_url=redis_url,
                      watchdog_key_prefix=env.wd.settings.key_prefix,
                      broker_connection_retry=False, broker_connection_timeout=1,
                      task_publish_retry=False)  # fmt: skip
    try:
        failed, skipped = dlq.replay(broken, env.store, [old, other], now=env.store.now())
    finally:
        broken.close()
    assert failed.outcome == "failed" and not failed.ok
    assert failed.reason.startswith("publish failed, entry left unchanged: OperationalError")
    assert skipped.outcome == "failed" and skipped.reason.startswith("not attempted: publish")
    assert env.store.dlq.get(old) == before and env.entry(other).state == "dead"
    retried = env.replay([old, other], queue="parked")  # the broker is back: they replay
    assert [r.outcome for r in retried] == ["replayed", "replayed"]


def test_shown_and_exported_documents_never_contain_the_original_arguments(env: Env) -> None:
    old = env.dead_letter(SECRET, 5, note="hi")["id"]
    entry = env.entry(old)
    assert SECRET in json.dumps(entry.message)  # kept for the replay…
    doc = entry.to_doc(env.wd.redactor)
    shown = json.dumps(doc)
    assert SECRET not in shown  # …but never shown
    assert doc["args"] == "([redacted], 5)" and doc["replayable"] is True
    assert doc["message"]["headers"]["tenant"] == "'acme'"
    assert "args" not in doc["message"]["headers"] and "argsrepr" not in shown
    assert doc["message"]["body_bytes"] > 0 and "body" not in doc["message"]

    redacted, full = io.StringIO(), io.StringIO()
    assert dlq.export(env.store, redacted, env.wd.redactor) == 1
    assert dlq.export(env.store, full, env.wd.redactor, include_messages=True) == 1
    assert SECRET not in redacted.getvalue() and json.loads(redacted.getvalue())["id"] == old
    assert json.loads(full.getvalue())["message"]["headers"]["args"] == [SECRET, 5]


def test_an_entry_without_a_saved_message_is_shown_but_not_replayed(env: Env) -> None:
    old = env.dead_letter(SECRET, 6, keep_message=False)["id"]
    entry = env.entry(old)
    assert not entry.replayable and entry.to_doc(env.wd.redactor)["message"] is None
    [result] = env.replay([old])
    assert result.outcome == "refused" and result.reason.startswith("not replayable: ")
    assert dlq.replay_candidates([entry]) == []


def test_a_replay_in_progress_elsewhere_is_refused_and_its_lock_left_alone(env: Env) -> None:
    old = env.dead_letter(SECRET, 8)["id"]
    assert env.store.dlq.lock(old)
    [result] = env.replay([old], queue="parked")
    assert result.outcome == "refused" and "in progress" in result.reason
    assert not env.store.dlq.lock(old)  # still held by the other replayer
    env.store.dlq.unlock(old)
    assert env.entry(old).state == "dead"


def test_replays_in_batches_keep_to_the_rate(env: Env, redis_client: redis.Redis) -> None:
    entry = env.dead_letter(SECRET, 9)
    ids = [entry["id"]] + [f"{entry['id']}-copy{i}" for i in range(5)]
    for task_id in ids[1:]:
        env.store.dlq.add(clone(entry, task_id))
    started = time.monotonic()
    results = env.replay(ids, queue="parked", batch_size=2, rate=10)
    elapsed = time.monotonic() - started
    assert [r.outcome for r in results] == ["replayed"] * 6
    assert redis_client.llen("parked") == 6
    assert 0.4 <= elapsed < 3  # 6 at 10/s in batches of 2: pauses after the 2nd and 4th


def test_entries_resolve_by_unique_prefix_and_purge_by_id_or_all(env: Env) -> None:
    entry = env.dead_letter(SECRET, 10)
    for task_id in ("abc-1", "abc-2", "xyz-1"):
        env.store.dlq.add(clone(entry, task_id))
    assert dlq.resolve(env.store, "xyz") == "xyz-1"
    assert dlq.resolve(env.store, entry["id"][:10]) == entry["id"]
    with pytest.raises(TaskLookupError, match="ambiguous: it matches abc-1, abc-2"):
        dlq.resolve(env.store, "abc")
    with pytest.raises(TaskLookupError, match="no dead-letter entry with id or prefix 'nope'"):
        dlq.resolve(env.store, "nope")
    assert [e.task_id for e in dlq.entries(env.store, task="dlq.*", limit=2)] != []
    assert dlq.purge(env.store, ["abc-1"]) == 1 and env.store.dlq.count() == 3
    assert dlq.purge(env.store) == 3 and dlq.entries(env.store) == []

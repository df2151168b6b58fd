"""The status server's API on real runs: Flower's paths, shapes and query parameters, and ours
under ``/api/watchdog/…`` answering the same documents as the CLI's ``--json``.

One module cluster: an app with a few tasks that succeeded, failed, returned a secret, carried
markup in their arguments, and one still running, on an in-process worker and a real Redis.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from celery import Celery

from celery_watchdog import dlq, install
from celery_watchdog.embedded import RedisServer
from celery_watchdog.model.records import Verdict
from celery_watchdog.monitor.check import run_pass
from celery_watchdog.operations.documents import dlq_doc, schedules_doc
from celery_watchdog.runtime import Watchdog
from celery_watchdog.store import Store
from celery_watchdog.views.documents import TASK_FIELDS
from celery_watchdog.views.incidents import incidents_doc
from celery_watchdog.views.pauses import pauses_doc
from celery_watchdog.views.quarantine import quarantine_doc
from tests.helpers import make_app, run_worker, unique_prefix, wait_for
from tests.http_helpers import OPERATOR, TOKENS, TestClient, bearer, client, get_json
from tests.test_cli import celery
from tests.test_incidents import record

pytestmark = pytest.mark.timeout(90)
SECRET = "hunter2-s3cret-value"
XSS = "<script>alert(1)</script>"
FAST = {"watchdog_flush_interval": 0.1, "watchdog_snapshot_interval": 0.2}


@dataclass
class Cluster:
    app: Celery
    wd: Watchdog
    store: Store
    http: TestClient
    ids: dict[str, str]  # what each task did -> its id
    worker: str
    tasks: dict[str, Any]
    redis_url: str

    def get(self, path: str, **params: Any) -> Any:
        return get_json(self.http, path, **params)

    def raw(self, path: str) -> str:
        answer = self.http.get(path, headers=bearer(OPERATOR))
        assert answer.status_code == 200, answer.text
        return answer.text


@pytest.fixture(scope="module")
def cluster(redis_server: RedisServer) -> Iterator[Cluster]:
    redis_server.start()
    gate = threading.Event()
    app = make_app(redis_server.url, watchdog_key_prefix=unique_prefix("wdhttp"), **FAST,
                   **TOKENS)  # fmt: skip

    @app.task(name="api.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="api.fail", shared=False)
    def fail(msg: str) -> None:
        raise ValueError(msg)

    @app.task(name="api.login", shared=False)
    def login(user: str, password: str) -> str:
        return user

    @app.task(name="api.echo", shared=False)
    def echo(text: str) -> str:
        return text

    @app.task(name="api.credentials", shared=False)
    def credentials() -> dict[str, Any]:
        return {"user": "ann", "password": SECRET, "rows": [1, 2.5, None]}

    @app.task(name="api.wait", shared=False)
    def wait(seconds: float) -> None:
        gate.wait(seconds)

    wd = install(app)
    assert wd is not None
    store = wd.store()
    with run_worker(app, concurrency=4) as worker:
        try:
            ids = {
                "succeeded": add.delay(2, 3).id, "failed": fail.delay("boom: disk full").id,
                "secret": login.delay(user="ann", password=SECRET).id,
                "markup": echo.delay(XSS).id, "credentials": credentials.delay().id,
            }  # fmt: skip
            for task_id in ids.values():
                app.AsyncResult(task_id).get(timeout=10, propagate=False)
            ids["running"] = wait.delay(30).id
            wait_for(lambda: any(r.running for r in store.runs.of_task(ids["running"])),
                     what="the waiting run recorded as running")  # fmt: skip
            wait_for(lambda: len(store.runs.finished(limit=10)) >= 5, what="finished runs")
            wait_for(lambda: store.workers.all(), what="the worker's snapshot")
            tasks = {"add": add, "wait": wait}
            yield Cluster(
                app, wd, store, client(app), ids, worker.hostname, tasks, redis_server.url
            )
        finally:
            gate.set()
    app.close()


def _local(ts: float) -> str:
    """Flower's ``received_start`` format, in local time as Flower reads it."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


# -- Flower's API ----------------------------------------------------------------------------


def test_api_tasks_lists_every_run_with_flowers_fields_and_our_verdict(cluster: Cluster) -> None:
    doc = cluster.get("/api/tasks")
    assert set(cluster.ids.values()) <= set(doc)
    for task_id, task in doc.items():
        assert set(TASK_FIELDS) <= set(task) and task["uuid"] == task_id
        assert task["watchdog"]["health"] in ("ok", "slow")
    assert doc[cluster.ids["succeeded"]]["state"] == "SUCCESS"
    assert doc[cluster.ids["failed"]]["state"] == "FAILURE"
    assert doc[cluster.ids["running"]]["state"] == "STARTED"
    assert doc[cluster.ids["succeeded"]]["worker"] == cluster.worker


def test_api_tasks_filters_by_state_taskname_and_workername_as_flower_does(
    cluster: Cluster,
) -> None:
    ids = cluster.ids
    assert set(cluster.get("/api/tasks", state="FAILURE")) == {ids["failed"]}
    assert set(cluster.get("/api/tasks", taskname="api.echo")) == {ids["markup"]}
    assert set(cluster.get("/api/tasks", taskname="All", state="All")) == set(ids.values())
    assert set(cluster.get("/api/tasks", workername=cluster.worker)) == set(ids.values())
    assert cluster.get("/api/tasks", workername="celery@nowhere") == {}
    assert set(cluster.get("/api/tasks", health="ok,slow")) == set(ids.values())


def test_api_tasks_sorts_and_pages_as_flower_does(cluster: Cluster) -> None:
    by_name = list(cluster.get("/api/tasks", sort_by="name"))
    names = [cluster.get("/api/tasks")[i]["name"] for i in by_name]
    assert names == sorted(names, key=str.casefold)
    newest_first = list(cluster.get("/api/tasks", sort_by="-received"))
    # A run received once has no `received` of its own: its start stands in for it.
    received = [cluster.get("/api/tasks")[i]["started"] for i in newest_first]
    assert received == sorted(received, reverse=True)
    assert list(cluster.get("/api/tasks", sort_by="-received", limit=2)) == newest_first[:2]
    page = cluster.get("/api/tasks", sort_by="-received", limit=2, offset=2)
    assert list(page) == newest_first[2:4]
    assert cluster.get("/api/tasks", offset=100) == {}


def test_api_tasks_bounds_when_tasks_were_received(cluster: Cluster) -> None:
    now = cluster.store.now()
    everything = set(cluster.ids.values())
    assert set(cluster.get("/api/tasks", received_start=_local(now - 3600))) == everything
    assert cluster.get("/api/tasks", received_end=_local(now - 3600)) == {}
    assert cluster.get("/api/tasks", received_start=_local(now + 120)) == {}


def test_api_tasks_searches_with_flowers_query_language(cluster: Cluster) -> None:
    ids = cluster.ids

    def found(query: str) -> set[str]:
        return set(cluster.get("/api/tasks", search=query))

    assert found("disk") == {ids["failed"]}
    assert found("state:FAILURE") == {ids["failed"]}
    assert found("kwargs:user=ann") == {ids["secret"]}
    assert found("name:api.add OR name:api.echo") == {ids["succeeded"], ids["markup"]}
    assert found('"disk full" name:api.fail') == {ids["failed"]}
    assert found(SECRET) == set()  # arguments are searched redacted: no secret oracle
    answer = cluster.http.get("/api/tasks", params={"search": "ab"}, headers=bearer(OPERATOR))
    assert answer.status_code == 400 and "3 characters" in answer.json()["error"]


def test_api_task_info_is_one_task_by_id_or_unique_prefix(cluster: Cluster) -> None:
    task_id = cluster.ids["failed"]
    info = cluster.get(f"/api/task/info/{task_id}")
    assert set(TASK_FIELDS) <= set(info) and info["uuid"] == task_id
    assert info["state"] == "FAILURE" and "disk full" in info["exception"]
    assert info["watchdog"]["runs"][0]["state"] == "FAILURE"
    assert cluster.get(f"/api/task/info/{task_id[:12]}")["uuid"] == task_id
    missing = cluster.http.get("/api/task/info/nosuch-task", headers=bearer(OPERATOR))
    assert missing.status_code == 404 and "nosuch-task" in missing.json()["error"]


def test_api_task_types_lists_the_names_seen(cluster: Cluster) -> None:
    types = cluster.get("/api/task/types")["task-types"]
    assert {"api.add", "api.fail", "api.wait"} <= set(types) and types == sorted(types)


def test_api_task_result_reads_the_result_backend_redacted(cluster: Cluster) -> None:
    ids = cluster.ids
    assert cluster.get(f"/api/task/result/{ids['succeeded']}") == {
        "task-id": ids["succeeded"], "state": "SUCCESS", "result": 5,
    }  # fmt: skip
    failed = cluster.get(f"/api/task/result/{ids['failed']}")
    assert failed["state"] == "FAILURE" and "ValueError" in failed["traceback"]
    credentials = cluster.get(f"/api/task/result/{ids['credentials']}", timeout="1")
    assert credentials["result"] == {"user": "ann", "password": "[redacted]",
                                     "rows": [1, 2.5, None]}  # fmt: skip
    assert SECRET not in cluster.raw(f"/api/task/result/{ids['credentials']}")
    running = cluster.get(f"/api/task/result/{ids['running']}", timeout="0.2")
    assert running["state"] in ("PENDING", "STARTED") and "result" not in running


def test_api_workers_answers_flowers_shape_and_status_map(cluster: Cluster) -> None:
    workers = cluster.get("/api/workers")
    worker = workers[cluster.worker]
    assert {"stats", "active", "active_queues", "registered", "timestamp"} <= set(worker)
    assert worker["stats"]["pool"]["max-concurrency"] == 4
    assert any(a["id"] == cluster.ids["running"] for a in worker["active"])
    assert cluster.get("/api/workers", status="true") == {cluster.worker: True}
    assert list(cluster.get("/api/workers", workername=cluster.worker)) == [cluster.worker]
    unknown = cluster.http.get("/api/workers", params={"workername": "celery@nowhere"},
                               headers=bearer(OPERATOR))  # fmt: skip
    assert unknown.status_code == 404


def test_api_queues_length_lists_each_queue_with_its_messages(cluster: Cluster) -> None:
    doc = cluster.get("/api/queues/length")
    celery_queue = next(q for q in doc["active_queues"] if q["name"] == "celery")
    assert isinstance(celery_queue["messages"], int)
    assert celery_queue["consumers"] and celery_queue["consumers"][0]["worker"] == cluster.worker


def test_revoke_makes_workers_discard_the_task_and_it_shows_revoked(cluster: Cluster) -> None:
    task_id = "revoked-0000-4000-8000-" + unique_prefix("x")[-10:]
    answer = cluster.http.post(f"/api/task/revoke/{task_id}", headers=bearer(OPERATOR),
                               params={"terminate": "false"})  # fmt: skip
    assert answer.status_code == 200
    assert answer.json() == {"message": f"Revoked '{task_id}'", "terminate": False,
                             "signal": "SIGTERM"}  # fmt: skip
    cluster.tasks["add"].apply_async((1, 1), task_id=task_id, countdown=1)
    info = wait_for(lambda: cluster.http.get(f"/api/task/info/{task_id}",
                                             headers=bearer(OPERATOR)).json().get("state"),
                    what="the revoked task recorded")  # fmt: skip
    assert info == "REVOKED"
    bad = cluster.http.post(f"/api/task/revoke/{task_id}", headers=bearer(OPERATOR),
                            params={"terminate": "true", "signal": "SIGNOPE"})  # fmt: skip
    assert bad.status_code == 400 and "signal" in bad.json()["error"]


# -- hostile input ---------------------------------------------------------------------------


def test_markup_in_arguments_comes_back_as_inert_json_text(cluster: Cluster) -> None:
    task_id = cluster.ids["markup"]
    for path in ("/api/tasks", f"/api/task/info/{task_id}", f"/api/task/result/{task_id}"):
        text = cluster.raw(path)
        assert "<script" not in text and "</script" not in text
        assert "\\u003cscript\\u003e" in text
    assert XSS in cluster.get(f"/api/task/info/{task_id}")["args"]
    assert cluster.get(f"/api/task/result/{task_id}")["result"] == XSS


def test_secret_arguments_only_ever_come_back_redacted(cluster: Cluster) -> None:
    task_id = cluster.ids["secret"]
    result = "/api/task/result/" + cluster.ids["credentials"]
    for path in ("/api/tasks", f"/api/task/info/{task_id}", "/api/workers",
                 "/api/watchdog/status", result):  # fmt: skip
        assert SECRET not in cluster.raw(path), path
    assert "[redacted]" in cluster.get(f"/api/task/info/{task_id}")["kwargs"]


# -- ours: the CLI's documents ---------------------------------------------------------------


def _without_time(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "timestamp"}


def test_our_reads_answer_the_clis_documents(cluster: Cluster) -> None:
    store, wd = cluster.store, cluster.wd
    now = store.now()
    for path, expected in (
        ("/api/watchdog/incidents", incidents_doc(store, now)),
        ("/api/watchdog/pauses", pauses_doc(store, now)),
        ("/api/watchdog/quarantine", quarantine_doc(store, now)),
        ("/api/watchdog/schedules", schedules_doc(wd, store, now)),
    ):
        assert _without_time(cluster.get(path)) == _without_time(expected), path
    status = cluster.get("/api/watchdog/status")
    assert {"api.add", "api.wait"} <= set(status["tasks"])
    assert status["tasks"]["api.wait"]["running"] == 1 and status["workers"]["online"] == 1
    ours, flowers = cluster.get("/api/watchdog/queues"), cluster.get("/api/queues/length")
    assert [q["name"] for q in ours["active_queues"]] == [
        q["name"] for q in flowers["active_queues"]
    ]


def test_dead_letters_are_listed_shown_and_replayed_dry_run_first(cluster: Cluster) -> None:
    store = cluster.store
    running = next(r for r in store.runs.of_task(cluster.ids["running"]) if r.running)
    message = wait_for(lambda: store.messages.get(running.task_id), what="the saved message")
    entry = dlq.make_entry(running, Verdict("stuck", "no heartbeat for 300 s"), message,
                           store.now(), idempotent=True)  # fmt: skip
    store.dlq.add(entry)
    task_id = running.task_id
    listed = cluster.get("/api/watchdog/dlq")
    assert listed == dlq_doc(cluster.wd, store) and task_id in listed
    out = celery("dlq", "list", "--json", redis_url=cluster.redis_url,
                 prefix=cluster.wd.settings.key_prefix)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == listed  # the CLI prints the very same document
    assert cluster.get(f"/api/watchdog/dlq/{task_id[:10]}")["id"] == task_id

    def replay(**params: str) -> Any:
        return cluster.http.post(f"/api/watchdog/dlq/{task_id[:10]}/replay", params=params,
                                 headers=bearer(OPERATOR))  # fmt: skip

    dry = replay(dry_run="true")
    assert dry.status_code == 200 and dry.json()["results"][0]["outcome"] == "dry_run"
    done = replay()
    assert done.status_code == 200, done.text
    result = done.json()["results"][0]
    assert result["outcome"] == "replayed" and result["new_task_id"] != task_id
    again = replay()
    assert again.status_code == 409 and again.json()["ok"] is False
    assert "replayed" in again.json()["error"]


def test_pause_and_resume_keep_the_stores_audit(cluster: Cluster) -> None:
    http, auth = cluster.http, bearer(OPERATOR)
    paused = http.post("/api/watchdog/pause", headers=auth,
                       data={"task": "api.later", "for": "30m", "note": "vendor down"})  # fmt: skip
    assert paused.status_code == 200 and paused.json()["target"] == "task:api.later"
    listed = cluster.get("/api/watchdog/pauses")
    assert [p["target"] for p in listed["paused"]] == ["task:api.later"]
    assert listed["audit"][0]["by"] == "operator token from testclient"
    assert listed["audit"][0]["note"] == "vendor down"
    assert http.post("/api/watchdog/resume", headers=auth,
                     json={"task": "api.later"}).json()["resumed"] is True  # fmt: skip
    again = http.post("/api/watchdog/resume", headers=auth, json={"task": "api.later"})
    assert again.status_code == 409 and "not paused" in again.json()["error"]
    neither = http.post("/api/watchdog/pause", headers=auth)
    assert neither.status_code == 400
    bad = http.post("/api/watchdog/pause", headers=auth, data={"queue": "q", "for": "soon"})
    assert bad.status_code == 400 and "duration" in bad.json()["error"]


def test_quarantine_release_of_an_unknown_input_is_not_found(cluster: Cluster) -> None:
    answer = cluster.http.post("/api/watchdog/quarantine/ffff/release", headers=bearer(OPERATOR))
    assert answer.status_code == 404


# -- incidents and health, each on an app of its own -----------------------------------------


def test_incidents_are_acknowledged_snoozed_and_resolved_with_who_and_why(
    redis_url: str,
) -> None:
    app = make_app(redis_url, watchdog_on_stuck="alert", watchdog_heartbeat_timeout=60, **TOKENS)
    wd = install(app)
    assert wd is not None
    store = wd.store()
    record(wd, store, "reports.build", step="Export to PDF")
    run_pass(wd, store)
    (incident,) = store.incidents.active()
    http, auth = client(app), bearer(OPERATOR)
    base = f"/api/watchdog/incidents/{incident.id[:6]}"
    assert get_json(http, base)["id"] == incident.id

    acked = http.post(f"{base}/ack", headers=auth, data={"note": "restarting the PDF service"})
    assert acked.status_code == 200 and acked.json() == {
        "ok": True, "target": incident.id, "state": "acknowledged",
    }  # fmt: skip
    doc = get_json(http, "/api/watchdog/incidents")["incidents"][0]
    assert doc["state"] == "acknowledged" and doc["note"] == "restarting the PDF service"
    assert doc["by"] == "operator token from testclient"

    snoozed = http.post(f"{base}/snooze", headers=auth, json={"for": "30m"})
    assert snoozed.status_code == 200 and snoozed.json()["until"] > store.now() + 1700
    bad = http.post(f"{base}/snooze", headers=auth, json={"for": "soon"})
    assert bad.status_code == 400 and "cannot snooze" in bad.json()["error"]

    resolved = http.post(f"{base}/resolve", headers=auth, data={"note": "restarted"})
    assert resolved.status_code == 200 and resolved.json()["state"] == "resolved"
    assert resolved.json()["deliveries"][0]["ok"] is True
    assert http.post(f"{base}/resolve", headers=auth).status_code == 409
    assert get_json(http, "/api/watchdog/incidents")["incidents"] == []
    assert get_json(http, "/api/watchdog/incidents", all="true")["incidents"][0]["id"] == (
        incident.id
    )


def test_healthz_is_ok_only_while_the_monitor_passes_and_critical_queues_are_served(
    redis_url: str,
) -> None:
    policies = {"payments": {"critical": True, "action": "Take a payment"}}
    app = make_app(redis_url, watchdog_queue_policies=policies)
    wd = install(app)
    assert wd is not None
    store = wd.store()
    http = client(app)

    never = http.get("/healthz")
    assert never.status_code == 503 and never.json()["ok"] is False
    assert any("no monitor pass has ever completed" in r for r in never.json()["reasons"])

    run_pass(wd, store)
    unserved = http.get("/healthz").json()["reasons"]
    assert unserved == ["critical queue 'payments' has no live worker consuming it"]

    store.workers.write_snapshot("w1@host", {"active": [], "queues": ["payments"]}, ttl=60,
                                 online=True)  # fmt: skip
    healthy = http.get("/healthz")
    assert healthy.status_code == 200 and healthy.json() == {"ok": True}
    assert http.get("/healthcheck").text == "OK"

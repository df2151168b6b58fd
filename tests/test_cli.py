"""``celery -A tests.workerapp watchdog …`` as a person and a script run it: a real subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from celery_watchdog import WatchedTask, install
from celery_watchdog.embedded import RedisServer
from celery_watchdog.views import documents as views
from tests import workerapp
from tests.helpers import REPO_ROOT, run_worker, unique_prefix, wait_for

FAST = {"watchdog_flush_interval": 0.1, "watchdog_snapshot_interval": 0.2}


def celery(
    *args: str, redis_url: str, prefix: str = "watchdog", conf: dict[str, Any] | None = None,
    app: str = "tests.workerapp", pythonpath: str = "",
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    env = dict(os.environ)
    env.update(
        WATCHDOG_TEST_REDIS_URL=redis_url,
        WATCHDOG_TEST_PREFIX=prefix,
        WATCHDOG_TEST_CONF=json.dumps(conf or {}),
        PYTHONPATH=os.pathsep.join(filter(None, [pythonpath, str(REPO_ROOT)])),
    )
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", app, "watchdog", *args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@dataclass
class Cluster:
    """A worker that ran a few tasks and still runs one, on a Redis of this module's own."""

    redis_url: str
    prefix: str
    app: Celery
    worker: str
    ids: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return celery(*args, redis_url=self.redis_url, prefix=self.prefix)

    def json(self, *args: str) -> Any:
        out = self.run(*args, "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    gate = threading.Event()
    with RedisServer() as server:
        prefix = unique_prefix("wdcli")
        app = workerapp.create_app(server.url, prefix, FAST)

        @app.task(name="cli.export", shared=False, base=WatchedTask, bind=True)
        def export(self: WatchedTask, rows: int) -> None:
            with self.step("write rows"):
                for i in range(1, 5):
                    self.heartbeat(processed=i, total=rows)
                gate.wait(60)

        wd = install(app)
        assert wd is not None
        store = wd.store()
        with run_worker(app, concurrency=3) as worker:
            ids = {
                "add": workerapp.task(app, "add").apply_async((2, 3), task_id="abc-1").id,
                "add2": workerapp.task(app, "add").apply_async((4, 5), task_id="abc-2").id,
                "secret": workerapp.task(app, "with_secret").delay("hunter2", 7).id,
                "fail": workerapp.task(app, "fail").delay("card declined").id,
                "export": export.delay(10).id,
            }
            wait_for(
                lambda: (
                    len(views.tasks_doc(store, wd)) == 5
                    and views.workers_doc(store)[worker.hostname]["active"]
                ),
                what="4 finished tasks, 1 running, and a worker snapshot",
            )
            yield Cluster(server.url, prefix, app, worker.hostname, ids)
            gate.set()
        app.close()


def test_status_prints_one_row_per_task_name_with_counts_and_success_rates(
    cluster: Cluster,
) -> None:
    out = cluster.run("status")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "Workers: 1 online, 0 offline"
    header = next(line for line in lines if line.startswith("TASK"))
    for column in ("RUNNING", "OK", "SLOW", "STUCK", "SUCCESS 1H", "SUCCESS 24H", "P95",
                   "LAST SUCCESS", "LAST ERROR"):  # fmt: skip
        assert column in header
    add = next(line for line in lines if line.startswith("tests.workerapp.add "))
    assert "100%" in add and re.search(r"\d+ s ago|just now", add)
    fail = next(line for line in lines if line.startswith("tests.workerapp.fail "))
    assert "0%" in fail and "ValueError: card declined" in fail
    export = next(line for line in lines if line.startswith("cli.export "))
    assert export.split()[1:3] == ["1", "1"]  # running 1, ok 1


def test_status_json_has_per_name_counts_rates_and_p95(cluster: Cluster) -> None:
    doc = cluster.json("status")
    add = doc["tasks"]["tests.workerapp.add"]
    assert add["success_rate_1h"] == 1.0 and add["counts_1h"] == {"succeeded": 2}
    assert add["p95_runtime"] is not None and add["last_success"] is not None
    assert doc["tasks"]["cli.export"]["health"]["ok"] == 1


def test_tasks_prints_aligned_rows_with_relative_times_and_a_progress_bar(
    cluster: Cluster,
) -> None:
    out = cluster.run("tasks")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "1 running, 4 finished"
    header = lines[2]
    assert header.split() == ["ID", "NAME", "STATE", "HEALTH", "WORKER", "STARTED", "RUNTIME",
                              "PROGRESS", "DETAIL"]  # fmt: skip
    rows = lines[3:]
    assert len(rows) == 5
    running = rows[0]  # running runs come first
    assert running.startswith(cluster.ids["export"][:8])
    assert "[####--------] 4/10" in running and "step 'write rows'" in running
    for row in rows:  # aligned: every column starts where its header does
        assert row[header.index("STATE")] != " " and row[header.index("STATE") - 1] == " "
    assert all(re.search(r"\d+ s ago|just now|\d+ min ago", row) for row in rows)
    failed = next(row for row in rows if row.startswith(cluster.ids["fail"][:8]))
    assert "FAILURE" in failed and "ValueError: card declined" in failed


def test_tasks_json_is_flowers_api_tasks_with_a_watchdog_object(cluster: Cluster) -> None:
    doc = cluster.json("tasks")
    assert set(doc) == set(cluster.ids.values())
    for task_id, task in doc.items():
        assert set(views.TASK_FIELDS) <= set(task) and task["uuid"] == task_id
        assert {"health", "last_heartbeat", "step", "processed", "total", "deliveries"} <= set(
            task["watchdog"]
        )
    export = doc[cluster.ids["export"]]
    assert export["state"] == "STARTED" and export["worker"] == cluster.worker
    assert (export["watchdog"]["processed"], export["watchdog"]["total"]) == (4, 10)
    assert doc[cluster.ids["secret"]]["args"] == "([redacted], 7)"


def test_tasks_filters_by_state_taskname_workername_health_and_limit(cluster: Cluster) -> None:
    assert list(cluster.json("tasks", "--state", "FAILURE")) == [cluster.ids["fail"]]
    some = cluster.json(
        "tasks", "--taskname", "tests.workerapp.*", "--workername", cluster.worker,
        "--health", "ok", "--limit", "3",
    )  # fmt: skip
    assert len(some) == 3 and all(t["name"].startswith("tests.workerapp.") for t in some.values())
    bad = cluster.run("tasks", "--health", "sleepy")
    assert bad.returncode == 2 and "sleepy" in bad.stderr and "stuck" in bad.stderr


def test_task_accepts_a_unique_prefix_and_prints_flowers_task_info(cluster: Cluster) -> None:
    task_id = cluster.ids["fail"]
    doc = cluster.json("task", task_id[:10])
    assert doc["uuid"] == task_id and doc["state"] == "FAILURE"
    assert doc["exception"] == "ValueError: card declined"
    assert set(views.TASK_FIELDS) <= set(doc) and doc["watchdog"]["runs"]


def test_task_human_output_shows_where_it_is_and_its_progress(cluster: Cluster) -> None:
    out = cluster.run("task", cluster.ids["export"])
    assert out.returncode == 0, out.stderr
    fields = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in out.stdout.splitlines())
    assert fields["State"] == "STARTED" and fields["Health"] == "ok"
    assert fields["Worker"].startswith(cluster.worker)
    assert fields["Progress"] == "[####--------] 4/10"
    assert fields["Step"].startswith("write rows (for ")
    assert re.match(r"(\d+ s ago|just now) \(\d{4}-\d\d-\d\d ", fields["Heartbeat"])


def test_an_unknown_task_id_fails_with_a_clear_message(cluster: Cluster) -> None:
    out = cluster.run("task", "no-such-task")
    assert out.returncode == 1
    assert out.stderr.strip() == (
        "Error: no task with id or prefix 'no-such-task' (unknown, or finished more than "
        "watchdog_retention=86400 s ago)"
    )
    assert "Traceback" not in out.stderr


def test_an_ambiguous_prefix_fails_and_names_the_candidates(cluster: Cluster) -> None:
    out = cluster.run("task", "abc-")
    assert out.returncode == 1
    assert "ambiguous" in out.stderr and "abc-1" in out.stderr and "abc-2" in out.stderr


def test_workers_lists_the_worker_and_its_active_task(cluster: Cluster) -> None:
    out = cluster.run("workers")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split()[:3] == ["WORKER", "STATUS", "PID"]
    assert re.search(rf"^{re.escape(cluster.worker)}\s+online\s+{os.getpid()}\s+threads\s+3\s+1",
                     out.stdout, re.M)  # fmt: skip
    assert "Active tasks:" in out.stdout and cluster.ids["export"][:8] in out.stdout

    doc = cluster.json("workers")
    entry = doc[cluster.worker]
    assert entry["stats"]["pool"]["max-concurrency"] == 3
    assert [a["id"] for a in entry["active"]] == [cluster.ids["export"]]
    assert entry["active_queues"][0]["name"] == "celery"


def test_an_unreachable_redis_exits_2_with_one_line_naming_the_url() -> None:
    out = celery("status", redis_url="redis://:s3cret@127.0.0.1:1/0")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("Error: cannot reach Redis at redis://:***@127.0.0.1:1/0: ")
    assert "s3cret" not in out.stderr


def test_a_bad_setting_exits_2_naming_the_setting_and_the_accepted_values() -> None:
    out = celery("tasks", redis_url="redis://127.0.0.1:1/0", conf={"watchdog_on_stuck": "panic"})
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "Error: invalid configuration: watchdog_on_stuck='panic' is not valid: "
        'expected "revoke" or "alert"'
    )


def test_a_bad_task_option_exits_2_naming_the_task(tmp_path: Path) -> None:
    (tmp_path / "badopts.py").write_text(
        "from celery import Celery\n"
        "app = Celery('badopts', broker='redis://127.0.0.1:1/0')\n"
        "app.conf.imports = ['celery_watchdog']\n"
        "@app.task(name='badopts.t', heartbeat_timeout=-5)\n"
        "def t():\n"
        "    pass\n"
    )
    out = celery("status", redis_url="", app="badopts", pythonpath=str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "Error: invalid configuration: badopts.t.heartbeat_timeout=-5 is not valid: "
        "expected a number of seconds between 0.1 and 2592000 (30 days), or a duration such as "
        "'30s', '5m', '2h'"
    )


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    """The whole of a failed command's output: exit 2, one line on stderr, no traceback."""
    assert out.returncode == 2, out.stderr
    assert out.stdout == "" and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("Error: ")
    return out.stderr.strip()


def test_a_wrong_or_missing_redis_password_exits_2_naming_auth_not_reachability() -> None:
    with RedisServer() as server:
        admin = redis.Redis.from_url(server.url)
        admin.config_set("requirepass", "s3cret")
        wrong = server.url.replace("redis://", "redis://:wrong-pw@")
        masked = server.url.replace("redis://", "redis://:***@")
        assert one_line_error(celery("status", redis_url=wrong)) == (
            f"Error: Redis at {masked} refused the password (AuthenticationError): "
            "check watchdog_redis_url"
        )
        assert one_line_error(celery("tasks", redis_url=server.url)) == (
            f"Error: Redis at {server.url} requires a password (AuthenticationError): "
            "add it to watchdog_redis_url"
        )
        admin.close()


def test_a_full_redis_makes_check_say_out_of_memory_not_unreachable() -> None:
    with RedisServer() as server:
        admin = redis.Redis.from_url(server.url)
        admin.set("ballast", "x" * 3_000_000)
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", "1mb")
        admin.close()
        assert one_line_error(celery("check", redis_url=server.url)) == (
            f"Error: Redis at {server.url} is out of memory (maxmemory reached): the watchdog "
            "cannot write; free memory or raise maxmemory"
        )


def test_a_password_in_the_redis_urls_query_is_masked_too() -> None:
    line = one_line_error(celery("status", redis_url="redis://127.0.0.1:1/0?password=s3cret"))
    assert line.startswith("Error: cannot reach Redis at redis://127.0.0.1:1/0?password=***: ")
    assert "s3cret" not in line


def test_a_non_finite_setting_exits_2_in_one_line_with_the_range() -> None:
    out = celery("status", redis_url="redis://127.0.0.1:1/0",
                 conf={"watchdog_check_interval": float("inf")})  # fmt: skip
    assert one_line_error(out) == (
        "Error: invalid configuration: watchdog_check_interval=inf is not valid: expected a "
        "number of seconds between 0.1 and 86400 (1 day), or a duration such as '30s', '5m', "
        "'2h'"
    )


def test_a_bad_alert_channel_exits_2_without_any_channels_password_or_token() -> None:
    channels = [
        "smtp://ops:mailpass@mail.example.com?to=oncall@example.com",
        "slack+https://hooks.slack.com/services/T000/B000/slacktoken123",
        "smtp://admin:hunter2@broken.example.com",  # no ?to=: refused
    ]
    out = celery("status", redis_url="redis://127.0.0.1:1/0",
                 conf={"watchdog_alert_channels": channels})  # fmt: skip
    line = one_line_error(out)
    assert line.startswith(
        "Error: invalid configuration: watchdog_alert_channels[2]="
        "'smtp://admin:***@broken.example.com' is not valid"
    )
    assert not [s for s in ("mailpass", "slacktoken123", "hunter2", "hooks.slack") if s in line]


def test_a_disabled_watchdog_says_so_and_exits_2() -> None:
    out = celery("workers", redis_url="redis://127.0.0.1:1/0", conf={"watchdog_enabled": False})
    assert out.returncode == 2
    assert "watchdog_enabled=False" in out.stderr


def test_relative_times_read_as_a_person_would_say_them() -> None:
    from celery_watchdog.model.humanize import ago, duration

    now = 1_000_000.0
    assert ago(now - 0.2, now) == "just now"
    assert ago(now - 42, now) == "42 s ago"
    assert ago(now - 180, now) == "3 min ago"
    assert ago(now - 2 * 3600 - 600, now) == "2 h 10 min ago"
    assert ago(now + 120, now) == "in 2 min"
    assert ago(None, now) == "-"
    assert (duration(0.0123), duration(4.25), duration(185)) == ("12 ms", "4.2 s", "3 min 5 s")


def test_a_progress_bar_never_shows_more_than_is_done() -> None:
    from celery_watchdog.model.humanize import progress_bar

    assert progress_bar(42, 100) == "[#####-------] 42/100"
    assert progress_bar(99, 100) == "[###########-] 99/100"
    assert progress_bar(100, 100) == "[############] 100/100"
    assert progress_bar(7, None) == "7 done"
    assert progress_bar(None, None) == ""


def test_tables_align_every_column_on_its_widest_cell() -> None:
    from celery_watchdog.model.humanize import table

    text = table(["ID", "NAME"], [["a", "short"], ["abcdef", None]])
    assert text.splitlines() == ["ID      NAME", "a       short", "abcdef  -"]

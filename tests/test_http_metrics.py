"""``GET /metrics`` on ``create_app(app)``, parsed with prometheus-client's own parser, after
real runs on a real worker (and records written through the store's write path)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import prometheus_client
import pytest
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from celery_watchdog import WatchedTask, install
from celery_watchdog.http import metrics as http_metrics
from celery_watchdog.monitor.check import run_pass
from celery_watchdog.recording.handle import RunHandle
from celery_watchdog.runtime import Watchdog
from celery_watchdog.store import Store
from celery_watchdog.views import metrics as figures
from tests.helpers import make_app, run_worker, wait_for
from tests.http_helpers import OPERATOR, READER, TOKENS, TestClient, bearer, client

pytestmark = pytest.mark.timeout(90)

FAST = {"watchdog_flush_interval": 0.1, "watchdog_snapshot_interval": 0.2}
WAITING = "metrics.waiting"  # a queue nobody consumes
HOSTILE = 'evil\ud800\n"<script>alert(1)</script>\\'


Families = dict[str, Any]


def scrape(http: TestClient, token: str | None = None) -> Families:
    answer = http.get("/metrics", headers=bearer(token) if token else {})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == prometheus_client.CONTENT_TYPE_LATEST
    return {f.name: f for f in text_string_to_metric_families(answer.text)}


def samples(families: Families, metric: str, /, **labels: str) -> list[Sample]:
    """The samples named ``metric`` (a counter's are ``<family>_total``) with these labels."""
    return [
        s for f in families.values() for s in f.samples
        if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items())
    ]  # fmt: skip


def value(families: Families, metric: str, /, **labels: str) -> float | None:
    found = samples(families, metric, **labels)
    assert len(found) <= 1, found
    return found[0].value if found else None


def no_scrape_errors(families: Families) -> bool:
    return not [s for s in families["celery_watchdog_scrape_errors"].samples if s.value]


class Cluster:
    """An app with a worker that ran known work: 3 successes, 2 failures, one run stuck."""

    def __init__(self, redis_url: str) -> None:
        self.app: Celery = make_app(
            redis_url, task_routes={"metrics.later": {"queue": WAITING}}, **FAST
        )
        self.gate = threading.Event()
        gate = self.gate

        @self.app.task(name="metrics.add", shared=False)
        def add(x: int, y: int) -> int:
            return x + y

        @self.app.task(name="metrics.fail", shared=False)
        def fail() -> None:
            raise ValueError("the invoice service said no")

        @self.app.task(name="metrics.later", shared=False)
        def later() -> None:
            return None

        @self.app.task(name="metrics.stuck", shared=False, base=WatchedTask, bind=True,
                       heartbeat_timeout=0.5)  # fmt: skip
        def stuck(self: WatchedTask) -> None:
            self.heartbeat(step="call vendor")
            gate.wait(30)

        self.tasks = {"add": add, "fail": fail, "later": later, "stuck": stuck}
        wd = install(self.app)
        assert wd is not None
        self.wd: Watchdog = wd
        self.store: Store = wd.store()
        self.http = client(self.app)


@pytest.fixture
def cluster(redis_url: str) -> Iterator[Cluster]:
    cluster = Cluster(redis_url)
    yield cluster
    cluster.gate.set()
    cluster.app.close()


def test_metrics_after_known_work_show_celery_exporters_and_our_families(
    cluster: Cluster,
) -> None:
    tasks = cluster.tasks
    with run_worker(cluster.app, concurrency=4) as worker:
        host = worker.hostname
        for i in range(3):
            assert tasks["add"].delay(i, 1).get(timeout=10) == i + 1
        for _ in range(2):
            with pytest.raises(ValueError):
                tasks["fail"].delay().get(timeout=10)
        for _ in range(4):
            tasks["later"].delay()
        stuck = tasks["stuck"].delay()

        def judged_stuck() -> Families | None:
            fams = scrape(cluster.http)
            done = value(fams, "celery_task_started_total", name="metrics.add", hostname=host)
            found = value(fams, "celery_watchdog_runs", task="metrics.stuck", health="stuck")
            return fams if found == 1 and done == 3 else None

        fams = wait_for(judged_stuck, timeout=15, what="the stuck run on /metrics")
        assert no_scrape_errors(fams)

        # celery-exporter's names, types and labels
        assert fams["celery_task_started"].type == "counter"
        assert value(fams, "celery_task_started_total", name="metrics.fail", hostname=host) == 2
        assert fams["celery_worker_up"].type == "gauge"
        assert value(fams, "celery_worker_up", hostname=host) == 1
        assert value(fams, "celery_worker_tasks_active", hostname=host) == 1
        assert value(fams, "celery_queue_length", queue_name=WAITING) == 4
        assert value(fams, "celery_queue_length", queue_name="celery") == 0
        assert value(fams, "celery_active_worker_count", queue_name="celery") == 1
        assert value(fams, "celery_active_consumer_count", queue_name=WAITING) == 0
        assert value(fams, "celery_active_process_count", queue_name="celery") == 4
        # Counters and the runtime histogram since the first run, per task name.
        assert fams["celery_task_succeeded"].type == "counter"
        assert value(fams, "celery_task_succeeded_total", name="metrics.add") == 3
        assert value(fams, "celery_task_failed_total", name="metrics.fail") == 2
        assert value(fams, "celery_task_failed_total", name="metrics.add") is None  # none yet
        assert fams["celery_task_runtime"].type == "histogram"
        assert value(fams, "celery_task_runtime_count", name="metrics.add") == 3
        assert value(fams, "celery_task_runtime_bucket", name="metrics.add", le="+Inf") == 3
        assert value(fams, "celery_task_runtime_bucket", name="metrics.add", le="10.0") == 3
        assert (value(fams, "celery_task_runtime_sum", name="metrics.add") or 0) < 3
        # ours
        outcomes = "celery_watchdog_task_outcomes_last_hour"
        assert value(fams, outcomes, task="metrics.add", outcome="succeeded") == 3
        assert value(fams, outcomes, task="metrics.fail", outcome="failed") == 2
        since = value(fams, "celery_watchdog_task_last_success_seconds", task="metrics.add")
        assert since is not None and 0 <= since < 30
        assert value(fams, "celery_watchdog_task_last_success_seconds", task="metrics.fail") is None
        assert value(fams, "celery_watchdog_task_failing_streak", task="metrics.fail") == 2
        assert value(fams, "celery_watchdog_task_runtime_seconds", task="metrics.add",
                     percentile="p95") is not None  # fmt: skip
        oldest = value(fams, "celery_watchdog_queue_oldest_age_seconds", queue_name=WAITING)
        assert oldest is not None and 0 < oldest < 60
        assert value(fams, "celery_watchdog_queue_oldest_age_is_lower_bound",
                     queue_name=WAITING) == 0  # stamped by the producer: an exact age  # fmt: skip
        assert value(fams, "celery_watchdog_dead_letters") == 0
        assert value(fams, "celery_watchdog_monitor_last_pass_seconds") is None  # never passed
        assert value(fams, "celery_watchdog_monitor_blind") == 1

        run_pass(cluster.wd, cluster.store)  # judges the run stuck: incident, dead letter
        [incident] = cluster.store.incidents.active()
        fams = scrape(cluster.http)
        assert no_scrape_errors(fams)
        assert value(fams, "celery_watchdog_incidents_open", kind="stuck",
                     severity=incident.severity) == 1  # fmt: skip
        assert value(fams, "celery_watchdog_dead_letters") == cluster.store.dlq.count() == 1
        last_pass = value(fams, "celery_watchdog_monitor_last_pass_seconds")
        assert last_pass is not None and 0 <= last_pass < 10
        assert value(fams, "celery_watchdog_monitor_check_interval_seconds") == 10
        assert value(fams, "celery_watchdog_quarantined_fingerprints") == 0
        assert value(fams, "celery_watchdog_alert_delivery_failures_total", channel="log") == 0
        assert value(fams, "celery_watchdog_alert_deliveries_total", channel="log") == 1
        assert value(fams, "celery_watchdog_alert_channel_ok", channel="log") == 1
        cluster.gate.set()
        stuck.get(timeout=10, propagate=False)


def _record_run(wd: Watchdog, name: str, host: str, outcome: str) -> None:
    """A run of ``name`` on ``host`` through the recorder's write path: begun, then ended."""
    recorder = wd.recorder
    handle = RunHandle(str(uuid.uuid4()), name, host, watched=True, policy=wd.policy(name),
                       pid=4242)  # fmt: skip
    recorder.start_run(handle)
    recorder.end_run(handle, {"succeeded": "SUCCESS", "failed": "FAILURE"}[outcome])
    assert recorder.flush()


def test_hostile_task_queue_and_host_names_never_break_the_scrape(redis_url: str) -> None:
    # The hostile queue name has no lone surrogate: no Redis client can send one as a key.
    queue = 'q"\n<script>x</script>'
    app = make_app(redis_url, task_routes={HOSTILE: {"queue": queue}}, **FAST)
    wd = install(app)
    assert wd is not None
    store = wd.store()
    host = 'celery@"\n<img src=x onerror=alert(1)>'
    _record_run(wd, HOSTILE, host, "succeeded")
    _record_run(wd, HOSTILE, host, "failed")
    # A worker's snapshot with the raw name (a lone surrogate) in its counts and registered
    # tasks: stored with the surrogate escaped, never refused whole.
    snapshot = {"queues": [queue], "total": {HOSTILE: 2}, "registered": [HOSTILE],
                "active": [], "started": float("nan")}  # fmt: skip
    store.workers.write_snapshot(host, snapshot, ttl=60, online=True)
    app.send_task(HOSTILE)  # routed to the hostile queue, where it waits

    answer = client(app).get("/metrics")
    assert answer.status_code == 200
    assert "<script>" in answer.text  # escaped by nothing but the format: it is plain text
    fams = {f.name: f for f in text_string_to_metric_families(answer.text)}
    assert no_scrape_errors(fams)
    shown = 'evil\\ud800 "<script>alert(1)</script>\\'  # one line, the surrogate as its escape
    outcomes = "celery_watchdog_task_outcomes_last_hour"
    assert value(fams, outcomes, task=shown, outcome="succeeded") == 1
    assert value(fams, outcomes, task=shown, outcome="failed") == 1
    shown_host = 'celery@" <img src=x onerror=alert(1)>'
    assert value(fams, "celery_task_started_total", name=shown, hostname=shown_host) == 2
    assert value(fams, "celery_queue_length", queue_name='q" <script>x</script>') == 1
    labels = [v for f in fams.values() for s in f.samples for v in s.labels.values()]
    assert not [v for v in labels if "\n" in v or "\ud800" in v]
    app.close()


def test_task_and_queue_names_are_capped_the_rest_summed_as_other(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(figures, "TASK_NAMES_MAX", 3)
    monkeypatch.setattr(figures, "QUEUES_MAX", 2)
    queues = [f"capped.q{i}" for i in range(4)]
    app = make_app(redis_url, task_routes={f"capped.t{i}": {"queue": q}
                                           for i, q in enumerate(queues)}, **FAST)  # fmt: skip
    wd = install(app)
    assert wd is not None
    for i in range(5):
        _record_run(wd, f"capped.t{i}", "celery@capped", "succeeded")
    for i, q in enumerate(queues):
        for _ in range(i + 1):
            app.send_task(f"capped.t{i}", queue=q)

    fams = scrape(client(app))
    shown = {s.labels["task"]: s.value
             for s in samples(fams, "celery_watchdog_task_outcomes_last_hour")}  # fmt: skip
    # the three most recently seen names, the other two summed
    assert shown == {"capped.t4": 1, "capped.t3": 1, "capped.t2": 1, "other": 2}
    lengths = {s.labels["queue_name"]: s.value for s in samples(fams, "celery_queue_length")}
    # the two deepest queues, the others ("celery" too, empty) summed
    assert lengths == {"capped.q3": 4, "capped.q2": 3, "other": 3}
    app.close()


def test_metrics_need_the_read_token_when_one_is_set(redis_url: str) -> None:
    app = make_app(redis_url, **TOKENS)
    install(app)
    http = client(app)
    assert http.get("/metrics").status_code == 401
    assert http.get("/metrics", headers=bearer("wrong")).status_code == 401
    assert "celery_watchdog_scrape_errors" in scrape(http, READER)
    assert "celery_watchdog_scrape_errors" in scrape(http, OPERATOR)
    app.close()


def test_a_broker_that_does_not_answer_costs_only_the_queue_figures(redis_url: str) -> None:
    dead = f"redis://127.0.0.1:{_closed_port()}/0"
    app = make_app(redis_url, broker_url=dead)
    wd = install(app)
    assert wd is not None
    _record_run(wd, "broker.down", "celery@h", "succeeded")
    fams = scrape(client(app))
    assert value(fams, "celery_watchdog_scrape_errors", part="queues") == 1  # "celery"
    assert value(fams, "celery_watchdog_scrape_errors", part="status") == 0
    assert "celery_queue_length" not in fams or not fams["celery_queue_length"].samples
    assert value(fams, "celery_watchdog_task_outcomes_last_hour", task="broker.down",
                 outcome="succeeded") == 1  # fmt: skip
    app.close()


def test_with_its_redis_down_the_scrape_still_answers_and_counts_every_part(
    redis_url: str,
) -> None:
    app = make_app(redis_url, watchdog_redis_url=f"redis://127.0.0.1:{_closed_port()}/0")
    install(app)
    fams = scrape(client(app))
    errors = {s.labels["part"]: s.value for s in fams["celery_watchdog_scrape_errors"].samples}
    assert errors == dict.fromkeys(http_metrics.PARTS, 1)
    assert [s.name for f in fams.values() for s in f.samples] == [
        *(["celery_watchdog_scrape_errors"] * len(http_metrics.PARTS)),
        "celery_watchdog_scrape_duration_seconds",
    ]
    app.close()


def test_two_apps_never_share_figures_nor_touch_the_global_registry(redis_url: str) -> None:
    first, second = make_app(redis_url), make_app(redis_url)
    for app, name in ((first, "apps.first"), (second, "apps.second")):
        wd = install(app)
        assert wd is not None
        _record_run(wd, name, "celery@h", "succeeded")
    one, two = scrape(client(first)), scrape(client(second))
    assert [s.labels["task"] for s in samples(one, "celery_watchdog_task_outcomes_last_hour")] \
        == ["apps.first"]  # fmt: skip
    assert [s.labels["task"] for s in samples(two, "celery_watchdog_task_outcomes_last_hour")] \
        == ["apps.second"]  # fmt: skip
    default = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    assert "celery_watchdog" not in default and "celery_task" not in default
    first.close()
    second.close()


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the figures, pure ---------------------------------------------------------------------


def test_a_label_is_one_printable_line_with_a_lone_surrogate_escaped() -> None:
    assert figures.label('a\ud800\nb\t"c"') == 'a\\ud800 b "c"'
    assert figures.label("x" * 500) == "x" * 199 + "…"
    assert figures.label("\x1b[31mred") == "\\x1b[31mred"
    assert figures.label(None) == "-"


def test_samples_landing_on_the_same_labels_are_combined_not_repeated() -> None:
    family = figures.Family("f", "gauge", "help", ("task",))
    family.add(1, "a\nb")
    family.add(2, "a b")  # the same label value once made one line
    family.add(float("nan"), "nan")
    family.add(None, "none")
    family.add(True, "bool")
    assert family.samples == {("a b",): 3.0}
    ages = figures.Family("age", "gauge", "help", ("queue_name",))
    ages.add(5, "q", combine=max)
    ages.add(3, "q", combine=max)
    assert ages.samples == {("q",): 5.0}


def test_a_cap_keeps_the_first_names_and_calls_the_rest_other() -> None:
    cap = figures.Cap(["b", "a\ud800", "c"], 2)
    kept = (cap("b"), cap("a\\ud800"), cap("a\ud800"), cap("c"))
    assert kept == ("b", "a\\ud800", "a\\ud800", "other")


def test_queue_figures_skip_an_unread_queue_and_show_an_empty_one_at_age_zero() -> None:
    docs = [
        {"name": "empty", "messages": 0, "reserved": 0, "oldest_age": None,
         "oldest_age_is_lower_bound": False, "consumers": [], "error": None},
        {"name": "unread", "messages": 0, "reserved": None, "oldest_age": None,
         "oldest_age_is_lower_bound": False, "consumers": [], "error": "timeout"},
        {"name": "deep", "messages": 9, "reserved": 2, "oldest_age": 75.5,
         "oldest_age_is_lower_bound": True, "consumers": [{"worker": "w1"}], "error": None},
        {"name": "unknown age", "messages": 3, "reserved": None, "oldest_age": None,
         "oldest_age_is_lower_bound": False, "consumers": [], "error": None},
    ]  # fmt: skip
    fams = {f.name: f.samples for f in figures.queue_families(docs, [])}
    assert fams["celery_queue_length"] == {("empty",): 0, ("deep",): 9, ("unknown age",): 3}
    assert fams["celery_watchdog_queue_oldest_age_seconds"] == {("empty",): 0, ("deep",): 75.5}
    assert fams["celery_watchdog_queue_oldest_age_is_lower_bound"] == {("empty",): 0,
                                                                       ("deep",): 1}  # fmt: skip
    assert fams["celery_watchdog_queue_reserved"] == {("empty",): 0, ("deep",): 2}
    assert figures.queue_errors(docs) == 1

"""The page (``/``), a task's page (``/task/<id>``) and their data (``/api/watchdog/page``),
rendered from what real runs on a real in-process worker recorded and real monitor passes
judged: a stuck export with its progress and where it waits, a slow import, a failed charge,
a sync the monitor set aside (a dead letter), open incidents, a queue nobody consumes.

Hostile input throughout: a task argument, a step name and an error message carry
``<script>alert(1)</script>``, a password argument carries a secret.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from starlette.testclient import TestClient

from celery_watchdog import WatchedTask
from celery_watchdog.embedded import RedisServer
from celery_watchdog.http import charts
from celery_watchdog.http.app import create_app
from celery_watchdog.http.page import _environment, fraction
from celery_watchdog.monitor.check import run_pass
from celery_watchdog.runtime import Watchdog
from celery_watchdog.store import Store
from celery_watchdog.testing import capture_alerts
from tests.helpers import make_app, run_worker, wait_for

pytestmark = pytest.mark.timeout(60)

OPERATOR_TOKEN = "operator-token-for-the-page-tests"
READ_TOKEN = "read-token-for-the-page-tests"
XSS = "<script>alert(1)</script>"
SECRET = "hunter2-secret-value"
CONF = {
    "watchdog_flush_interval": 0.2,
    "watchdog_snapshot_interval": 0.5,
    "watchdog_on_stuck": "alert",
    "watchdog_http_token": OPERATOR_TOKEN,
    "task_routes": {"page.send_reset": {"queue": "emails"}},
    "watchdog_queue_policies": {
        "emails": {"action": "Send password reset email", "threshold": "1s", "owner": "growth"}
    },
}
# Event.wait, as the stack shows it: Python 3.10's innermost frame is the Condition's lock.
WAITS = r"waiting on (an event \(threading\.Event\.wait\)|a lock \(threading\.Lock\.acquire\))"


class Scene:
    """One app, one worker, the records of every kind of trouble the page shows."""

    def __init__(self, redis_url: str, release: threading.Event) -> None:
        self.redis_url, self.release = redis_url, release
        self.app = make_app(redis_url, **CONF)
        _define_tasks(self.app, release)
        self.ids: dict[str, str] = {}
        self.server = create_app(self.app)  # installs the watchdog, finalizes the app
        self.wd: Watchdog = self.server.state.ctx.wd
        self.store: Store = self.wd.store()

    def client(self, **conf: Any) -> TestClient:
        """A client of this server; with ``conf``, of another server reading the same records
        with other settings (a watchdog's settings are fixed once it is installed)."""
        if not conf:
            return TestClient(self.server)
        prefix = self.app.conf.watchdog_key_prefix
        other = make_app(self.redis_url, **CONF, watchdog_key_prefix=prefix, **conf)
        return TestClient(create_app(other))


def _define_tasks(app: Celery, release: threading.Event) -> None:
    watched: dict[str, Any] = {"base": WatchedTask, "bind": True, "shared": False}

    @app.task(name="page.export_report", heartbeat_timeout=1, alert_context=("account_id",),
              owner="reports", **watched)  # fmt: skip
    def export_report(self: WatchedTask, account_id: int, title: str, password: str) -> None:
        with self.step(f"render {title}"):
            self.heartbeat(processed=3, total=10)
            release.wait(30)  # stuck: no heartbeat, no progress, until the test ends

    @app.task(name="page.sync_vendor", heartbeat_timeout=1, on_stuck="revoke", **watched)
    def sync_vendor(self: WatchedTask) -> None:
        self.heartbeat()
        release.wait(30)

    @app.task(name="page.slow_import", heartbeat_timeout=30, soft_timeout=0.5, **watched)
    def slow_import(self: WatchedTask) -> None:
        i = 0
        while not release.wait(0.1):
            i += 1
            self.heartbeat(processed=i, total=1000)

    @app.task(name="page.charge_card", shared=False)
    def charge_card(amount: int, note: str) -> None:
        raise ValueError(f"card declined: {note}")

    @app.task(name="page.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="page.send_reset", shared=False, alert_context=("account_id",))
    def send_reset(account_id: int) -> None:
        return None


@pytest.fixture(scope="module")
def scene() -> Iterator[Scene]:
    release = threading.Event()
    with RedisServer() as server:
        scene = Scene(server.url, release)
        for account in (12, 99):  # nobody consumes "emails": customers wait
            scene.app.tasks["page.send_reset"].apply_async(kwargs={"account_id": account})
        with run_worker(scene.app, pool="threads", concurrency=6), capture_alerts():
            try:
                yield from _record(scene)
            finally:
                release.set()
        scene.app.close()


def _record(scene: Scene) -> Iterator[Scene]:
    """Every kind of trouble, recorded by the worker and judged by real monitor passes."""
    app, ids, wd, store = scene.app, scene.ids, scene.wd, scene.store
    app.tasks["page.add"].delay(2, 3).get(timeout=10)
    ids["stuck"] = app.tasks["page.export_report"].delay(
        42, XSS, password=SECRET).id  # fmt: skip
    ids["dead"] = app.tasks["page.sync_vendor"].delay().id
    ids["slow"] = app.tasks["page.slow_import"].delay().id
    failed = app.tasks["page.charge_card"].delay(100, XSS)
    failed.get(timeout=10, propagate=False)
    ids["failed"] = failed.id

    def stack_taken() -> bool:
        runs = store.runs.of_task(ids["stuck"])
        return bool(runs and runs[0].stack and runs[0].processed == 3)

    wait_for(stack_taken, timeout=15, what="the stuck run's stack")
    wanted = {("stuck", "page.export_report"), ("stuck", "page.sync_vendor"),
              ("slow", "page.slow_import"), ("queue_stalled", "emails")}  # fmt: skip

    def judged() -> bool:
        run_pass(wd)
        opened = {(i.kind, i.name) for i in store.incidents.active()}
        return wanted <= opened and store.dlq.get(ids["dead"]) is not None

    wait_for(judged, timeout=20, interval=0.3, what=f"incidents {wanted}")
    yield scene


@pytest.fixture(scope="module")
def reader(scene: Scene) -> TestClient:
    return scene.client()


@pytest.fixture(scope="module")
def operator(scene: Scene) -> TestClient:
    client = scene.client()
    answer = client.post("/login", data={"token": OPERATOR_TOKEN}, follow_redirects=False)
    assert answer.status_code == 303
    return client


def _page(client: TestClient, path: str = "/") -> str:
    answer = client.get(path)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    return answer.text


def _part(html: str, start: str, end: str = "</li>") -> str:
    """The HTML from ``start`` (e.g. a card's ``data-key="…"``) to the first ``end`` after it."""
    begin = html.index(start)
    return html[begin : html.index(end, begin)]


def _text(html: str) -> str:
    """The words a person reads (tags out, whitespace folded), entities left as they are."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


# -- what the page says ------------------------------------------------------------------------


def test_the_page_shows_a_stuck_run_with_its_progress_and_where_it_waits(
    scene: Scene, reader: TestClient
) -> None:
    html = _page(reader)
    card = _part(html, f'data-key="run-{scene.ids["stuck"]}')
    assert "page.export_report" in card and "badge-health-stuck" in card and ">stuck<" in card
    assert '<progress max="10" value="3"' in card and "3 of 10 done (30%)" in _text(card)
    where = re.search(r"Where it waits:</strong>([^<]+)", card)
    assert where, card
    assert re.search(WAITS + r" in tests/test_http_page\.py:", where[1]), where[1]
    assert "CPU" in where[1] and "no heartbeat for" in _text(card)


def test_the_page_shows_slow_and_failed_work_dead_letters_incidents_and_waiting_queues(
    scene: Scene, reader: TestClient
) -> None:
    html = _page(reader)
    text = _text(html)
    assert "Skip to the content" in text and "Needs attention:" in text
    slow = _part(html, f'data-key="run-{scene.ids["slow"]}')
    assert ">slow<" in slow and "<progress" in slow and "Where it waits" not in slow  # it moves
    # The failed charge: its job type, with the most common failure reason and the error.
    row = _text(_part(html, 'data-key="name-page.charge_card"', "</tr>"))
    assert "0%" in row and "bad input (1): ValueError: card declined:" in row
    assert "failing 1 in a row" in row
    # The sync the monitor set aside, replayable by an operator (not by this reader).
    letter = _text(_part(html, f'data-key="letter-{scene.ids["dead"]}'))
    assert "page.sync_vendor" in letter and "Set aside just now" in letter
    assert re.search("Where it waited " + WAITS, letter), letter
    # Incidents: the stuck export is an open problem, with who is affected.
    incidents = _text(_part(html, 'id="incidents"', 'id="queues"'))
    assert "export_report" in incidents and "Affected account 42" in incidents
    assert "P1 urgent open Work has stopped: Send password reset email" in incidents
    # The queue customers wait on, in the customer's words.
    queue = _text(_part(html, 'data-key="queue-emails"'))
    assert "Send password reset email" in queue and "stalled" in queue
    assert "Waiting 2" in queue and "2 accounts (account_id=12, 99)" in queue
    assert "Workers taking it none" in queue and "Owner growth" in queue
    assert re.search(r"<svg class=\"chart\"[^>]*role=\"img\"[^>]*aria-label=\"Oldest waiting", html)
    assert 'data-key="idle-celery"' in html  # a queue with nothing waiting: listed, not charted


def test_a_task_page_tells_the_stuck_runs_story(scene: Scene, reader: TestClient) -> None:
    html = _page(reader, f"/task/{scene.ids['stuck']}")
    text = _text(html)
    assert "<h1" in html and "page.export_report" in text
    assert "What happened" in text and "Started" in text and "Incident opened" in text
    assert "Where it waits:" in text and '<progress max="10" value="3"' in html
    assert "Problems and alerts" in text and "Alerts sent" in text


def test_a_task_page_tells_a_failure_and_a_dead_letter(scene: Scene, reader: TestClient) -> None:
    failed = _text(_page(reader, f"/task/{scene.ids['failed'][:12]}"))  # a unique prefix works
    assert "page.charge_card" in failed and "Errors" in failed and "card declined" in failed
    dead = _text(_page(reader, f"/task/{scene.ids['dead']}"))
    assert "Set aside by the watchdog" in dead and "Moved to the dead letters" in dead


def test_an_unknown_task_is_a_404_page_that_names_it_as_text(reader: TestClient) -> None:
    answer = reader.get("/task/%3Cimg src=x onerror=alert(1)%3E")
    assert answer.status_code == 404 and "No such task" in answer.text
    assert "<img src=x" not in answer.text and "&lt;img src=x onerror=alert(1)&gt;" in answer.text


# -- safe: escaped, redacted, CSP-clean -------------------------------------------------------


def test_hostile_text_is_shown_as_text_and_secrets_never(scene: Scene, reader: TestClient) -> None:
    for path in ("/", f"/task/{scene.ids['stuck']}", f"/task/{scene.ids['failed']}"):
        html = _page(reader, path)
        assert "<script>alert(1)" not in html, path
        assert SECRET not in html, path
    html = _page(reader)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the title argument, as text
    assert "[redacted]" in html
    raw = reader.get("/api/watchdog/page").text
    assert SECRET not in raw and "<script>" not in raw  # "<" travels as \u003c
    doc = json.loads(raw)
    run = next(r for r in doc["runs"]["trouble"] if r["id"] == scene.ids["stuck"])
    assert XSS in run["args"] and "[redacted]" in run["kwargs"]  # the value, as data


def test_the_page_has_no_inline_script_style_or_handler(scene: Scene, reader: TestClient) -> None:
    for path in ("/", f"/task/{scene.ids['stuck']}"):
        html = _page(reader, path)
        scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S | re.I)
        assert scripts and all('src="/static/' in attrs and not body.strip()
                               for attrs, body in scripts)  # fmt: skip
        assert not re.search(r"<style\b", html, re.I)
        assert not re.search(r"\sstyle\s*=", html, re.I)
        assert not re.search(r"\son[a-z]+\s*=", html, re.I)
        assert "javascript:" not in html.lower()
        answer = reader.get(path)
        assert "script-src 'self'" in answer.headers["content-security-policy"]


def test_the_static_files_are_served_by_the_server_itself(reader: TestClient) -> None:
    html = _page(reader)
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        answer = reader.get(asset)
        assert answer.status_code == 200 and answer.content
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html)  # no CDN, nothing remote


# -- who may act --------------------------------------------------------------------------------


def test_a_reader_sees_no_action_button_but_the_sign_in_form(reader: TestClient) -> None:
    html = _page(reader)
    assert 'action="/api/watchdog/' not in html  # no acknowledge, snooze or replay form
    assert "Snooze" not in html and "Replay" not in html
    assert 'action="/login"' in html and 'name="token"' in html and 'type="password"' in html
    assert re.search(r'<meta name="csrf-token" content="">', html)


def test_an_operator_session_gets_the_buttons_and_its_csrf_token(
    scene: Scene, operator: TestClient
) -> None:
    html = _page(operator)
    token = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert token and "Signed in as operator" in html
    incident = _part(html, 'id="incidents"', 'id="queues"')
    assert re.search(r'action="/api/watchdog/incidents/[0-9a-f]+/ack"', incident)
    assert '<label for="snooze-' in incident and 'name="for"' in incident
    letter = _part(html, f'data-key="letter-{scene.ids["dead"]}')
    assert f"/api/watchdog/dlq/{scene.ids['dead']}/replay?dry_run=true" in letter
    assert 'action="/login"' not in html


def test_an_operator_acknowledges_with_the_pages_csrf_token(
    scene: Scene, operator: TestClient
) -> None:
    html = _page(operator)
    token = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert token
    stalled = next(i for i in scene.store.incidents.active() if i.kind == "queue_stalled")
    url = f"/api/watchdog/incidents/{stalled.id}/ack"
    assert operator.post(url).status_code == 403  # the cookie alone is not enough
    answer = operator.post(url, headers={"X-CSRF-Token": token.group(1)})
    assert answer.status_code == 200 and answer.json()["state"] == "acknowledged"
    card = _part(_page(operator), f'data-key="incident-{stalled.id}"')
    assert ">acknowledged<" in card and f"/incidents/{stalled.id}/ack" not in card


def test_with_a_read_token_a_stranger_gets_the_sign_in_page(scene: Scene) -> None:
    client = scene.client(watchdog_http_read_token=READ_TOKEN)
    try:
        stranger = client.get("/")
        assert stranger.status_code == 401 and 'action="/login"' in stranger.text
        assert "export_report" not in stranger.text
        assert client.get("/api/watchdog/page").status_code == 401
        bearer = {"Authorization": f"Bearer {READ_TOKEN}"}
        assert client.get("/api/watchdog/page", headers=bearer).status_code == 200
        assert client.get("/static/page.css").status_code == 200  # no data in it
        client.post("/login", data={"token": READ_TOKEN})
        html = _page(client)
        assert "Signed in to read" in html and 'action="/api/watchdog/' not in html
    finally:
        scene.app.conf.watchdog_http_read_token = None


# -- the JSON and the charts ----------------------------------------------------------------------


def test_the_pages_json_carries_what_the_page_shows(scene: Scene, reader: TestClient) -> None:
    doc = reader.get("/api/watchdog/page").json()
    assert set(doc) >= {"attention", "incidents", "queues", "runs", "dead_letters",
                        "task_names", "schedules", "paused", "workers", "watchdog"}  # fmt: skip
    assert doc["attention"]["counts"]["stuck"] >= 2 and doc["attention"]["counts"]["queues"] == 1
    emails = next(q for q in doc["queues"] if q["name"] == "emails")
    assert emails["messages"] == 2 and len(emails["history"]) == 14
    assert emails["history"][-1] is not None  # today's oldest wait, recorded by the pass
    assert scene.ids["dead"] in {e["id"] for e in doc["dead_letters"]["entries"]}
    names = [t["name"] for t in doc["task_names"]]
    assert names.index("page.export_report") < names.index("page.add")  # trouble first


def test_a_chart_draws_gaps_for_missing_or_hostile_values_and_marks_the_threshold() -> None:
    now = 20_000 * 86400.0
    chart = charts.age_chart([None, 30.0, float("nan"), -5.0, 600.0, 0.0], now, "q", 300.0)
    assert [b.known for b in chart.bars] == [False, True, False, False, True, True]
    assert [b.over for b in chart.bars] == [False, False, False, False, True, False]
    tallest = max(chart.bars, key=lambda b: b.height)
    assert tallest.y == 2.0 and chart.reference_y is not None and 0 < chart.reference_y < 40
    assert chart.bars[1].height >= 2  # a little is never drawn as nothing
    assert "no check recorded" in chart.bars[0].label and "10 min" in chart.bars[4].label
    assert "at worst 10 min" in chart.summary
    assert charts.age_chart([None] * 3, now, "q").summary.endswith("nothing recorded yet")


def test_a_progress_bar_never_shows_more_than_done_whatever_the_counters_say() -> None:
    assert fraction(3, 10) == {"value": 3, "max": 10, "percent": 30}
    assert fraction(15, 10) == {"value": 10, "max": 10, "percent": 100}
    assert fraction(-4, 10) == {"value": 0, "max": 10, "percent": 0}
    assert fraction(999, 1000)["percent"] == 99  # type: ignore[index]
    assert fraction(5, 0) is None and fraction(5, None) is None
    assert fraction(float("nan"), 10) is None and fraction(True, 10) is None


def test_the_page_renders_in_well_under_a_second(reader: TestClient) -> None:
    started = time.perf_counter()
    for _ in range(3):
        _page(reader)
    assert (time.perf_counter() - started) / 3 < 0.5


def test_every_value_is_rendered_as_text_controls_and_lone_surrogates_as_escapes() -> None:
    template = _environment().from_string('<p title="{{ x }}">{{ x }}</p>{{ y }}{{ z }}')
    html = template.render(x='\udce9\x1b[2J"<b>&\u202e', y=None, z=float("nan"))
    assert html == (
        '<p title="\\udce9\\x1b[2J&#34;&lt;b&gt;&amp;\\u202e">'
        "\\udce9\\x1b[2J&#34;&lt;b&gt;&amp;\\u202e</p>"
    )
    html.encode("utf-8")  # nothing an encoder refuses is left


def test_an_unreachable_redis_is_a_503_page_that_says_so() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"redis://:s3cret@127.0.0.1:{probe.getsockname()[1]}/0"
    app = make_app(url, **CONF)
    client = TestClient(create_app(app))
    answer = client.get("/")
    assert answer.status_code == 503 and "cannot be read" in answer.text
    assert "s3cret" not in answer.text and "127.0.0.1" in answer.text
    assert client.get("/api/watchdog/page").status_code == 503
    app.close()

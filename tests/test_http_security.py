"""The status server is safe by default: who may read, who may change, and what every answer
carries. Real Redis behind a real ASGI app; nothing here needs a worker."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator

import pytest
from celery import Celery

from celery_watchdog.config import ConfigError
from celery_watchdog.embedded import RedisServer
from celery_watchdog.http.app import create_app
from celery_watchdog.http.security import SECURITY_HEADERS
from tests.helpers import make_app
from tests.http_helpers import CHANGES, OPERATOR, READER, TOKENS, bearer, client, login

pytestmark = pytest.mark.timeout(60)
READS = ("/api/tasks", "/api/workers", "/api/task/types", "/api/queues/length",
         "/api/watchdog/status", "/api/watchdog/incidents", "/api/watchdog/dlq",
         "/api/watchdog/pauses", "/api/watchdog/quarantine", "/api/watchdog/schedules")  # fmt: skip


@pytest.fixture(scope="module")
def app(redis_server: RedisServer) -> Iterator[Celery]:
    redis_server.start()
    celery_app = make_app(redis_server.url, **TOKENS)
    yield celery_app
    celery_app.close()


@pytest.fixture(scope="module")
def open_app(redis_server: RedisServer) -> Iterator[Celery]:
    """No token set at all: reads are open, every change is refused."""
    redis_server.start()
    celery_app = make_app(redis_server.url)
    yield celery_app
    celery_app.close()


@pytest.mark.parametrize("path", CHANGES)
def test_a_change_without_a_token_is_unauthorized(app: Celery, path: str) -> None:
    answer = client(app).post(path)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert "token" in answer.json()["error"]


@pytest.mark.parametrize("path", CHANGES)
def test_a_change_with_the_read_token_is_forbidden(app: Celery, path: str) -> None:
    answer = client(app).post(path, headers=bearer(READER))
    assert answer.status_code == 403
    assert answer.json() == {"error": "the read token cannot change anything"}


@pytest.mark.parametrize("path", CHANGES)
def test_a_change_with_a_wrong_token_is_unauthorized(app: Celery, path: str) -> None:
    assert client(app).post(path, headers=bearer(OPERATOR + "x")).status_code == 401


@pytest.mark.parametrize("path", CHANGES)
def test_a_read_only_server_refuses_every_change_even_to_the_operator(
    app: Celery, path: str
) -> None:
    answer = client(app, read_only=True).post(path, headers=bearer(OPERATOR))
    assert answer.status_code == 403
    assert "read-only" in answer.json()["error"]


def test_the_read_only_environment_variable_makes_a_read_only_server(
    app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CELERY_WATCHDOG_READ_ONLY", "true")
    server = client(app)
    assert server.post(CHANGES[5], headers=bearer(OPERATOR)).status_code == 403
    monkeypatch.setenv("CELERY_WATCHDOG_READ_ONLY", "maybe")
    with pytest.raises(ConfigError, match="CELERY_WATCHDOG_READ_ONLY"):
        create_app(app)


@pytest.mark.parametrize("path", CHANGES)
def test_without_an_operator_token_configured_no_change_is_possible(
    open_app: Celery, path: str
) -> None:
    answer = client(open_app).post(path, headers=bearer(OPERATOR))
    assert answer.status_code == 403
    assert "watchdog_http_token is not set" in answer.json()["error"]


@pytest.mark.parametrize("path", CHANGES)
def test_a_page_session_without_its_csrf_token_cannot_change_anything(
    app: Celery, path: str
) -> None:
    http = client(app)
    csrf = login(http)
    assert http.post(path).status_code == 403  # the cookie alone: what a forged form sends
    wrong = csrf[:-1] + ("B" if csrf.endswith("A") else "A")  # one character off, never equal
    assert http.post(path, headers={"X-CSRF-Token": wrong}).status_code == 403
    assert http.post(path, data={"csrf_token": "nope"}).status_code == 403
    # With it (header or form field) the request passes the checks and reaches the lookup.
    assert http.post(path, headers={"X-CSRF-Token": csrf}).status_code not in (401, 403)
    assert http.post(path, data={"csrf_token": csrf}).status_code not in (401, 403)


@pytest.mark.parametrize("path", CHANGES)
def test_the_operator_token_passes_every_check_and_a_get_never_changes(
    app: Celery, path: str
) -> None:
    http = client(app)
    assert http.post(path, headers=bearer(OPERATOR)).status_code not in (401, 403)
    assert http.get(path, headers=bearer(OPERATOR)).status_code == 405


def test_a_read_session_may_read_but_not_change(app: Celery) -> None:
    http = client(app)
    csrf = login(http, READER)
    assert http.get("/api/tasks").status_code == 200
    answer = http.post(CHANGES[5], headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 403 and "may only read" in answer.json()["error"]
    assert http.get("/api/watchdog/session").json()["operator"] is False


@pytest.mark.parametrize("path", READS)
def test_reads_need_the_read_token_once_it_is_set(app: Celery, path: str) -> None:
    http = client(app)
    assert http.get(path).status_code == 401
    assert http.get(path, headers=bearer("wrong-token-0000000000")).status_code == 401
    assert http.get(path, headers=bearer(READER)).status_code == 200
    assert http.get(path, headers=bearer(OPERATOR)).status_code == 200


def test_reads_are_open_when_no_read_token_is_set(open_app: Celery) -> None:
    http = client(open_app)
    for path in READS:
        assert http.get(path).status_code == 200, path


def test_health_checks_need_no_token(app: Celery) -> None:
    http = client(app)
    assert http.get("/healthcheck").text == "OK"
    assert http.get("/healthz").status_code in (200, 503)


def test_login_sets_a_strict_http_only_cookie_and_logout_removes_it(app: Celery) -> None:
    http = client(app)
    answer = http.post("/login", data={"token": OPERATOR}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    assert http.get("/api/watchdog/session").json()["role"] == "operator"
    http.post("/logout", follow_redirects=False)
    assert http.get("/api/watchdog/session").json() == {
        "role": None, "operator": False, "read_only": False, "csrf_token": "",
    }  # fmt: skip
    https = client(app, https=True).post("/login", data={"token": OPERATOR},
                                         follow_redirects=False)  # fmt: skip
    assert "secure" in https.headers["set-cookie"].lower()


def test_a_wrong_login_token_is_refused_and_sets_no_cookie(app: Celery) -> None:
    answer = client(app).post("/login", data={"token": "guess-guess-guess"})
    assert answer.status_code == 401 and "set-cookie" not in answer.headers


def test_a_forged_or_tampered_session_cookie_is_worthless(app: Celery) -> None:
    http = client(app)
    login(http)
    real = http.cookies["watchdog_session"]
    _role, sid, issued, signature = real.split(".")
    forgeries = [
        f"operator.{sid}.{issued}.{signature[:-2]}xx",  # bad signature
        f"operator.{sid}.{int(issued) - 13 * 3600}.{signature}",  # re-dated
        f"operator.other.{issued}.{signature}",  # another session id
        "operator",
        "operator.x.99999999999999999999999.y",
    ]
    for forged in forgeries:
        other = client(app)
        other.cookies.set("watchdog_session", forged)
        assert other.get("/api/tasks").status_code == 401, forged
        assert other.get("/api/watchdog/session").json()["role"] is None
    raw = {"cookie": b"watchdog_session=\xff\xfe.x.y.z"}  # not even text
    assert client(app).get("/api/tasks", headers=raw).status_code == 401


def test_rotating_the_tokens_ends_every_session(app: Celery, redis_server: RedisServer) -> None:
    http = client(app)
    login(http)
    cookie = http.cookies["watchdog_session"]
    rotated = make_app(redis_server.url, watchdog_http_token="a-new-operator-token-123",
                       watchdog_http_read_token=READER)  # fmt: skip
    other = client(rotated)
    other.cookies.set("watchdog_session", cookie)
    assert other.get("/api/watchdog/session").json()["role"] is None


@pytest.mark.parametrize("path", ("/healthcheck", "/api/tasks", "/no/such/page", "/login"))
def test_every_answer_carries_the_security_headers(app: Celery, path: str) -> None:
    answer = client(app).get(path, headers=bearer(READER))
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers[name] == value
    assert answer.headers["cache-control"] == "no-store"


def test_errors_are_one_line_json_never_a_traceback_page(app: Celery) -> None:
    http = client(app)
    for path, status in (("/no/such/page", 404), ("/api/task/info/nosuch", 404),
                         ("/api/tasks?limit=ten", 400), ("/api/tasks?sort_by=password", 400),
                         ("/api/tasks?search=NOT+x", 400), ("/api/workers?status=maybe", 400),
                         ("/api/tasks?received_start=yesterday", 400),
                         ("/api/task/result/x?timeout=nan", 400)):  # fmt: skip
        answer = http.get(path, headers=bearer(READER))
        assert answer.status_code == status, path
        assert answer.headers["content-type"] == "application/json"
        error = answer.json()["error"]
        assert error and "\n" not in error and "Traceback" not in error


def test_redis_unreachable_answers_503_with_the_reason(open_app: Celery) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = make_app(f"redis://:hunter2@127.0.0.1:{port}/0")
    http = client(down)
    answer = http.get("/api/tasks")
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert "cannot reach Redis" in error and "hunter2" not in error and "\n" not in error
    health = http.get("/healthz")
    assert health.status_code == 503 and "cannot reach Redis" in health.json()["reasons"][0]


def test_a_bad_setting_stops_start_up_naming_it(redis_server: RedisServer) -> None:
    with pytest.raises(ConfigError, match="watchdog_http_token") as caught:
        create_app(make_app(redis_server.url, watchdog_http_token="short-secret"))
    assert "short-secret" not in str(caught.value)


def test_the_factory_loads_the_app_named_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    monkeypatch.delenv("CELERY_WATCHDOG_APP", raising=False)
    with pytest.raises(ConfigError, match="CELERY_WATCHDOG_APP"):
        create_app()
    monkeypatch.setenv("CELERY_WATCHDOG_APP", "tests.no_such_module")
    with pytest.raises(ConfigError, match="CELERY_WATCHDOG_APP"):
        create_app()
    monkeypatch.setenv("WATCHDOG_TEST_REDIS_URL", redis_server.url)
    monkeypatch.setenv("WATCHDOG_TEST_PREFIX", "wdfactory")
    monkeypatch.setenv("CELERY_WATCHDOG_APP", "tests.workerapp")
    server = create_app()
    assert server.state.ctx.app.main == "workerapp"


def test_an_audit_line_names_who_changed_what(
    app: Celery, caplog: pytest.LogCaptureFixture
) -> None:
    http = client(app)
    with caplog.at_level(logging.INFO, logger="celery_watchdog.http.audit"):
        change = {"task": "tests.audited", "note": "line\nbreak", "for": "1m"}
        answer = http.post("/api/watchdog/pause", headers=bearer(OPERATOR), json=change)
        assert answer.status_code == 200, answer.text
        http.post("/api/watchdog/resume", headers=bearer(OPERATOR), data={"task": "tests.audited"})
    lines = [r.getMessage() for r in caplog.records if r.name == "celery_watchdog.http.audit"]
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    paused, resumed = (json.loads(line) for line in lines)
    assert paused["by"] == "operator token from testclient" and paused["action"] == "pause"
    assert paused["target"] == "task:tests.audited" and paused["until"] and paused["at"]
    assert resumed["action"] == "resume" and resumed["ok"] is True

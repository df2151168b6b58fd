"""Talking to the status server in tests: a client on ``create_app(app)`` in this process
(starlette's TestClient: real ASGI, real Redis behind it), the two tokens, a logged-in page
session with its CSRF token, and the list of every endpoint that changes something."""

from __future__ import annotations

import warnings
from typing import Any

from celery import Celery

from celery_watchdog.http.app import create_app

with warnings.catch_warnings():
    # Starlette 1.x nudges towards "httpx2" for its test client; httpx is what we ship with.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

OPERATOR = "operator-token-3f9c2a7d51"
READER = "read-token-8e41b6c09a"
TOKENS = {"watchdog_http_token": OPERATOR, "watchdog_http_read_token": READER}

#: Every endpoint that changes something, with a path whose ids need not exist: the checks
#: come before the lookup, so a refused request never reaches it.
CHANGES = (
    "/api/task/revoke/0b5e5b8e-0000-4000-8000-000000000000",
    "/api/watchdog/incidents/nosuch/ack",
    "/api/watchdog/incidents/nosuch/snooze?for=30m",
    "/api/watchdog/incidents/nosuch/resolve",
    "/api/watchdog/dlq/nosuch/replay?dry_run=true",
    "/api/watchdog/pause?task=tests.nothing",
    "/api/watchdog/resume?task=tests.nothing",
    "/api/watchdog/quarantine/nosuch/release",
)


def client(app: Celery, *, read_only: bool = False, https: bool = False) -> TestClient:
    base = "https://testserver" if https else "http://testserver"
    return TestClient(create_app(app, read_only=read_only), base_url=base)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(http: TestClient, token: str = OPERATOR) -> str:
    """Log the client in as the page does (a form post); return the session's CSRF token."""
    answer = http.post("/login", data={"token": token}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    csrf: str = http.get("/api/watchdog/session").json()["csrf_token"]
    assert csrf
    return csrf


def get_json(http: TestClient, path: str, token: str | None = READER, **params: Any) -> Any:
    answer = http.get(path, params=params, headers=bearer(token) if token else {})
    assert answer.status_code == 200, (path, answer.status_code, answer.text)
    assert answer.headers["content-type"] == "application/json"
    return answer.json()

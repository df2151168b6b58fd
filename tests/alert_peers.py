"""Local peers the alert channel tests deliver to: an HTTP receiver and an SMTP mailbox."""

from __future__ import annotations

import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from celery_watchdog.alerts import Alert
from celery_watchdog.config import DEFAULT_REDACT_KEYS
from celery_watchdog.model.policy import TaskPolicy
from celery_watchdog.model.records import Finding, Run
from celery_watchdog.model.redact import Redactor

SECRETS = ("hunter2", "tok_visa_4242")
NOW = time.time()


class Receiver(ThreadingHTTPServer):
    """Records every POST; answers with queued statuses per path, or never (``/hang``)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        self.statuses: dict[str, list[int]] = {}
        self.release = threading.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def bodies(self, path: str) -> list[bytes]:
        return [body for p, _, body in self.posts if p.split("?")[0] == path]


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.posts.append((self.path, dict(self.headers), body))
        if self.path.startswith("/hang"):
            self.server.release.wait(10)
            return
        queued = self.server.statuses.get(self.path.split("?")[0]) or [200]
        status = queued.pop(0) if len(queued) > 1 else queued[0]
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


def secret_alert() -> Alert:
    redactor = Redactor(DEFAULT_REDACT_KEYS)
    kwargs = {"account_id": 12, "password": "hunter2", "card_token": "tok_visa_4242"}
    run = Run(
        task_id="7f3a9c2e-1", name="billing.charge", state="STARTED", worker="w1@host",
        queue="billing", started=NOW - 600, last_heartbeat=NOW - 400, last_progress=NOW - 400,
        step="Charge card", args=redactor.args(("tok_visa_4242",), ["card_token"]),
        kwargs=redactor.kwargs(kwargs),
    )  # fmt: skip
    finding = Finding(kind="stuck", reason="no progress", run=run, action="dead_lettered")
    return Alert.from_finding(
        finding, TaskPolicy(alert_context=("account_id", "card_token"), owner="billing"),
        redactor=redactor, now=NOW, context_values=kwargs,
    )  # fmt: skip


def sentry_items(server: Receiver, item_type: str) -> list[dict[str, Any]]:
    """The items of one type ("event", "check_in") in the envelopes Sentry's SDK posted."""
    items = []
    for body in server.bodies("/api/1/envelope/"):
        lines = body.split(b"\n")
        for header, payload in zip(lines[1::2], lines[2::2], strict=False):
            if json.loads(header).get("type") == item_type:
                items.append(json.loads(payload))
    return items


def sentry_events(server: Receiver) -> list[dict[str, Any]]:
    return sentry_items(server, "event")

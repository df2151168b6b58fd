"""Tasks that show every outcome the watchdog tells apart.

- ``send_welcome_email``: quick and fine.
- ``export_report``: long, with steps and progress: *slow* at worst, never *stuck*.
- ``sync_vendor``: waits forever on a network read without a timeout: *stuck*.
- ``reindex``: sends heartbeats but its counter never moves: *stuck* (progress stalled).
- ``crunch_numbers``: a busy loop with no heartbeat at all: runtime budgets catch it.
- ``resize_image``: kills its own process: *lost*.
- ``charge_card``: fails on bad input; its ``card_token`` shows as ``[redacted]``.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time

from celery_watchdog import WatchedTask
from example_project.celery import app

log = logging.getLogger(__name__)


@app.task
def send_welcome_email(user_id: int) -> str:
    time.sleep(0.2)  # stands in for an SMTP round trip
    return f"welcome email sent to user {user_id}"


@app.task(base=WatchedTask, bind=True, idempotent=True, alert_context=("account_id",))
def export_report(self: WatchedTask, account_id: int, rows: int = 200) -> dict[str, int]:
    with self.step("fetch rows", timeout=30):
        time.sleep(1.0)  # stands in for a slow query
        data = list(range(rows))
    with self.step("render PDF"):
        for i, _row in enumerate(data, 1):
            time.sleep(0.05)
            self.heartbeat(processed=i, total=rows)
    return {"account_id": account_id, "rows": rows}


# --- a vendor API that accepts connections and never answers -----------------------------------

_vendor_lock = threading.Lock()
_vendor_port: int | None = None
_vendor_conns: list[socket.socket] = []


def _silent_vendor_port() -> int:
    """Port of a TCP server in this process that accepts and never replies (started once)."""
    global _vendor_port
    with _vendor_lock:
        if _vendor_port is None:
            server = socket.create_server(("127.0.0.1", 0))
            _vendor_port = server.getsockname()[1]

            def serve() -> None:
                while True:
                    conn, _ = server.accept()
                    _vendor_conns.append(conn)  # keep it open: the client waits forever

            threading.Thread(target=serve, name="silent-vendor", daemon=True).start()
        return _vendor_port


@app.task(base=WatchedTask, bind=True, owner="integrations", alert_context=("account_id",))
def sync_vendor(self: WatchedTask, account_id: int) -> bytes:
    port = _silent_vendor_port()
    with self.step("call vendor API"):
        self.heartbeat()
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(f"GET /accounts/{account_id} HTTP/1.0\r\n\r\n".encode())
        # The classic bug: no timeout on the socket, so this read blocks forever.
        return sock.recv(65536)


@app.task(base=WatchedTask, bind=True, alert_context=("account_id",))
def reindex(self: WatchedTask, account_id: int) -> None:
    # Heartbeats keep arriving, but `processed` is stuck at 0: a loop that makes no progress.
    # heartbeat() raises TaskCancelled once the watchdog stops the run, which ends the loop.
    while True:
        time.sleep(0.5)
        self.heartbeat(processed=0, total=1000)


@app.task
def crunch_numbers(seconds: float = 900.0) -> int:
    # Burns CPU with no heartbeat; bounded so a forgotten worker does not spin for ever.
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
    return n


@app.task
def resize_image(image_id: int) -> None:
    log.warning("resize_image(%s): the image library crashes this process", image_id)
    os.kill(os.getpid(), signal.SIGKILL)


@app.task
def charge_card(account_id: int, amount: float, card_token: str) -> str:
    if amount < 0:
        raise ValueError(f"cannot charge a negative amount: {amount}")
    return f"charged {amount} to account {account_id}"

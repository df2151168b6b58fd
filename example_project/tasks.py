"""Tasks that show every outcome the watchdog tells apart.

- ``send_welcome_email``: quick and fine.
- ``export_report``: long, with steps and progress: *slow* at worst, never *stuck*.
- ``sync_vendor``: waits forever on a network read without a timeout: *stuck*, terminated and
  dead-lettered; "where it waits" names the ``sock.recv`` line.
- ``reindex``: sends heartbeats but redoes the same batch, its counter never moves: *stuck*
  (progress stalled), terminated and dead-lettered; "where it waits": busy in a loop.
- ``crunch_numbers``: a plain task (no heartbeat at all) in a busy loop: its ``hard_timeout``
  (a policy in ``celery.py``) makes it *overtime*, terminated and dead-lettered.
- ``resize_image``: kills its own process: *lost*, dead-lettered.
- ``charge_card``: fails on bad input; its ``card_token`` shows as ``[redacted]``.
- ``nightly_rollup``: healthy, but sent twice with one task id (a producer retrying a publish):
  *duplicate*, reported and left to run.
- ``import_feed``: crashes its process on every delivery, with ``acks_late`` +
  ``reject_on_worker_lost`` (the message comes straight back): run ``max_deliveries`` times,
  then *poison*: not run again, dead-lettered, one alert.
- ``import_csv``: a file with a bad row, sent again and again by its producer as new tasks:
  three failures with the same error, then its input is quarantined and later copies are
  parked in the dead-letter queue unrun.
- ``charge_card``: failing on bad input three times in a row pages once (``failed``, "bad
  input"), with the accounts it hit.
- ``send_invoice``: paused by the demo for 20 s (``celery watchdog pause``): its messages are
  held, not run and not lost, and run once when the pause ends.
- ``archive_reports``: sent by beat every few seconds to the queue "archive", which no worker
  consumes: the queue is *stalled* (no consumer) and the beat entry a *missed run* (sent, never
  started).

The budgets are short so that the demo shows every verdict within a minute (see ``celery.py``).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time

from celery_watchdog import WatchedTask
from example_project.celery import STUCK_AFTER, app

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


@app.task(
    base=WatchedTask,
    bind=True,
    heartbeat_timeout=STUCK_AFTER,
    owner="integrations",
    alert_context=("account_id",),
)
def sync_vendor(self: WatchedTask, account_id: int) -> bytes:
    port = _silent_vendor_port()
    with self.step("call vendor API"):
        self.heartbeat()  # the last sign of life: the read below never returns
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(f"GET /accounts/{account_id} HTTP/1.0\r\n\r\n".encode())
        # The classic bug: no timeout on the socket, so this read blocks forever.
        return sock.recv(65536)


def _score_batch(offset: int, size: int = 200_000) -> int:
    """The CPU work of one reindex batch (stands in for tokenising and scoring documents)."""
    score = 0
    for i in range(size):
        score += (offset + i) * (offset + i) % 7
    return score


@app.task(base=WatchedTask, bind=True, heartbeat_timeout=STUCK_AFTER, alert_context=("account_id",))
def reindex(self: WatchedTask, account_id: int) -> None:
    # The bug: the offset is never advanced, so the loop redoes batch 0 for ever. Heartbeats
    # keep arriving but `processed` stays at 0: the watchdog calls that a progress stall.
    # heartbeat() raises TaskCancelled once the watchdog stops the run, which ends the loop.
    offset = 0
    while True:
        _score_batch(offset)
        self.heartbeat(processed=offset, total=1000)


@app.task
def crunch_numbers(seconds: float = 900.0) -> int:
    # Burns CPU and never reports progress: a plain task, watched without any code change.
    # Bounded so that a forgotten worker does not spin for ever.
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
    return n


# acks_late=False: the message is acknowledged when the run starts, so when the process dies
# nothing brings the run back by itself and the watchdog dead-letters it. (With acks_late alone
# Celery acknowledges a run whose process died as well, unless task_reject_on_worker_lost is
# set, which would redeliver this crasher again and again.)
@app.task(acks_late=False)
def resize_image(image_id: int) -> None:
    time.sleep(1.0)  # opening the image ...
    log.warning("resize_image(%s): the image library crashes this process", image_id)
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(base=WatchedTask, bind=True, owner="data", alert_context=("region",))
def nightly_rollup(self: WatchedTask, region: str, parts: int = 20) -> int:
    with self.step("aggregate"):
        for i in range(1, parts + 1):
            time.sleep(0.5)
            self.heartbeat(processed=i, total=parts)
    return parts


@app.task(alert_context=("account_id",))
def charge_card(account_id: int, amount: float, card_token: str) -> str:
    if amount < 0:
        raise ValueError(f"cannot charge a negative amount: {amount}")
    return f"charged {amount} to account {account_id}"


@app.task(acks_late=True, reject_on_worker_lost=True)
def import_feed(feed_id: int) -> None:
    time.sleep(0.5)  # parsing the feed ...
    log.warning("import_feed(%s): a native crash takes this process down", feed_id)
    os._exit(1)  # like a segfault or the OOM killer: no exception, no result, no signal


@app.task(fingerprint_args=("file_id",), alert_context=("file_id",))
def import_csv(file_id: int, upload: int = 0) -> int:
    time.sleep(0.2)
    if file_id == 555:  # row 17 of this file has "abc" where a number belongs
        raise ValueError(f"file {file_id}, row 17: 'abc' is not a number")
    return file_id


@app.task(alert_context=("account_id",))
def archive_reports(account_id: int = 0) -> str:
    return f"archived the reports of account {account_id}"


@app.task
def send_invoice(invoice_id: int) -> str:
    return f"invoice {invoice_id} sent"

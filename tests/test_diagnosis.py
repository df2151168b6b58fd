"""Where a run waits: stacks of real threads of this process, classified and summarised.

No mocks: each test parks a real thread in the blocking call it names, captures its stack the way
the child's watchdog thread does, and reads the one-line diagnosis a person would get.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from celery_watchdog.model.diagnosis import (
    Frame,
    capture,
    cpu_percent,
    frames_from_json,
    frames_to_json,
    summarise,
    where,
)

HERE = Path(__file__)
ROOT = HERE.parent.parent
SITE = "/venv/lib/python3.11/site-packages"
STDLIB = "/usr/lib/python3.11"


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    # Locations are shown relative to the working directory: pin it so they read the same.
    monkeypatch.chdir(ROOT)


def line_of(marker: str) -> int:
    """The line of this file that carries ``marker`` (a comment beside the blocking call)."""
    lines = HERE.read_text().splitlines()
    return next(n for n, text in enumerate(lines, 1) if text.endswith(f"# {marker}"))


def parked(target: Callable[[], object], kind: str, call: str | None = None) -> list[Frame]:
    """Run ``target`` in a thread; its stack once it is seen doing ``kind`` (or after 3 s)."""
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert thread.ident is not None
    deadline = time.monotonic() + 3
    frames = capture(thread.ident)
    while time.monotonic() < deadline and (
        frames is None or where(frames).kind != kind or (call and where(frames).call != call)
    ):
        time.sleep(0.01)
        frames = capture(thread.ident)
    assert frames is not None, "the thread ended before it was seen waiting"
    return frames


def test_a_thread_reading_from_a_server_that_never_answers_is_blocked_on_the_network() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()  # accepted, and never answered

        read_returned = threading.Event()

        def read() -> None:
            client.recv(1024)  # recv-blocks-here
            read_returned.set()

        try:
            frames = parked(read, "network")
        finally:
            accepted.close()  # the read returns b"" and the thread ends
            read_returned.wait(3)
            client.close()
    point = where(frames)
    assert (point.kind, point.call, point.function) == ("network", "socket.recv", "read")
    line = line_of("recv-blocks-here")
    assert point.location == f"tests/test_diagnosis.py:{line}"
    assert summarise(frames, cpu=0.0) == (
        f"blocked on a network read (socket.recv) in tests/test_diagnosis.py:{line}, CPU idle"
    )


def test_a_thread_waiting_for_an_http_response_is_blocked_on_a_network_read() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        url = "http://{}:{}/".format(*server.getsockname())

        def fetch() -> None:
            with contextlib.suppress(OSError):  # the server hangs up when the test ends
                urllib.request.urlopen(url, timeout=10)  # urlopen-blocks-here

        frames = parked(fetch, "network", "socket.recv_into")  # not the address lookup
        server.accept()[0].close()
    line = line_of("urlopen-blocks-here")
    assert summarise(frames, cpu=0.0) == (
        f"blocked on a network read (socket.recv_into) in tests/test_diagnosis.py:{line}, CPU idle"
    )


def test_a_sleeping_thread_is_sleeping() -> None:
    frames = parked(lambda: time.sleep(1.0), "sleep")
    assert where(frames).call == "time.sleep"
    summary = summarise(frames, cpu=1.0)
    assert summary.startswith("sleeping (time.sleep) in tests/test_diagnosis.py:")
    assert summary.endswith(", CPU idle")


def test_a_thread_waiting_on_an_event_is_waiting_on_a_lock_named_by_the_event() -> None:
    event = threading.Event()
    try:
        frames = parked(lambda: event.wait(), "lock")
    finally:
        event.set()
    assert where(frames).call == "threading.Event.wait"
    assert summarise(frames, cpu=None).startswith("waiting on an event (threading.Event.wait)")


def test_a_thread_blocked_acquiring_a_held_lock_is_waiting_on_a_lock() -> None:
    lock = threading.Lock()
    lock.acquire()

    def take_explicitly() -> None:
        lock.acquire()  # acquire-blocks-here
        lock.release()

    try:
        frames = parked(take_explicitly, "lock")
    finally:
        lock.release()
    line = line_of("acquire-blocks-here")
    assert summarise(frames, cpu=0.0) == (
        f"waiting on a lock (threading.Lock.acquire) in tests/test_diagnosis.py:{line}, CPU idle"
    )


def test_a_thread_waiting_on_an_empty_queue_is_waiting_on_the_queue() -> None:
    jobs: queue.Queue[int] = queue.Queue()
    try:
        frames = parked(lambda: jobs.get(), "lock")
    finally:
        jobs.put(1)
    assert where(frames).call == "queue.Queue.get"


def test_a_thread_waiting_for_a_child_process_is_waiting_for_a_subprocess() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)  # fmt: skip
    try:
        frames = parked(lambda: child.wait(), "subprocess")
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(5)
    assert where(frames).call == "subprocess.Popen.wait"
    assert summarise(frames, cpu=0.0).startswith("waiting for a subprocess (subprocess.Popen.wait)")


def test_a_busy_python_loop_is_running_and_reads_busy_at_full_cpu() -> None:
    done = False

    def crunch_numbers() -> None:
        total = 0
        while not done:
            total += 1

    try:
        frames = parked(crunch_numbers, "running")
    finally:
        done = True
    point = where(frames)
    assert (point.kind, point.call, point.function) == ("running", None, "crunch_numbers")
    assert point.location is not None
    assert point.location.startswith("tests/test_diagnosis.py:")
    summary = summarise(frames, cpu=100.0)
    assert summary == f"busy in a loop at {point.location} (crunch_numbers), CPU 100%"


def test_a_running_frame_with_idle_cpu_is_not_called_busy() -> None:
    frames = [Frame(str(ROOT / "app" / "jobs.py"), 7, "wait_for_vendor", "vendor.poll_once()")]
    assert summarise(frames, cpu=0.5) == "waiting at app/jobs.py:7 (wait_for_vendor), CPU idle"
    assert summarise(frames, cpu=None) == "running at app/jobs.py:7 (wait_for_vendor), CPU unknown"


def test_a_thread_that_has_ended_has_no_stack() -> None:
    thread = threading.Thread(target=lambda: None)
    thread.start()
    thread.join()
    assert thread.ident is not None
    assert capture(thread.ident) is None


def test_capture_keeps_the_innermost_frames_when_the_stack_is_deep() -> None:
    frames = capture(threading.get_ident(), limit=2)
    assert frames is not None and len(frames) == 2
    assert frames[-1].function == "capture"


def test_frames_survive_a_round_trip_through_json() -> None:
    frames = capture(threading.get_ident())
    assert frames
    stored = json.dumps(frames_to_json(frames))
    assert frames_from_json(json.loads(stored)) == frames
    assert frames_from_json(stored) == frames


@pytest.mark.parametrize(
    "garbage", [None, 42, "not json", b"\xff", {"a": 1}, [[1, 2]], [["f", "7", "g", "l"]]]
)
def test_garbage_reads_as_no_frames(garbage: object) -> None:
    assert frames_from_json(garbage) == []


def test_a_malformed_entry_is_dropped_and_the_rest_kept() -> None:
    data = [["a.py", 1, "f", "x()"], [True, None], ["b.py", True, "g", ""], ["c.py", 3, "h", ""]]
    assert [f.filename for f in frames_from_json(data)] == ["a.py", "c.py"]


def test_cpu_percent_is_cpu_seconds_over_wall_seconds() -> None:
    assert cpu_percent(10.0, 10.5, 1.0) == 50.0
    assert cpu_percent(3.0, 5.0, 2.0) == 100.0
    assert cpu_percent(None, 5.0, 2.0) is None
    assert cpu_percent(3.0, None, 2.0) is None
    assert cpu_percent(3.0, 5.0, 0.0) is None
    assert cpu_percent(9.0, 1.0, 2.0) is None  # a reused pid, not negative work


def test_a_location_under_the_working_directory_is_relative_and_others_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    inside = Frame(os.path.join(tmp_path, "app", "jobs.py"), 10, "job", "time.sleep(5)")
    outside = Frame("/srv/elsewhere/jobs.py", 3, "job", "time.sleep(5)")
    assert where([inside]).location == "app/jobs.py:10"
    assert where([outside]).location == "/srv/elsewhere/jobs.py:3"
    assert summarise([inside], cpu=0.0) == "sleeping (time.sleep) in app/jobs.py:10, CPU idle"


TASKS = "/srv/app/example_project/tasks.py"  # user code, outside the working directory


def stack(*rows: tuple[str, int, str, str]) -> list[Frame]:
    """Frames from (file, line, function, source) rows, outermost first as captured."""
    return [Frame(*row) for row in rows]


def test_a_requests_call_waiting_for_the_response_is_a_network_read_in_user_code() -> None:
    frames = stack(
        (f"{SITE}/celery/app/trace.py", 453, "trace_task", "R = retval = fun(*args, **kwargs)"),
        (TASKS, 42, "export_invoices", "reply = requests.get(VENDOR_URL)"),
        (f"{SITE}/requests/api.py", 73, "get", 'return request("get", url, **kwargs)'),
        (f"{SITE}/requests/adapters.py", 486, "HTTPAdapter.send", "resp = conn.urlopen("),
        (f"{SITE}/urllib3/connectionpool.py", 790, "HTTPConnectionPool.urlopen", "r = f("),
        (f"{STDLIB}/http/client.py", 1378, "HTTPConnection.getresponse", "response.begin()"),
        (f"{STDLIB}/http/client.py", 318, "HTTPResponse.begin", "v, s, r = self._read_status()"),
        (f"{STDLIB}/http/client.py", 279, "HTTPResponse._read_status", "self.fp.readline(n)"),
        (f"{STDLIB}/socket.py", 706, "SocketIO.readinto", "return self._sock.recv_into(b)"),
    )
    point = where(frames)
    assert point == where(frames_from_json(frames_to_json(frames)))
    assert (point.kind, point.call) == ("network", "socket.recv_into")
    assert (point.location, point.function) == (f"{TASKS}:42", "export_invoices")
    assert summarise(frames, cpu=2.0) == (
        f"blocked on a network read (socket.recv_into) in {TASKS}:42, CPU idle"
    )


def test_a_psycopg_query_waiting_on_the_server_is_a_database_wait() -> None:
    frames = stack(
        (TASKS, 17, "close_month", 'cur.execute("SELECT pg_sleep(3600)")'),
        (f"{SITE}/psycopg/cursor.py", 732, "Cursor.execute", "self._conn.wait(gen)"),
        (f"{SITE}/psycopg/connection.py", 969, "Connection.wait", "return waiting.wait(gen)"),
        (f"{SITE}/psycopg/waiting.py", 268, "wait_epoll", "fileevs = epoll.poll(timeout)"),
    )
    point = where(frames)
    assert (point.kind, point.call) == ("database", "psycopg.Cursor.execute")
    assert summarise(frames, cpu=0.0) == (
        f"waiting on the database (psycopg.Cursor.execute) in {TASKS}:17, CPU idle"
    )


def test_a_redis_command_reading_its_reply_is_a_database_wait_named_by_the_command() -> None:
    frames = stack(
        (TASKS, 9, "next_job", 'item = r.blpop("jobs")'),
        (f"{SITE}/redis/commands/core.py", 2512, "ListCommands.blpop", "return self.execute()"),
        (f"{SITE}/redis/client.py", 545, "Redis.execute_command", "return conn.retry.call()"),
        (f"{SITE}/redis/connection.py", 500, "Connection.read_response", "self._parser.read()"),
        (f"{SITE}/redis/_parsers/socket.py", 65, "SocketBuffer.read", "self._sock.recv(size)"),
    )
    assert (where(frames).kind, where(frames).call) == ("database", "redis.ListCommands.blpop")


def test_a_c_database_driver_is_recognised_from_the_calling_line() -> None:
    frames = stack((TASKS, 5, "load", "cursor.execute(sql, params)"))
    assert (where(frames).kind, where(frames).call) == ("database", "cursor.execute")


def test_without_a_stack_a_spinning_process_is_said_to_hold_the_gil() -> None:
    assert summarise(None, 99.6) == (
        "no Python stack could be taken (the process may hold the GIL in C code, e.g. a regex), "
        "CPU 100%"
    )
    assert summarise(None, 0.0) == "no stack captured yet, CPU idle"
    assert summarise([], None) == "no stack captured yet, CPU unknown"


def test_a_stack_entirely_in_libraries_is_shown_at_its_innermost_frame() -> None:
    frames = [Frame(f"{SITE}/celery/worker.py", 3, "loop", "x = 1")]
    point = where(frames)
    assert (point.kind, point.location) == ("running", f"{SITE}/celery/worker.py:3")

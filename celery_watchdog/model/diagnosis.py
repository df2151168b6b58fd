"""Where a stuck run waits: its thread's stack, classified, in one line a person understands.

The child's watchdog thread takes the task thread's stack (``capture``); it travels through Redis
as JSON (``frames_to_json`` / ``frames_from_json``); the monitor reads it next to the CPU the
worker's main process measured (``cpu_percent``) and says where and how the run waits
(``summarise``). Stdlib only, and nothing here may raise into the task it describes.
"""

from __future__ import annotations

import contextlib
import functools
import json
import linecache
import os
import re
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

MAX_FRAMES = 100  # a stack read back from Redis is cut to this many innermost frames
IDLE_PERCENT = 5.0  # below this the process waits rather than works
BUSY_PERCENT = 50.0  # a loop on a shared, contended core still reads well above half
_MAX_TEXT = 300  # longest source line kept: the stack is stored and shown, never a payload


@dataclass(frozen=True)
class Frame:
    filename: str
    lineno: int
    function: str
    line: str  # the source text, stripped ("" when the file cannot be read)


@dataclass(frozen=True)
class WaitPoint:
    kind: str  # "network" | "sleep" | "lock" | "subprocess" | "database" | "running"
    call: str | None  # the blocking call, e.g. "socket.recv"; None when running
    location: str | None  # the innermost user-code frame, "path:lineno"
    function: str | None  # the function at that location


def capture(thread_id: int, limit: int = 30) -> list[Frame] | None:
    """The stack of another thread of this process, innermost last; None if it is gone."""
    frame: FrameType | None = None
    try:
        frame = sys._current_frames().get(thread_id)
        stack: list[Frame] = []
        # Walk outward from the innermost frame: when the stack is cut, keep where it waits.
        while frame is not None and len(stack) < max(1, min(limit, MAX_FRAMES)):
            stack.append(_frame(frame))
            frame = frame.f_back
        return stack[::-1] or None  # no frame at all: the thread has ended
    except Exception:
        return None
    finally:
        del frame  # a frame reference would keep the other thread's locals alive


def _frame(frame: FrameType) -> Frame:
    code = frame.f_code
    # co_qualname (3.11+) says "Event.wait" where co_name says "wait"; "<locals>" is noise.
    name = str(getattr(code, "co_qualname", code.co_name)).rsplit("<locals>.", 1)[-1]
    lineno = frame.f_lineno or 0
    line = linecache.getline(code.co_filename, lineno, frame.f_globals).strip()
    return Frame(code.co_filename, lineno, name, line[:_MAX_TEXT])


def frames_to_json(frames: Sequence[Frame]) -> list[list[str | int]]:
    return [[f.filename, f.lineno, f.function, f.line] for f in frames]


def frames_from_json(data: object) -> list[Frame]:
    """Frames from ``frames_to_json`` output (or its JSON text); malformed entries are dropped."""
    try:
        if isinstance(data, (str, bytes)):
            data = json.loads(data)
        if not isinstance(data, list):
            return []
        frames = []
        for item in data[-MAX_FRAMES:]:
            # Exact types: a bool is not a line number.
            if isinstance(item, list) and [type(v) for v in item] == [str, int, str, str]:
                frames.append(Frame(item[0], item[1], item[2], item[3][:_MAX_TEXT]))
        return frames
    except Exception:
        return []


def cpu_percent(
    cpu_before: float | None, cpu_after: float | None, wall_seconds: float
) -> float | None:
    """CPU used between two readings of a process's CPU seconds, in % of one core."""
    # An earlier reading above a later one means the pid was reused: no honest answer.
    if cpu_before is None or cpu_after is None or not wall_seconds > 0 or cpu_after < cpu_before:
        return None
    return (cpu_after - cpu_before) / wall_seconds * 100.0


# The blocking call is usually C code, so the innermost *Python* frame is the line calling it
# (``sock.recv(65536)``): these match that line's text. First match wins; "{}" is group 1.
_LINE_RULES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"\bsleep\("), "sleep", "time.sleep"),
    (re.compile(r"\.(execute|executemany|executescript|fetch\w*)\("), "database", "cursor.{}"),
    (re.compile(r"\b(psycopg2?|pymysql|MySQLdb|sqlite3)\.connect\("), "database", "{}.connect"),
    (re.compile(r"_sslobj\.(read|write|do_handshake)\("), "network", "ssl.{}"),
    (re.compile(r"\.(recv\w*|send(?:all|to)?|connect(?:_ex)?|accept)\("), "network", "socket.{}"),
    (re.compile(r"\bgetaddrinfo\("), "network", "socket.getaddrinfo"),
    (re.compile(r"\.(select|poll)\("), "network", "select.{}"),
    (re.compile(r"\.acquire\("), "lock", "threading.Lock.acquire"),
    (re.compile(r"\bos\.(wait\w*)\("), "subprocess", "os.{}"),
)

# Library frames recognised by module (any of those listed, or a submodule) and qualified
# function ("*": any); the call is named module + function, e.g. "threading.Event.wait".
_FUNCTION_RULES: tuple[tuple[str, str, str], ...] = (
    ("threading", "Condition.wait Condition.wait_for Event.wait Semaphore.acquire Barrier.wait "
     "Thread.join Thread._wait_for_tstate_lock", "lock"),
    ("queue", "Queue.get Queue.put Queue.join", "lock"),
    ("concurrent.futures", "Future.result Future.exception wait as_completed", "lock"),
    ("multiprocessing", "ApplyResult.get ApplyResult.wait Queue.get", "lock"),
    ("subprocess", "Popen.wait Popen.communicate run call check_call check_output", "subprocess"),
    ("socket ssl selectors http.client", "*", "network"),
    ("urllib3", "HTTPConnectionPool._make_request HTTPResponse.read HTTPResponse.stream "
     "HTTPResponse.read_chunked", "network"),
    ("psycopg psycopg2 pymysql MySQLdb redis", "*", "database"),
)  # fmt: skip

# Walking outward, a frame that explains more replaces what was found further in: the redis
# command that ends in socket.recv is "database"; Lock.acquire inside Event.wait is the Event.
_RANK = {"sleep": 0, "network": 0, "lock": 1, "subprocess": 2, "database": 2}

_LIBRARY_ROOT = re.compile(r"[/\\](?:site-packages|dist-packages|lib[/\\]python\d[\d.]*)(?=[/\\])")
_STDLIB = tuple({os.path.join(sysconfig.get_path(name), "") for name in ("stdlib", "platstdlib")})


@functools.lru_cache(maxsize=1024)
def _module(filename: str) -> str | None:
    """The dotted module of a stdlib or installed file; None for user code. Read from the path's
    shape, not only this interpreter's: the stack may come from a host with Python elsewhere."""
    if filename.startswith("<frozen "):
        return filename[len("<frozen ") : -1]
    roots = list(_LIBRARY_ROOT.finditer(filename))
    if roots:
        rest = filename[roots[-1].end() + 1 :]
    else:
        prefix = next((p for p in _STDLIB if filename.startswith(p)), None)
        if prefix is None:
            return None
        rest = filename[len(prefix) :]
    return re.sub(r"[/\\]", ".", rest.removesuffix(".py")).removesuffix(".__init__")


def _match(frame: Frame, innermost: bool) -> tuple[str, str] | None:
    if innermost:
        for pattern, kind, label in _LINE_RULES:
            found = pattern.search(frame.line)
            if found:
                return kind, label.format(*found.groups())
    module = _module(frame.filename)
    if module is None:
        return None
    for modules, functions, kind in _FUNCTION_RULES:
        if functions != "*" and frame.function not in functions.split():
            continue
        for name in modules.split():
            if module == name or module.startswith(name + "."):
                return kind, f"{name}.{frame.function}"
    return None


def where(frames: Sequence[Frame] | None) -> WaitPoint:
    """What the innermost frames are doing, and the innermost user-code frame to show."""
    if not frames:
        return WaitPoint("running", None, None, None)
    user = max((i for i, f in enumerate(frames) if _module(f.filename) is None), default=None)
    spot = frames[-1 if user is None else user]
    found: tuple[str, str] | None = None
    # Only the frames from the user's call inward can say what that call is doing.
    for depth, frame in enumerate(reversed(frames[user or 0 :])):
        match = _match(frame, innermost=depth == 0)
        if match and (found is None or _outranks(match[0], found[0])):
            found = match
    kind, call = found or ("running", None)
    return WaitPoint(kind, call, _location(spot), spot.function)


def _outranks(kind: str, current: str) -> bool:
    same_api = kind == current and _RANK[kind] > 0  # the outer, higher-level API names it better
    return _RANK[kind] > _RANK[current] or same_api


def _location(frame: Frame) -> str:
    path = frame.filename
    with contextlib.suppress(OSError):  # a deleted working directory: show the path as given
        path = path.removeprefix(os.path.join(os.getcwd(), ""))
    return f"{path}:{frame.lineno}"


# What a call is doing, by a word in its name: first match wins.
_NETWORK_PHRASES = (("getaddrinfo", "blocked on a DNS lookup"),
    ("connect", "blocked connecting over the network"), ("handshake", "blocked on a TLS handshake"),
    ("accept", "waiting for an incoming connection"), ("recv", "blocked on a network read"),
    ("read", "blocked on a network read"), ("getresponse", "blocked on a network read"),
    ("send", "blocked on a network write"), ("write", "blocked on a network write"))  # fmt: skip
_LOCK_PHRASES = (("event", "waiting on an event"), ("queue", "waiting on a queue"),
    ("future", "waiting on a future"), ("applyresult", "waiting for a pool result"),
    ("thread.join", "waiting for a thread to finish"))  # fmt: skip
_PHRASES = {"sleep": "sleeping", "subprocess": "waiting for a subprocess",
            "database": "waiting on the database"}  # fmt: skip


def _doing(kind: str, call: str) -> str:
    lowered = call.lower()
    if kind == "network":
        name = lowered.rsplit(".", 1)[-1]  # "HTTPConnection.getresponse" reads, not connects
        return next((p for w, p in _NETWORK_PHRASES if w in name), "waiting on network I/O")
    if kind == "lock":
        return next((p for w, p in _LOCK_PHRASES if w in lowered), "waiting on a lock")
    return _PHRASES.get(kind, "waiting")


def _cpu_words(cpu: float | None) -> str:
    if cpu is None:
        return "CPU unknown"
    return "CPU idle" if cpu < IDLE_PERCENT else f"CPU {cpu:.0f}%"


def of_record(stack_json: str | None, cpu: float | None) -> str:
    """:func:`summarise` of a stack as stored (JSON, taken once the run went quiet)."""
    try:
        frames = frames_from_json(json.loads(stack_json)) if stack_json else None
    except ValueError:  # a stack cut or mangled in storage: judged by CPU alone
        frames = None
    return summarise(frames, cpu)


def summarise(frames: Sequence[Frame] | None, cpu: float | None) -> str:
    """One line: where the run waits (or spins) and whether its process burns CPU."""
    usage = _cpu_words(cpu)
    if not frames:
        if cpu is not None and cpu >= BUSY_PERCENT:
            # A child spinning in C with the GIL starves its own watchdog thread: no stack.
            hint = "the process may hold the GIL in C code, e.g. a regex"
            return f"no Python stack could be taken ({hint}), {usage}"
        return f"no stack captured yet, {usage}"
    point = where(frames)
    if point.kind == "running" or point.call is None:
        at = f"at {point.location} ({point.function})"
        if cpu is not None and cpu >= BUSY_PERCENT:
            return f"busy in a loop {at}, {usage}"
        if cpu is not None and cpu < IDLE_PERCENT:
            return f"waiting {at}, {usage}"
        return f"running {at}, {usage}"
    return f"{_doing(point.kind, point.call)} ({point.call}) in {point.location}, {usage}"

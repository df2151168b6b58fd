"""Redis memory the watchdog keeps after 100k, then 200k finished runs (target: <= 20 MB, flat).

Two paths write the same records:

- ``recorder`` (default, ~1 minute): this process runs the real write path for every run: the
  ``task_received`` receiver (the worker main process's event, fed a request-shaped object),
  Celery's task tracer, built once per task as a worker builds it (so it fires the real
  ``task_prerun``/``task_postrun`` receivers), and ``Recorder.flush`` ->
  ``store.runs.write_batch`` -> ``flush.lua`` every 1000 runs.
  Every run has a distinct task id; 20 task names; args, kwargs and a result are previewed;
  the worker name is a realistic ``celery@<kubernetes pod name>`` (key and field sizes, hence
  Redis encodings, depend on it).
- ``worker``: the same number of no-op tasks pushed through a prefork watchdog worker (~250
  no-op tasks/s per core here, so 200k runs take many minutes).

Memory is Redis ``used_memory`` against the empty server's, read at checkpoints.
``python -m benchmarks.memory --help`` runs it alone.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ._harness import PrivateRedis, Worker, cleanup_all, install_signal_handlers
from .benchapp import MEMORY_TASKS, make_app

PREFIX = "wdmem"
# Worker names end up in every record; a production-like one, not a two-letter test host.
NODENAME = "celery@reports-worker-5d8f7c9b6-x2k4p"
TARGET_MB = 20.0
FLAT_TOLERANCE = 0.10  # after twice the runs, at most 10 % more memory
CHUNK = 1000


def _memory(client: Any) -> dict[str, Any]:
    info = client.info("memory")
    return {
        "used_memory": int(info["used_memory"]),
        "keys": int(client.dbsize()),
        "finished": int(client.zcard(f"{PREFIX}:finished")),
    }


def _succeeded(client: Any) -> int:
    total = 0
    for key in client.scan_iter(match=f"{PREFIX}:s1h:*", count=1000):
        total += int(client.hget(key, "succeeded") or 0)
    return total


def _anatomy(client: Any, sample_key: str) -> dict[str, Any]:
    """Where the memory is: bytes per key family, and one finished task's hash in detail."""
    families: dict[str, list[int]] = {}
    for key in client.scan_iter(count=1000):
        family = key.split(":")[1] if key.startswith(PREFIX + ":") else "(broker/other)"
        entry = families.setdefault(family, [0, 0])
        entry[0] += 1
        entry[1] += int(client.memory_usage(key, samples=0) or 0)
    sample = client.hgetall(sample_key) if sample_key else {}
    limit = int(client.config_get("hash-max-listpack-value").get("hash-max-listpack-value", 64))
    return {
        "families": families,
        "sample": sample,
        "sample_bytes": int(client.memory_usage(sample_key, samples=0) or 0) if sample else 0,
        "sample_encoding": client.object("encoding", sample_key) if sample else None,
        "listpack_value_limit": limit,
        "long_fields": {k: len(v) for k, v in sample.items() if len(v) > limit},
    }


def _checkpoints(runs: int) -> list[int]:
    quarter = max(1, runs // 4)
    return sorted({*range(quarter, 2 * runs + 1, quarter), runs, 2 * runs})


def _recorder_path(server: PrivateRedis, runs: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from celery.app.trace import build_tracer

    import celery_watchdog
    from celery_watchdog.worker.deliveries import DeliveryGate

    app = make_app("watchdog", server.url, PREFIX)
    wd = celery_watchdog.install(app)
    assert wd is not None
    hostname = NODENAME
    tasks = [app.tasks[name] for name in MEMORY_TASKS]
    # One tracer per task, built once, as a worker does: it fires task_prerun/postrun.
    tracers = [build_tracer(t.name, t, hostname=hostname, app=app) for t in tasks]
    gate = DeliveryGate(wd, hostname)
    recorder = wd.recorder
    client = server.client()
    points: list[dict[str, Any]] = []
    marks = _checkpoints(runs)
    done = 0
    started = time.monotonic()
    for mark in marks:
        while done < mark:
            n = min(CHUNK, mark - done)
            for i in range(done, done + n):
                task, tracer = tasks[i % len(tasks)], tracers[i % len(tasks)]
                task_id = str(uuid.uuid4())
                args, kwargs = (i, "2024-05"), {"notify": True}
                request = SimpleNamespace(
                    _app=app,
                    id=task_id,
                    name=task.name,
                    task=task,
                    args=args,
                    kwargs=kwargs,
                    request_dict={"retries": 0, "root_id": task_id, "parent_id": None},
                    delivery_info={"exchange": "", "routing_key": "celery"},
                    eta=None,
                    expires=None,
                    hostname=hostname,
                )
                gate.on_received(sender=None, request=request)  # the main process's receiver
                delivery = {"exchange": "", "routing_key": "celery"}
                tracer(
                    task_id,
                    args,
                    kwargs,
                    {
                        "id": task_id,
                        "task": task.name,
                        "args": args,
                        "kwargs": kwargs,
                        "hostname": hostname,
                        "delivery_info": delivery,
                        "root_id": task_id,
                        "retries": 0,
                    },
                )
            done += n
            if not recorder.flush():
                raise RuntimeError("the recorder could not write to Redis")
        points.append({"runs": done, "elapsed": time.monotonic() - started, **_memory(client)})
    info = {
        "path": "recorder",
        "recorded": _succeeded(client),
        "dropped": recorder.dropped,
        "errors": recorder.errors,
        **_anatomy(client, f"{PREFIX}:task:{task_id}"),
    }
    client.close()
    return points, info


def _worker_path(
    server: PrivateRedis, runs: int, log_dir: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    app = make_app("watchdog", server.url, PREFIX)
    control = make_app("plain", server.url)
    queue = f"mem.{uuid.uuid4().hex[:6]}"
    worker = Worker("watchdog", server.url, NODENAME, queue, log_dir, prefix=PREFIX)
    client = server.client()
    tasks = [app.tasks[name] for name in MEMORY_TASKS]
    points: list[dict[str, Any]] = []
    started = time.monotonic()
    done = 0
    try:
        worker.start(control)
        for mark in _checkpoints(runs):
            with app.producer_or_acquire() as producer:
                for i in range(done, mark):
                    tasks[i % len(tasks)].apply_async(
                        (i, "2024-05"), {"notify": True}, queue=queue, producer=producer
                    )
            deadline = time.monotonic() + max(600.0, (mark - done) / 20)
            while _succeeded(client) < mark:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker path: {mark} runs not recorded in time")
                time.sleep(0.5)
            done = mark
            points.append({"runs": done, "elapsed": time.monotonic() - started, **_memory(client)})
            print(f"    {done} runs recorded", flush=True)
    finally:
        worker.stop()
    last = client.zrevrange(f"{PREFIX}:finished", 0, 0)
    info = {
        "path": "worker",
        "recorded": _succeeded(client),
        "dropped": None,
        "errors": None,
        **_anatomy(client, f"{PREFIX}:task:{last[0]}" if last else ""),
    }
    client.close()
    return points, info


def measure(
    runs: int = 100_000, path: str = "recorder", log_dir: Path | None = None
) -> dict[str, Any]:
    """Memory after ``runs`` and ``2 * runs`` finished runs, on a fresh private Redis."""
    with PrivateRedis("memory") as server:
        client = server.client()
        empty = int(client.info("memory")["used_memory"])
        client.close()
        if path == "worker":
            log_dir = log_dir or Path(tempfile.mkdtemp(prefix="watchdog-bench-"))
            points, info = _worker_path(server, runs, log_dir)
        else:
            points, info = _recorder_path(server, runs)
    return {"runs": runs, "empty": empty, "nodename": NODENAME, "points": points, **info}


def _mb(value: float) -> float:
    return value / 1e6


def print_table(mem: dict[str, Any]) -> None:
    where = {
        "recorder": "real receivers + Recorder.flush -> store.runs.write_batch -> flush.lua",
        "worker": "no-op tasks through a prefork watchdog worker",
    }[mem["path"]]
    print(f"\nRedis memory (path: {mem['path']}: {where}; 20 task names, distinct ids)")
    print(f"  worker name in records: {mem.get('nodename')}")
    print(f"  empty server used_memory {_mb(mem['empty']):.2f} MB")
    print(
        f"  {'runs':>8} {'used_memory MB':>15} {'delta MB':>9} {'keys':>7} {'finished':>9} {'s':>6}"
    )
    for p in mem["points"]:
        used, delta = _mb(p["used_memory"]), _mb(p["used_memory"] - mem["empty"])
        print(
            f"  {p['runs']:>8} {used:>15.2f} {delta:>9.2f} "
            f"{p['keys']:>7} {p['finished']:>9} {p['elapsed']:>6.1f}"
        )
    print("  at the end, by key family (MEMORY USAGE, bytes):")
    for family, (count, size) in sorted(mem["families"].items(), key=lambda kv: -kv[1][1]):
        print(f"    {family:<16} {count:>7} keys {size / 1e6:>8.2f} MB  {size / count:>6.0f} B/key")
    if mem["sample"]:
        long = ", ".join(f"{k} ({n} chars)" for k, n in mem["long_fields"].items()) or "none"
        print(
            f"  one finished task hash: {mem['sample_bytes']} B, {len(mem['sample'])} fields, "
            f"encoding {mem['sample_encoding']}; fields longer than hash-max-listpack-value "
            f"({mem['listpack_value_limit']}): {long}"
        )
    extra = "" if mem["dropped"] is None else f", dropped {mem['dropped']}, errors {mem['errors']}"
    print(f"  recorded (sum of per-hour 'succeeded' counters): {mem['recorded']}{extra}")


def _at(mem: dict[str, Any], runs: int) -> dict[str, Any]:
    return next(p for p in mem["points"] if p["runs"] == runs)


def checks(mem: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    runs = mem["runs"]
    first, second = _at(mem, runs), _at(mem, 2 * runs)
    complete = mem["recorded"] == 2 * runs
    note = "" if complete else f"  [only {mem['recorded']} of {2 * runs} runs recorded]"
    size_ok: bool | None = _mb(first["used_memory"]) <= TARGET_MB and complete
    label = f"Redis memory after {runs // 1000}k finished runs <= {TARGET_MB:.0f} MB"
    if runs < 100_000:
        size_ok, label = None, label + " (target is for 100k: not judged)"
    growth = second["used_memory"] / first["used_memory"] - 1
    return [
        (
            label,
            size_ok,
            f"{_mb(first['used_memory']):.2f} MB used_memory "
            f"({_mb(first['used_memory'] - mem['empty']):.2f} MB over the empty server), "
            f"path {mem['path']}{note}",
        ),
        (
            f"... and flat after {2 * runs // 1000}k (growth <= {FLAT_TOLERANCE:.0%})",
            growth <= FLAT_TOLERANCE and complete,
            f"{_mb(second['used_memory']):.2f} MB, {growth:+.1%} vs {runs // 1000}k",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.memory",
        description="Redis memory kept by celery_watchdog after N and 2N finished runs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=100_000, help="finished runs per step")
    parser.add_argument(
        "--path",
        choices=("recorder", "worker"),
        default="recorder",
        help="recorder: real write path in-process; worker: prefork worker (slow)",
    )
    a = parser.parse_args(argv)
    install_signal_handlers()
    try:
        mem = measure(a.runs, a.path)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        cleanup_all()
    print_table(mem)
    ok = True
    for label, passed, detail in checks(mem):
        ok = ok and passed is not False
        print(f"  [{'INFO' if passed is None else 'PASS' if passed else 'FAIL'}] {label}: {detail}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

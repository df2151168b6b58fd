"""Queue and schedule health: what it costs, against the issue's targets.

``python -m benchmarks.queues [--queues 50] [--messages 10000] [--names 500] [--quick]``

On a private Redis (``celery_watchdog.embedded``), side by side in one run:

1. **A monitor pass over N queues with M messages waiting** (spread evenly, every message a real
   Celery message with the publish stamp and an ``alert_context``; the first of each queue
   published by ``apply_async``, the rest copies with fresh ids pushed in pipelines). Timed: the
   queue part of a pass (``monitor.queues.judge``: depth over every priority list, the oldest
   message's age, who waits among the oldest, completions, what is normal, the verdicts), and a
   whole pass (``run_pass``) with those queues beside a pass of the same app with the queues
   empty. Target: the queue part adds <= 20 ms.
2. **The publish stamp**: the ``before_task_publish`` receiver alone, per call, beside an empty
   call; and ``apply_async`` to the Redis broker with the receiver connected vs disconnected,
   interleaved rounds. Target: <= 5 us per publish.
3. **The history's memory**: N task names x 168 hours of runs (through ``flush.lua``, the real
   write path), the per-name hour-of-week cells, summed with ``MEMORY USAGE``; 50 queues x 168
   hours of oldest ages and completions beside them. Target: <= 5 MB for 500 names x 168 hours.

Exit status 0 when every target passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from typing import Any

from celery import Celery, signals
from kombu import Queue

from celery_watchdog import install
from celery_watchdog.brokers import HEADER
from celery_watchdog.embedded import RedisServer
from celery_watchdog.monitor import queues as monitor_queues
from celery_watchdog.monitor.check import run_pass
from celery_watchdog.recording import publishing as ours
from celery_watchdog.testing import capture_alerts

RECEIVER_UID = "celery_watchdog.on_before_publish"  # as recording.signals.connect() names it
TARGET_PASS_MS = 20.0
TARGET_STAMP_US = 5.0
TARGET_HISTORY_MB = 5.0


def make_app(url: str, queues: list[str]) -> Celery:
    app = Celery(f"qbench-{uuid.uuid4().hex[:6]}", set_as_current=False)
    app.conf.update(
        broker_url=url, result_backend=url, watchdog_redis_url=url,
        watchdog_key_prefix=f"qbench-{uuid.uuid4().hex[:6]}", imports=["celery_watchdog"],
        task_queues=[Queue(q) for q in queues],
        watchdog_queue_policies={q: {"action": f"Action {q}", "threshold": "5m"} for q in queues},
    )  # fmt: skip

    @app.task(name="qbench.work", shared=False, alert_context=("account_id",))
    def work(account_id: int = 0) -> int:
        return account_id

    return app


def fill(app: Celery, queues: list[str], messages: int, age: float = 0.0) -> None:
    """``messages`` real messages over the queues: one published, the rest its copies (their
    publish stamps set ``age`` seconds back)."""
    client = install(app).store().r  # type: ignore[union-attr]
    per = max(1, messages // len(queues))
    for q in queues:
        app.tasks["qbench.work"].apply_async(kwargs={"account_id": 0}, queue=q)
        [raw] = client.lrange(q, 0, 0)
        template = json.loads(raw)
        pipe = client.pipeline(transaction=False)
        for i in range(1, per):
            msg = dict(template)
            headers = dict(msg["headers"])
            headers["id"] = str(uuid.uuid4())
            headers[HEADER] = time.time() - age
            headers["kwargsrepr"] = repr({"account_id": i % 300})
            msg["headers"] = headers
            pipe.lpush(q, json.dumps(msg))
            if i % 2000 == 0:
                pipe.execute()
        pipe.execute()


def median_ms(fn: Any, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def on_db(url: str, db: int) -> str:
    return url.rsplit("/", 1)[0] + f"/{db}"


def bench_pass(url: str, n_queues: int, messages: int, reps: int) -> dict[str, Any]:
    """Each setting on its own Redis database: kombu's binding tables would show every app
    the queues of the others."""
    names = [f"bench.q{i:02d}" for i in range(n_queues)]
    setups = {}
    for label, db, queues, age in (("none", 1, [], 0.0), ("healthy", 2, names, 0.0),
                                   ("stalled", 3, names, 900.0)):  # fmt: skip
        app = make_app(on_db(url, db), queues)
        wd = install(app)
        assert wd is not None
        if queues:
            fill(app, queues, messages, age)
        setups[label] = (wd, wd.store())
    part: dict[str, list[float]] = {k: [] for k in setups}
    whole: dict[str, list[float]] = {k: [] for k in setups}
    with capture_alerts():
        for wd, store in setups.values():  # warm: the first pass opens the incidents
            run_pass(wd, store)
            run_pass(wd, store)
        for _ in range(reps):  # interleaved
            for label, (wd, store) in setups.items():
                part[label].append(
                    median_ms(lambda w=wd, s=store: monitor_queues.judge(w, s, s.now()), 1)
                )
                whole[label].append(median_ms(lambda w=wd, s=store: run_pass(w, s), 1))
    wd, store = setups["stalled"]
    doc = next(d for d in monitor_queues.read(wd, store, store.now(), []) if d["name"] == names[0])
    return {
        "queues": n_queues, "waiting": sum(store.r.llen(q) for q in names),
        "part_ms": {k: statistics.median(v) for k, v in part.items()},
        "pass_ms": {k: statistics.median(v) for k, v in whole.items()},
        "stalled_first_queue": doc["summary"],
    }  # fmt: skip


def bench_stamp(url: str, calls: int, publishes: int, rounds: int) -> dict[str, float]:
    def empty(sender: Any = None, headers: Any = None, routing_key: Any = None,
              body: Any = None, **_: Any) -> None:
        return None  # fmt: skip

    def per_call(fn: Any) -> float:
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(calls):
                fn(sender="qbench.work", headers={"id": "x", "task": "qbench.work"},
                   routing_key="celery", body=((), {}, {}))  # fmt: skip
            best = min(best, (time.perf_counter() - t) / calls * 1e6)
        return best

    receiver_us, empty_us = per_call(ours.on_before_publish), per_call(empty)
    app = make_app(url, ["celery"])
    install(app)
    task = app.tasks["qbench.work"]
    task.apply_async(kwargs={"account_id": 1})  # connect, declare
    on, off = [], []

    def publish_round() -> float:
        t = time.perf_counter()
        for i in range(publishes):
            task.apply_async(kwargs={"account_id": i}, queue="celery")
        return (time.perf_counter() - t) / publishes * 1e6

    for _ in range(rounds):
        on.append(publish_round())
        # By the uid it was connected with: disconnecting by the function would leave it on.
        signals.before_task_publish.disconnect(dispatch_uid=RECEIVER_UID)
        try:
            off.append(publish_round())
        finally:
            signals.before_task_publish.connect(ours.on_before_publish, weak=False,
                                                dispatch_uid=RECEIVER_UID)  # fmt: skip
    return {
        "receiver_us": receiver_us, "empty_call_us": empty_us,
        "stamp_us": receiver_us - empty_us,
        "apply_async_with_us": statistics.median(on),
        "apply_async_without_us": statistics.median(off),
    }  # fmt: skip


def bench_history(url: str, names: int, queues: int) -> dict[str, float]:
    app = make_app(url, [])
    wd = install(app)
    assert wd is not None
    store, limits = wd.store(), wd.recorder.limits
    now = store.now()
    # Every name has runs in each of the last 168 hours (short successes, counted and timed).
    events = [
        {"kind": "agg", "name": f"bench.tasks.name_{n:03d}", "n": 40, "age": h * 3600.0 + 1,
         "runtimes": [0.05 + 0.01 * (h % 7), 0.2, 1.5]}
        for n in range(names) for h in range(168)
    ]  # fmt: skip
    for start in range(0, len(events), 5000):
        assert not store.runs.write_batch(events[start : start + 5000], [], limits).rejected
    # Queues: the monitor's oldest ages per hour, and completions per hour (as flush.lua keeps).
    for h in range(168):
        at = now - h * 3600.0
        store.queues.record_oldest({f"bench.q{q:02d}": 10.0 + q + h for q in range(queues)}, at)
    pipe = store.r.pipeline(transaction=False)
    for q in range(queues):
        for key in store.r.scan_iter(f"{store.p}:qwk:bench.q{q:02d}:*"):
            for how in range(168):
                pipe.hset(key, f"{how}:d", 1000 + how)
    pipe.execute()

    def usage(pattern: str) -> tuple[int, int]:
        keys = list(store.r.scan_iter(pattern, count=10_000))
        pipe = store.r.pipeline(transaction=False)
        for key in keys:
            pipe.memory_usage(key, samples=0)
        return len(keys), sum(int(v or 0) for v in pipe.execute())

    name_keys, name_bytes = usage(f"{store.p}:hw:*")
    queue_keys, queue_bytes = usage(f"{store.p}:qwk:*")
    return {
        "names": names, "hours": 168, "name_keys": name_keys, "name_mb": name_bytes / 1e6,
        "queues": queues, "queue_keys": queue_keys, "queue_mb": queue_bytes / 1e6,
        "per_name_week_bytes": name_bytes / max(1, name_keys),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.queues", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--queues", type=int, default=50)
    parser.add_argument("--messages", type=int, default=10_000, help="waiting, over all queues")
    parser.add_argument("--names", type=int, default=500, help="task names with history")
    parser.add_argument("--reps", type=int, default=9, help="timed passes")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (~20 s)")
    parser.add_argument("--json", dest="json_path", default=None, help="also write raw numbers")
    opts = parser.parse_args(argv)
    reps = 3 if opts.quick else opts.reps
    with RedisServer() as server:
        passes = bench_pass(server.url, opts.queues, opts.messages, reps)
        stamp = bench_stamp(server.url, 20_000 if opts.quick else 100_000,
                            200 if opts.quick else 1000, 3 if opts.quick else 7)  # fmt: skip
        history = bench_history(server.url, opts.names, opts.queues)
    part, whole = passes["part_ms"], passes["pass_ms"]
    added = whole["healthy"] - whole["none"]
    print(f"1. monitor pass, {passes['queues']} queues, {passes['waiting']} messages waiting")
    print(f"   whole pass: {whole['healthy']:.1f} ms with them vs {whole['none']:.1f} ms with no "
          f"queue = +{added:.1f} ms = {whole['healthy'] / whole['none']:.2f} x; target "
          f"+{TARGET_PASS_MS:.0f} ms: {added / TARGET_PASS_MS:.2f} x target")  # fmt: skip
    print(f"   queue part (monitor.queues.judge): {part['healthy']:.1f} ms (no queue: "
          f"{part['none']:.1f} ms)")  # fmt: skip
    print(f"   INFO all {passes['queues']} queues stalled (who waits read from the oldest 50 of "
          f"each): pass {whole['stalled']:.1f} ms, queue part {part['stalled']:.1f} ms; e.g. "
          f"{passes['stalled_first_queue']}")  # fmt: skip
    ratio = stamp["apply_async_with_us"] / stamp["apply_async_without_us"]
    print(f"2. publish stamp: receiver {stamp['receiver_us']:.2f} us per call vs an empty call "
          f"{stamp['empty_call_us']:.2f} us = {stamp['stamp_us']:.2f} us added; "
          f"target <= {TARGET_STAMP_US:.0f} us: {stamp['stamp_us'] / TARGET_STAMP_US:.2f} x")
    print(f"   apply_async to Redis: {stamp['apply_async_with_us']:.0f} us with the receiver vs "
          f"{stamp['apply_async_without_us']:.0f} us without = {ratio:.3f} x")  # fmt: skip
    print(f"3. history: {history['names']} task names x 168 hours: {history['name_keys']} "
          f"week keys, {history['name_mb']:.2f} MB ({history['per_name_week_bytes']:.0f} B a "
          f"name-week; 168 hours span 2 weeks); target <= {TARGET_HISTORY_MB:.0f} MB: "
          f"{history['name_mb'] / TARGET_HISTORY_MB:.2f} x target")  # fmt: skip
    print(f"   queues: {history['queues']} x 168 hours: {history['queue_mb']:.2f} MB; kept: the "
          f"week now and 4 before (what is normal is their median), so at most "
          f"{5 * history['per_name_week_bytes'] * history['names'] / 1e6:.1f} MB for "
          f"{history['names']} names always busy")  # fmt: skip
    ok = (added <= TARGET_PASS_MS and stamp["stamp_us"] <= TARGET_STAMP_US
          and history["name_mb"] <= TARGET_HISTORY_MB)  # fmt: skip
    print("PASS" if ok else "FAIL")
    if opts.json_path:
        with open(opts.json_path, "w") as f:
            json.dump({"pass": passes, "stamp": stamp, "history": history}, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

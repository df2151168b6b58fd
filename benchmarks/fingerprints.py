"""Cost of a monitor pass while the watchdog tracks many input fingerprints.

``python -m benchmarks.fingerprints [--fingerprints 10000] [--quarantined 1000] [--names 50]``

Through the real write path (``store.runs.write_batch`` -> ``flush.lua``), it records one
deterministic failure ("bad input") for each of N inputs spread over a number of task names,
so N fingerprints are tracked; then three failures (as different task ids) of Q more inputs,
which quarantines them. It times, side by side on one private Redis:

- a monitor pass (``run_pass``) over the same names with no fingerprint tracked (baseline);
- the first pass with the fingerprints (it alerts every newly quarantined input once);
- the passes after it (steady state: what every pass costs while they stay tracked);
- a worker's reload of the quarantined inputs (``DeliveryGate.refresh``, on each change).

Alerts are captured (``capture_alerts``), so no channel's latency is counted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from typing import Any

from celery import Celery

from celery_watchdog import install
from celery_watchdog.embedded import RedisServer
from celery_watchdog.monitor.check import run_pass
from celery_watchdog.testing import capture_alerts
from celery_watchdog.worker.deliveries import DeliveryGate

BATCH = 2000


def make_app(url: str) -> Celery:
    app = Celery(f"fpbench-{uuid.uuid4().hex[:6]}", set_as_current=False)
    app.conf.update(broker_url=url, result_backend=url, watchdog_redis_url=url,
                    watchdog_key_prefix=f"fpbench-{uuid.uuid4().hex[:6]}",
                    imports=["celery_watchdog"])  # fmt: skip
    return app


def failure(name: str, fp: str, n: int) -> dict[str, Any]:
    return {
        "kind": "end", "id": str(uuid.uuid4()), "name": name, "worker": "bench@host", "pid": 1,
        "state": "FAILURE", "outcome": "failed", "age": 1.0, "runtime": 0.01, "first": True,
        "started_age": 1.01, "exception": f"ValueError: row {n} is not a number",
        "reason": "bad input", "fp": fp, "fp_label": f"{name}(file_id={n})", "q_after": 3,
    }  # fmt: skip


def seed(wd: Any, names: list[str], fingerprints: int, quarantined: int, tracked: bool) -> None:
    """The same failures either way; ``tracked``: with their input fingerprints."""
    store, limits = wd.store(), wd.recorder.limits
    events = [failure(names[i % len(names)], f"fp_{i:016x}", i) for i in range(fingerprints)]
    for i in range(quarantined):
        fp = f"fp_{fingerprints + i:016x}"
        events += [failure(names[i % len(names)], fp, i) for _ in range(3)]
    if not tracked:
        for e in events:
            for key in ("fp", "fp_label", "q_after"):
                e.pop(key)
    for start in range(0, len(events), BATCH):
        rejected = store.runs.write_batch(events[start : start + BATCH], [], limits).rejected
        assert not rejected, rejected[:3]


def timed_passes(wd: Any, n: int) -> list[float]:
    store = wd.store()
    out = []
    with capture_alerts():
        for _ in range(n):
            started = time.perf_counter()
            run_pass(wd, store)
            out.append(time.perf_counter() - started)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.fingerprints", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--fingerprints", type=int, default=10_000, help="inputs tracked")
    parser.add_argument("--quarantined", type=int, default=1000, help="inputs quarantined")
    parser.add_argument("--names", type=int, default=50, help="failing task names")
    parser.add_argument("--passes", type=int, default=7, help="timed steady passes")
    opts = parser.parse_args(argv)
    names = [f"bench.import_{i}" for i in range(opts.names)]
    with RedisServer() as server:
        base = install(make_app(server.url))
        loaded = install(make_app(server.url))
        assert base is not None and loaded is not None
        # The same failures of the same names in both: only the fingerprints differ.
        seed(base, names, opts.fingerprints, opts.quarantined, tracked=False)
        started = time.perf_counter()
        seed(loaded, names, opts.fingerprints, opts.quarantined, tracked=True)
        seeded = time.perf_counter() - started
        timed_passes(base, 1)  # its first pass opens the same "failed" incidents
        baseline = timed_passes(base, opts.passes)
        [first] = timed_passes(loaded, 1)
        steady = timed_passes(loaded, opts.passes)
        gate = DeliveryGate(loaded, "bench@host")
        reloads = []
        for _ in range(5):
            gate._version = None  # as after a change
            t = time.perf_counter()
            gate.refresh()
            reloads.append(time.perf_counter() - t)
        tracked = len(list(loaded.store().r.scan_iter(f"{loaded.settings.key_prefix}:fp:*:ids",
                                                      count=5000)))  # fmt: skip
        quarantined = len(loaded.store().quarantine.all())
    med_base, med_steady = statistics.median(baseline), statistics.median(steady)
    print(f"fingerprints tracked: {tracked}, quarantined: {quarantined}, failing names: "
          f"{opts.names} (seeded through flush.lua in {seeded:.1f} s)")  # fmt: skip
    print(f"  monitor pass, no fingerprints (baseline): median {med_base * 1000:.1f} ms")
    print(f"  monitor pass, {tracked} tracked (steady):   median {med_steady * 1000:.1f} ms "
          f"= {med_steady / med_base:.2f} x baseline")  # fmt: skip
    print(f"  first pass (alerts {quarantined} newly quarantined inputs once): "
          f"{first * 1000:.0f} ms")  # fmt: skip
    print(f"  a worker reloading {quarantined} quarantined inputs (on each change): median "
          f"{statistics.median(reloads) * 1000:.1f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

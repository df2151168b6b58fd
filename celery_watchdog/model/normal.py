"""What is normal for a task name at this hour of the week, from the weeks before.

The store keeps, per task name and week, one 12-byte cell per hour of the week (written by
``flush.lua`` with ``BITFIELD``, big-endian): runs (u32), failures (u24), retries (u24) and the
hour's runtime p95 as a 10 %-wide log bucket ``b`` stored as ``b + 1`` (u16; 0: nothing timed).
500 task names x 168 hours is 1 MB a week this way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

BUCKET_GROWTH = 1.1  # flush.lua: b = floor(log(ms + 1) / log(1.1))


def bucket_seconds(code: int) -> float | None:
    """The runtime a stored p95 code stands for (the bucket's geometric middle), in seconds."""
    if code <= 0:
        return None
    return max(0.0, BUCKET_GROWTH ** (code - 1 + 0.5) - 1) / 1000


def histogram_percentile(buckets: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile of runtimes counted by bucket code (``h{b}`` is code ``b + 1``)."""
    total = sum(n for n in buckets.values() if n > 0)
    if total <= 0:
        return None
    want, seen = max(1, math.ceil(q * total)), 0
    for code in sorted(buckets):
        seen += max(0, buckets[code])
        if seen >= want:
            return bucket_seconds(code)
    return None


@dataclass(frozen=True)
class HourCell:
    """One hour of one week of one task name."""

    runs: int
    failures: int
    retries: int
    p95: float | None  # seconds

    @classmethod
    def unpack(cls, raw: bytes) -> HourCell:
        return cls(
            runs=int.from_bytes(raw[0:4], "big"),
            failures=int.from_bytes(raw[4:7], "big"),
            retries=int.from_bytes(raw[7:10], "big"),
            p95=bucket_seconds(int.from_bytes(raw[10:12], "big")),
        )


@dataclass(frozen=True)
class NameNormal:
    """Normal for this hour of the week: the medians of the samples of the weeks before."""

    runs_per_hour: float
    failure_rate: float | None  # failures / runs over the samples
    runtime_p95: float | None  # seconds
    samples: int

    @classmethod
    def of(cls, cells: Sequence[HourCell]) -> NameNormal | None:
        """From the cells of this hour (and its neighbours) in past weeks; None: no history."""
        active = [c for c in cells if c.runs or c.p95 is not None]
        if not active:
            return None
        runs = sum(c.runs for c in active)
        p95s = sorted(c.p95 for c in active if c.p95 is not None)
        return cls(
            runs_per_hour=_median([float(c.runs) for c in active]),
            failure_rate=min(1.0, sum(c.failures for c in active) / runs) if runs else None,
            runtime_p95=_median(p95s) if p95s else None,
            samples=len(active),
        )

    def as_doc(self) -> dict[str, float | int | None]:
        return {
            "runs_per_hour": round(self.runs_per_hour, 1),
            "failure_rate": None if self.failure_rate is None else round(self.failure_rate, 4),
            "runtime_p95": None if self.runtime_p95 is None else round(self.runtime_p95, 3),
            "samples": self.samples,
        }


def _median(values: Sequence[float]) -> float:
    ordered = sorted(v for v in values if math.isfinite(v))
    return ordered[len(ordered) // 2] if ordered else 0.0


@dataclass(frozen=True)
class NameTotals:
    """A task name's runs by outcome and runtimes by bucket code, since its first run."""

    outcomes: dict[str, int]
    runtime_buckets: dict[int, int]  # bucket code (b + 1) -> runs

    @classmethod
    def of(cls, doc: Mapping[str, str]) -> NameTotals:
        outcomes, buckets = {}, {}
        for key, raw in doc.items():
            try:
                n = int(raw)
            except (TypeError, ValueError):
                continue
            if n <= 0:
                continue
            if key[:1] == "h" and key[1:].isdigit():
                buckets[int(key[1:]) + 1] = n
            else:
                outcomes[key] = n
        return cls(outcomes, buckets)

    def histogram(self, bounds: Sequence[float]) -> tuple[list[int], float]:
        """Cumulative runs at or under each bound (seconds; a bucket counts where its middle
        falls, so a bound is right to 10 %), the last for +Inf; and the runtimes' sum."""
        counts = [0] * (len(bounds) + 1)
        total = 0.0
        for code, n in self.runtime_buckets.items():
            seconds = bucket_seconds(code) or 0.0
            total += seconds * n
            for i, bound in enumerate(bounds):
                if seconds <= bound:
                    counts[i] += n
            counts[-1] += n
        return counts, total

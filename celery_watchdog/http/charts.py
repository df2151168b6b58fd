"""The page's charts, drawn on the server: geometry only, rendered as SVG by the templates.

Pure functions of their numbers (no I/O, no clock): a chart is a list of bars with their
coordinates and a label each, so the template writes ``<rect>`` attributes (no inline style,
which the Content-Security-Policy forbids) and Jinja escapes every label. A value that is
missing (no monitor pass recorded it), negative, NaN or infinite is drawn as a gap, never as
a number.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..model.humanize import duration

DAY = 86400


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # what a person hovering it (or a screen reader) is told
    known: bool  # False: no value (drawn as a thin mark, so a gap reads as a gap)
    over: bool = False  # above the reference line (e.g. the queue's threshold)


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    summary: str  # one sentence for the chart as a whole (its accessible name)
    reference_y: float | None = None  # a horizontal line (the threshold), None: none


def _value(v: float | None) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f >= 0 else None


def bar_chart(
    values: Sequence[float | None], labels: Sequence[str], *, summary: str,
    reference: float | None = None, width: int = 168, height: int = 40, gap: float = 2.0,
) -> BarChart:  # fmt: skip
    """One bar per value, scaled to the largest (or to ``reference`` when that is higher);
    ``labels[i]`` names bar ``i``."""
    known = [v for v in map(_value, values) if v is not None]
    ref = _value(reference)
    top = max([*known, ref or 0.0], default=0.0)
    n = max(1, len(values))
    slot = width / n
    bar_width = max(1.0, slot - gap)
    bars = []
    for i, raw in enumerate(values):
        v = _value(raw)
        x = round(i * slot + (slot - bar_width) / 2, 2)
        label = labels[i] if i < len(labels) else ""
        if v is None:
            bars.append(Bar(x, height - 1.0, round(bar_width, 2), 1.0, label, known=False))
            continue
        # A value above zero is at least 2 px tall: "a little" must not look like "none".
        h = 0.0 if top <= 0 else max(2.0 if v > 0 else 0.0, v / top * (height - 2))
        bars.append(Bar(x, round(height - h, 2), round(bar_width, 2), round(h, 2), label,
                        known=True, over=ref is not None and v > ref))  # fmt: skip
    ref_y = None
    if ref is not None and top > 0:
        ref_y = round(height - ref / top * (height - 2), 2)
    return BarChart(width, height, tuple(bars), summary, ref_y)


def age_chart(
    days: Sequence[float | None], now: float, name: str, threshold: float | None = None
) -> BarChart:
    """A queue's oldest waiting message per day (oldest day first, the last is today), as
    ``store.queues.oldest_by_day`` gives it; the threshold drawn as a line."""
    first_day = int(now // DAY) - len(days) + 1
    labels = []
    for i, v in enumerate(days):
        day = time.strftime("%a %d %b", time.gmtime((first_day + i) * DAY))
        age = _value(v)
        labels.append(f"{day}: " + ("no check recorded" if age is None
                                    else f"oldest waited {duration(age)}"))  # fmt: skip
    known = [v for v in map(_value, days) if v is not None]
    worst = f", at worst {duration(max(known))}" if known else ", nothing recorded yet"
    summary = f"Oldest waiting message in {name} per day, last {len(days)} days{worst}"
    return bar_chart(days, labels, summary=summary, reference=threshold)

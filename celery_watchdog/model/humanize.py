"""Text for people: relative times, durations, progress bars and aligned tables.

Pure functions of their arguments (``now`` is always passed in, never read here), so the CLI,
the HTTP page and alerts can render the same facts the same way. No dependency beyond stdlib.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from typing import Any

from . import durations

NONE = "-"

# What a terminal acts on instead of printing: C0 controls but newline and tab, DEL, C1
# (0x9b is a one-byte CSI), the bidi overrides and isolates that reorder what follows (the
# "Trojan Source" characters), and lone surrogates (no terminal or encoder takes them).
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\r": "\\r", "\x0b": "\\v", "\x0c": "\\f"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(text: object) -> str:
    """``text`` with every character a terminal would act on shown as an escape (``\\x1b``,
    ``\\u202e``); newlines and tabs stay. Safe to print whatever a task put in it."""
    line = text if isinstance(text, str) else str(text)
    return _UNSAFE.sub(_escape, line)


def duration(seconds: float | None) -> str:
    """A span of time, as short as it can be while still exact enough to act on."""
    if seconds is None:
        return NONE
    seconds = max(0.0, float(seconds))
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min" if minutes >= 10 or not rest else f"{minutes} min {rest} s"
    if seconds < 2 * 86400:
        hours, rest = divmod(round(seconds / 60), 60)
        return f"{hours} h" if not rest else f"{hours} h {rest} min"
    return f"{seconds / 86400:.0f} days"


def ago(ts: float | None, now: float) -> str:
    """``"3 min ago"`` for the past, ``"in 2 min"`` for the future (ETA, deadlines)."""
    if ts is None:
        return NONE
    delta = now - ts
    if abs(delta) < 1:
        return "just now"
    if delta > 0:
        return f"{_coarse(delta)} ago"
    return f"in {_coarse(-delta)}"


def _coarse(seconds: float) -> str:
    # Relative times do not need milliseconds: "4 s ago" reads better than "4.2 s ago".
    if seconds < 90:
        return f"{seconds:.0f} s"
    return duration(seconds)


def timestamp(ts: float | None) -> str:
    """Local wall-clock time, for the detail view next to the relative time."""
    if ts is None:
        return NONE
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def progress_bar(processed: int | None, total: int | None, width: int = 12) -> str:
    """``[#####-------] 42/100``; just the count when the total is unknown."""
    if processed is None and total is None:
        return ""
    done = processed or 0
    if not total or total <= 0:
        return f"{done} done"
    # Rounded down: a bar never shows more done than is done (full only at total).
    filled = min(width, max(0, width * done // total))
    return f"[{'#' * filled}{'-' * (width - filled)}] {done}/{total}"


def percent(rate: float | None) -> str:
    if rate is None:
        return NONE
    value = rate * 100
    if 99.5 <= value < 100:
        return ">99%"  # never round a failure away: 99.7 % is not 100 %
    return f"{value:.0f}%"


def cut(text: object, width: int) -> str:
    """One printable line, at most ``width`` characters (an ellipsis marks the cut)."""
    if text is None:
        return NONE
    line = printable(" ".join(str(text).split()))
    return line if len(line) <= width else line[: max(0, width - 1)] + "…"


_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None]) -> str:
    """A plain-text trend: one bar per value, scaled to the largest; "·" where none is known."""
    known = [v for v in values if v is not None and math.isfinite(v) and v >= 0]
    top = max(known, default=0.0)
    out = []
    for v in values:
        if v is None or not math.isfinite(v) or v < 0:
            out.append("·")
        else:
            out.append(
                _BARS[min(len(_BARS) - 1, int(v / top * (len(_BARS) - 1)))] if top else _BARS[0]
            )
    return "".join(out)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], gap: int = 2) -> str:
    """Left-aligned columns, each as wide as its widest cell; the last column is not padded."""
    cells = [
        [printable(h) for h in headers],
        *[[NONE if c is None else printable(c) for c in r] for r in rows],
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    sep = " " * gap
    lines = []
    for row in cells:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append(sep.join(padded).rstrip())
    return "\n".join(lines)


def fields(pairs: Sequence[tuple[str, object]]) -> str:
    """A key/value block (``task ID``): labels aligned, empty values left out."""
    shown = [(k, printable(v)) for k, v in pairs if v not in (None, "")]
    width = max((len(k) for k, _ in shown), default=0)
    lines = []
    for key, value in shown:
        first, *rest = value.splitlines() or [""]
        lines.append(f"{key.ljust(width)}  {first}")
        lines.extend(f"{'':{width}}  {line}" for line in rest)
    return "\n".join(lines)


MAX_DURATION = 10 * 365 * 86400.0  # ten years: anything longer is a typo, or "forever"


def parse_duration(text: str) -> float:
    """``"30m"`` -> 1800.0 (:mod:`.durations` reads it); ValueError if bad (not a duration,
    ``inf`` or ``nan``, zero or less, or more than ten years)."""
    shown = printable(repr(text))
    seconds = durations.parse_duration(text)
    if seconds is None:
        raise ValueError(f"{shown} is not a duration: expected e.g. 90s, 30m, 2h or 1d")
    if not seconds > 0:
        raise ValueError(f"{shown} is not a duration: it must be more than zero")
    if seconds > MAX_DURATION:
        raise ValueError(f"{shown} is too long: at most 10 years (3650d)")
    return seconds


def finite(doc: Any) -> Any:
    """``doc`` with every NaN or infinite float (nested too) replaced by None: what JSON can
    carry. ``json.dumps`` would write ``Infinity``/``NaN``, which other parsers reject."""
    if isinstance(doc, float):
        return doc if math.isfinite(doc) else None
    if isinstance(doc, dict):
        return {k: finite(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [finite(v) for v in doc]
    return doc

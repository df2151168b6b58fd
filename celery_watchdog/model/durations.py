"""Durations as people write them: ``"30s"``, ``"5m"``, ``"2h"``, ``"1d"``, ``"1h30m"``, ``"300"``.

One parser for settings, task options and commands (``snooze ID 2h``). Pure.
"""

from __future__ import annotations

import re

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
_UNITS = {"ms": 0.001, "s": 1.0, "m": MINUTE, "min": MINUTE, "h": HOUR, "d": DAY, "w": 7 * DAY}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?\s*(?:ms|min|s|m|h|d|w)\s*)+|\d+(?:\.\d+)?", re.I)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|min|s|m|h|d|w)", re.I)


def parse_duration(text: str) -> float | None:
    """``"30s"``, ``"5m"``, ``"2h"``, ``"1d"``, ``"1h30m"``, ``"300"`` -> seconds; else None."""
    text = text.strip()
    if len(text) > 32 or not _DURATION.fullmatch(text):
        return None
    parts = _DURATION_PART.findall(text)
    if not parts:
        return float(text)
    return sum(float(n) * _UNITS[unit.lower()] for n, unit in parts)

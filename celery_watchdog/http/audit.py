"""An audit line per change made through the server: who (which credential, from where),
what, on what, when, and how it went; logged as one JSON object per line on the logger
``celery_watchdog.http.audit`` (route it to a file or your log store). Changes that have a
store-side record keep that too: an incident's ``by``/``note``, the pause audit, a
quarantine's release, a dead-letter entry's replays."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from ..model.humanize import finite

logger = logging.getLogger("celery_watchdog.http.audit")


def record(by: str, action: str, target: str, *, ok: bool = True, **details: Any) -> None:
    """``details`` are request parameters (a note, a duration): never an argument value."""
    line = {"at": round(time.time(), 3), "by": by, "action": action, "target": target,
            "ok": ok, **details}  # fmt: skip
    # ensure_ascii: a control character or a newline in a note cannot forge a second line.
    logger.info(json.dumps(finite(line), default=str, ensure_ascii=True, allow_nan=False))

"""``celery watchdog check`` (one monitor pass) and ``monitor`` (passes in a loop)."""

from __future__ import annotations

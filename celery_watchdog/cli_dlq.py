"""``celery watchdog dlq …``: list, show, replay, purge and export dead-letter entries."""

from __future__ import annotations

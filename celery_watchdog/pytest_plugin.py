"""The pytest plugin (entry point ``pytest11``): the ``watchdog_alerts`` fixture.

Kept apart from :mod:`.testing` so that the entry point registers only this fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .testing import capture_alerts


@pytest.fixture
def watchdog_alerts() -> Iterator[Any]:
    """The alerts sent during the test (no channel is contacted): a ``CapturedAlerts``."""
    with capture_alerts() as alerts:
        yield alerts

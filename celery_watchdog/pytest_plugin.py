"""The pytest plugin (entry point ``pytest11``): the ``watchdog_alerts`` fixture.

Kept apart from :mod:`.testing` so that loading the plugin in every pytest run stays cheap:
the monitor is imported only by a test that asks for the fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def watchdog_alerts() -> Iterator[Any]:
    """The alerts sent during the test (no channel is contacted): a ``CapturedAlerts``."""
    from .testing import capture_alerts

    with capture_alerts() as alerts:
        yield alerts

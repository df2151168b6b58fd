"""``/api/task/result/<id>``'s document: Flower's shape, with the result redacted.

Flower returns the result as it is when JSON can carry it, else its ``repr``. A result is
data a task chose to return, and may hold a token or a password, so it gets the argument
rules: values under a secret-looking key are replaced, strings scrubbed of secret-looking
values, depth and size capped; a result JSON cannot carry becomes its redacted preview.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from celery import states
from celery.result import AsyncResult

from ..model.redact import REDACTED, Redactor

MAX_DEPTH = 8
MAX_ITEMS = 1000
MAX_STRING = 10_000


def result_doc(
    task_id: str, result: AsyncResult, ready: bool, redactor: Redactor
) -> dict[str, Any]:
    doc: dict[str, Any] = {"task-id": task_id, "state": result.state}
    if ready:
        doc["result"] = redacted(result.result, redactor)
        if result.state == states.FAILURE:
            doc["traceback"] = redactor.text(result.traceback) if result.traceback else None
    return doc


def redacted(value: Any, redactor: Redactor, depth: int = 0) -> Any:
    """``value`` with the same shape where JSON can carry it, secrets replaced."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return redactor.text(value, MAX_STRING)
    if (
        depth < MAX_DEPTH and isinstance(value, Mapping) and len(value) <= MAX_ITEMS
        and all(isinstance(k, str) for k in value)
    ):  # fmt: skip
        return {
            redactor.text(k, 200): REDACTED
            if redactor.is_secret(k) or redactor.is_auth_pair(k, v)
            else redacted(v, redactor, depth + 1)
            for k, v in value.items()
        }
    if depth < MAX_DEPTH and isinstance(value, (list, tuple)) and len(value) <= MAX_ITEMS:
        return [redacted(v, redactor, depth + 1) for v in value]
    return redactor.value(value)  # an exception, an object, a huge or deep value: its preview

"""A request's original message, as a replay or a dead-letter entry needs it."""

from __future__ import annotations

import base64
from typing import Any

from .. import faults


def original_message(request: Any) -> dict[str, Any] | None:
    """What a replay needs to publish the same task again: body as sent, headers, route."""
    try:
        body = request.body
        if isinstance(body, str):
            body = body.encode()
        delivery = request.delivery_info or {}
        return {
            "task": request.task_name if hasattr(request, "task_name") else request.name,
            "id": request.id,
            "body": base64.b64encode(body).decode() if isinstance(body, bytes) else None,
            "content_type": request.content_type,
            "content_encoding": request.content_encoding,
            "headers": dict(request.request_dict),
            "exchange": delivery.get("exchange"),
            "routing_key": delivery.get("routing_key"),
            "priority": delivery.get("priority"),
        }
    except Exception as exc:  # an odd message must not stop the snapshot
        faults.report("snapshot", exc, f"cannot keep the message of {request.id}: {exc}")
        return None

"""Depth and consumers of Celery queues on RabbitMQ, read-only.

A passive ``queue_declare`` answers ready messages and consumers and changes nothing; a
missing queue makes the broker close the channel (404), so every queue gets a fresh one.
The management API, when its URL is given, adds what AMQP cannot tell: unacked messages and
``head_message_timestamp`` (set only when producers fill the AMQP ``timestamp`` property,
which Celery does not). Waiting messages are never looked at: peeking over AMQP means a
``basic_get`` and a requeue, which marks them redelivered and may reorder them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

from kombu import Connection

from ..model.masking import mask_url
from ..model.redis_errors import reason  # generic: one line, URLs masked, cut short
from .model import QueueDepth, failed, unique

_NOT_FOUND = 404


def read(
    connection_url: str,
    names: Sequence[str],
    *,
    management_url: str | None = None,
    timeout: float = 3.0,
) -> dict[str, QueueDepth]:
    """Ready messages and consumers of each queue; unacked count and head age from the
    management API when ``management_url`` is given (``http://user:pass@host:15672``).

    Never raises: a missing queue gets ``error="no such queue"``, a broker that cannot be
    reached puts one line in every queue's ``error``, a management API that fails keeps the
    AMQP facts and says why in ``error``.
    """
    names = unique(names)
    conn = Connection(
        connection_url,
        connect_timeout=timeout,
        transport_options={"read_timeout": timeout, "write_timeout": timeout},
    )
    try:
        try:
            conn.ensure_connection(max_retries=0)  # one attempt: connect() retries after 2 s
        except Exception as exc:  # refused or timed out; or a reply: bad login, no vhost
            how = "refused the connection" if hasattr(exc, "reply_code") else "unreachable"
            text = f"broker {how} at {mask_url(connection_url)}: {_reason(exc)}"
            return {name: failed(name, text) for name in names}
        found = _declare_all(conn, names)
        vhost = conn.virtual_host or "/"
    finally:
        _quietly(conn.release)
    if management_url:
        found = _add_management(found, management_url, vhost, timeout)
    return found


def _declare_all(conn: Any, names: list[str]) -> dict[str, QueueDepth]:
    found: dict[str, QueueDepth] = {}
    for name in names:
        channel = None
        try:
            channel = conn.channel()
            _, messages, consumers = channel.queue_declare(queue=name, passive=True)
            found[name] = QueueDepth(name, int(messages), None, int(consumers), None, [])
        except Exception as exc:
            if getattr(exc, "reply_code", None) == _NOT_FOUND:
                found[name] = failed(name, "no such queue")
            elif conn.connected:  # another channel error (405 exclusive queue, 403 …)
                found[name] = failed(name, f"queue_declare refused: {_reason(exc)}")
            else:  # the connection itself went: the other queues cannot be read either
                text = f"broker unreachable: {_reason(exc)}"
                found.update({n: failed(n, text) for n in names if n not in found})
                return found
        finally:
            if channel is not None:
                _quietly(channel.close)
    return found


def _add_management(
    found: dict[str, QueueDepth], management_url: str, vhost: str, timeout: float
) -> dict[str, QueueDepth]:
    down: str | None = None  # after a connection failure, do not wait `timeout` per queue
    try:
        base, auth = _split_credentials(management_url)
    except ValueError as exc:
        base, auth, down = "", None, f"management API: {_reason(exc)}"
    for name, depth in found.items():
        if depth.error:
            continue
        if down is None:
            path = f"/api/queues/{_quote(vhost)}/{_quote(name)}"
            try:
                info = _get_json(base + path, auth, timeout)
            except urllib.error.HTTPError as exc:  # 401, 404 (another vhost?): this queue
                found[name] = _with_error(depth, f"management API: HTTP {exc.code} {exc.reason}")
                continue
            except ValueError:
                found[name] = _with_error(depth, "management API: the answer is not JSON")
                continue
            except Exception as exc:  # refused, timed out: the same for every queue
                down = f"management API unreachable at {mask_url(management_url)}: {_reason(exc)}"
            else:
                found[name] = _with_management(depth, info)
                continue
        found[name] = _with_error(depth, down)
    return found


def _with_management(depth: QueueDepth, info: Any) -> QueueDepth:
    if not isinstance(info, dict):
        return _with_error(depth, "management API: unexpected answer")
    unacked = info.get("messages_unacknowledged")
    stamp = info.get("head_message_timestamp")  # AMQP timestamps are whole seconds
    age = None
    if isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
        # The broker's stamp against the local clock: skew between hosts shows up here.
        age = max(0.0, time.time() - float(stamp))
    return QueueDepth(
        name=depth.name,
        messages=depth.messages,
        reserved=unacked if isinstance(unacked, int) and not isinstance(unacked, bool) else None,
        consumers=depth.consumers,
        head=None,
        oldest=[],
        oldest_age_api=age,
        error=depth.error,
    )


def _with_error(depth: QueueDepth, error: str) -> QueueDepth:
    text = f"{depth.error}; {error}" if depth.error else error
    return QueueDepth(
        depth.name, depth.messages, depth.reserved, depth.consumers, None, [], None, text
    )


def _get_json(url: str, auth: str | None, timeout: float) -> Any:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if auth:
        request.add_header("Authorization", auth)
    with urllib.request.urlopen(request, timeout=timeout) as response:  # http(s) only: checked
        return json.loads(response.read())


def _split_credentials(url: str) -> tuple[str, str | None]:
    """The URL without its user info, and that user info as a basic-auth header (urllib
    does not send credentials written in the URL)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("management_url must be http(s)://[user:password@]host[:port]")
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    base = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    if parts.username is None:
        return base, None
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return base, f"Basic {token}"


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def _reason(exc: BaseException) -> str:
    return f"{reason(exc)} ({type(exc).__name__})"


def _quietly(close: Any) -> None:
    # Closing after a channel or connection error may fail again: nothing left to do then.
    with contextlib.suppress(Exception):
        close()

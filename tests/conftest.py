"""Shared fixtures: a private Redis server and Celery workers that use it.

Tests never touch the Redis on 6379 that may run on the machine: a session-wide private
``redis-server`` on a free port is flushed before every test that asks for ``redis_url``.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import sentry_sdk
from aiosmtpd.controller import Controller
from celery import Celery

from celery_watchdog.brokers.app import _bound as bound_queues_cache
from celery_watchdog.embedded import RedisServer
from tests.alert_peers import Mailbox, Receiver
from tests.helpers import PreforkWorker, make_app, require_rabbitmq


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The private server's URL, emptied first (a test may have restarted it: start if down)."""
    redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    bound_queues_cache.clear()  # what an earlier test's broker held is gone with the flush
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the flushed private server; responses decoded to ``str``."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def watchdog_app(redis_url: str) -> Iterator[Celery]:
    """``make_app(redis_url)``: broker, backend and watchdog on the private server."""
    app = make_app(redis_url)
    yield app
    app.close()


@pytest.fixture
def start_prefork_worker(redis_url: str) -> Iterator[Callable[..., PreforkWorker]]:
    """Factory: ``start_prefork_worker(concurrency=2, conf={...})`` -> a started worker.

    Every worker started through it is stopped (and checked for leftovers) after the test.
    """
    started: list[PreforkWorker] = []

    def start(**kwargs: Any) -> PreforkWorker:
        worker = PreforkWorker(redis_url, **kwargs)
        started.append(worker)
        return worker.start()

    yield start
    for worker in reversed(started):
        worker.stop()


@pytest.fixture
def prefork_worker(start_prefork_worker: Callable[..., PreforkWorker]) -> PreforkWorker:
    """A fresh prefork worker (2 children) for tests that kill, terminate or crash things."""
    return start_prefork_worker()


@pytest.fixture(scope="module")
def shared_prefork_worker() -> Iterator[PreforkWorker]:
    """One prefork worker for a whole module, on its own Redis server.

    It gets a server of its own because ``redis_url`` FLUSHALLs the session server before each
    test, which would also wipe the broker bindings and records this long-lived worker needs.
    Use ``shared_prefork_worker.client()`` to read its Redis.
    """
    with RedisServer() as server, PreforkWorker(server.url) as worker:
        yield worker


@pytest.fixture
def rabbitmq_url() -> str:
    """The local RabbitMQ URL; the test is skipped when the broker is not reachable."""
    return require_rabbitmq()


# -- local peers of the alert channels ----------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    with socket.socket() as probe:  # aiosmtpd needs a concrete port to check it started
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(box, hostname="127.0.0.1", port=port, server_hostname="localhost")
    controller.start()
    yield box, controller.port
    controller.stop()


@pytest.fixture
def sentry(receiver: Receiver) -> Iterator[Receiver]:
    """sentry-sdk with its real HTTP transport, pointed at the receiver; reset afterwards."""
    dsn = f"http://public@127.0.0.1:{receiver.server_address[1]}/1"
    sentry_sdk.init(dsn=dsn, default_integrations=False, auto_enabling_integrations=False)
    yield receiver
    sentry_sdk.get_client().close(timeout=2)
    sentry_sdk.get_global_scope().set_client(None)


# -- which tests run on every Python we claim ------------------------------------------------

# A module that starts worker, beat or CLI subprocesses (or the demo) is marked ``subprocess``:
# the whole suite runs on 3.11; the other claimed Pythons run the rest, the pure and in-process
# tests (``.ci/pythons.py``: ``pytest -m "not subprocess"``).
_STARTS_PROCESSES = ("PreforkWorker", "subprocess", "celery")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and any(n in vars(module) for n in _STARTS_PROCESSES):
            item.add_marker(pytest.mark.subprocess)

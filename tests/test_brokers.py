"""Queue facts read from real brokers: a private Redis with messages a real Celery app
published (no worker runs, so they wait), and the local RabbitMQ when it is reachable."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
import redis
from celery import Celery
from kombu import Connection, Exchange, Producer, Queue
from redis.backoff import NoBackoff
from redis.retry import Retry

from celery_watchdog.brokers import (
    HEADER,
    amqp_queues,
    bound_queues,
    queue_names,
    redis_queues,
)
from tests.helpers import wait_for

T0 = 1_700_000_000.125  # a publish stamp that survives JSON exactly


@pytest.fixture(autouse=True)
def producer_without_the_watchdog() -> Iterator[None]:
    """These tests stamp (or do not stamp) each message themselves: while they publish, the
    watchdog's own stamping receiver (connected by any earlier test's install) is off."""
    from celery import signals

    from celery_watchdog.recording import publishing as ours

    uid = "celery_watchdog.on_before_publish"
    was = signals.before_task_publish.disconnect(dispatch_uid=uid)
    try:
        yield
    finally:
        if was:
            signals.before_task_publish.connect(ours.on_before_publish, weak=False,
                                                dispatch_uid=uid)  # fmt: skip


def publishing_app(redis_url: str, **options: Any) -> Celery:
    app = Celery(f"brokers-{uuid.uuid4().hex[:6]}", set_as_current=False)
    app.conf.update(broker_url=redis_url, broker_transport_options=options)
    return app


def send(app: Celery, queue: str | None, priority: int, stamp: float | None, **kw: Any) -> str:
    headers = {} if stamp is None else {HEADER: stamp}
    result = app.send_task("jobs.work", queue=queue, priority=priority, headers=headers, **kw)
    return str(result.id)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def raw_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


# -- Redis ---------------------------------------------------------------------------------


def test_depth_sums_every_priority_list_and_the_head_is_the_oldest_stamp(
    redis_url: str, raw_client: redis.Redis
) -> None:
    options = {"priority_steps": list(range(10)), "sep": ":", "queue_order_strategy": "priority"}
    app = publishing_app(redis_url, **options)
    # Published oldest first, spread over the lists: the oldest waits in a list kombu serves
    # third, so neither the first-served nor the last-served list's head is the answer.
    stamped = [(5, T0), (9, T0 + 10), (0, T0 + 20), (3, T0 + 30), (5, T0 + 40), (1, T0 + 50)]
    ids = {send(app, "work", pri, stamp): stamp for pri, stamp in stamped}
    unstamped = send(app, "work", 0, None)

    # The layout read() assumes is the one kombu wrote.
    assert sorted(k.decode() for k in raw_client.keys("work*")) == [
        "work", "work:1", "work:3", "work:5", "work:9"
    ]  # fmt: skip
    depth = redis_queues.read(raw_client, ["work"], options)["work"]

    assert depth.messages == 7
    assert depth.error is None and depth.consumers is None and depth.reserved == 0
    assert depth.head is not None
    assert depth.head.published_at == T0
    assert ids[str(depth.head.task_id)] == T0
    assert depth.head.priority_list == "work:5"
    assert depth.head.task_name == "jobs.work"
    assert [m.published_at for m in depth.oldest] == [*sorted(ids.values()), None]
    assert [m.task_id for m in depth.oldest][-1] == unstamped


def test_global_keyprefix_default_steps_and_garbage_are_read_as_kombu_writes_them(
    redis_url: str,
) -> None:
    options = {"global_keyprefix": "tenant1:"}
    app = publishing_app(redis_url, **options)
    first = send(app, "mail", 7, T0)  # priority 7 -> step 6 -> "mail\x06\x166"
    send(app, "mail", 0, T0 + 1)
    send(app, "mail", 9, None)
    client = redis.Redis.from_url(redis_url, decode_responses=True)  # decoding, on purpose
    assert client.llen("tenant1:mail\x06\x166") == 1 and client.llen("tenant1:mail") == 1
    # Garbage at the consuming end of the lists, where the head is read: counted, skipped.
    client.rpush("tenant1:mail\x06\x166", "not json")
    client.rpush("tenant1:mail", json.dumps({"no": "properties"}))
    redis.Redis.from_url(redis_url).rpush("tenant1:mail\x06\x169", b"\xff\xfe binary")

    depth = redis_queues.read(client, ["mail", "empty"], options)

    assert depth["mail"].messages == 6
    assert depth["mail"].error is None
    head = depth["mail"].head
    assert head is not None and head.task_id == first and head.published_at == T0
    assert head.priority_list == "tenant1:mail\x06\x166"
    assert [m.published_at for m in depth["mail"].oldest] == [T0, T0 + 1, None]
    assert depth["empty"].messages == 0 and depth["empty"].head is None
    assert depth["empty"].oldest == [] and depth["empty"].error is None
    client.close()


def test_without_stamps_the_head_is_in_the_list_kombu_serves_last(
    redis_url: str, raw_client: redis.Redis
) -> None:
    app = publishing_app(redis_url)
    send(app, "plain", 0, None)
    starved = send(app, "plain", 9, None)
    send(app, "plain", 9, None)

    depth = redis_queues.read(raw_client, ["plain"], {})["plain"]

    assert depth.head is not None and depth.head.task_id == starved
    assert depth.head.published_at is None and depth.head.priority_list == "plain\x06\x169"
    assert [m.priority_list for m in depth.oldest][-1] == "plain"


def test_oldest_lists_at_most_sample_messages_oldest_first(
    redis_url: str, raw_client: redis.Redis
) -> None:
    app = publishing_app(redis_url)
    ids = [send(app, "bulk", 0, T0 + i) for i in range(8)]

    depth = redis_queues.read(raw_client, ["bulk"], {}, sample=3)["bulk"]

    assert depth.messages == 8
    assert [m.task_id for m in depth.oldest] == ids[:3]
    assert depth.head is not None and depth.head.task_id == ids[0]


def test_unacked_messages_count_as_reserved_for_the_queue_they_came_from(
    redis_url: str, raw_client: redis.Redis
) -> None:
    direct = Queue("reports", Exchange("reporting", type="direct"), routing_key="report.daily")
    topic = Queue("events", Exchange("bus", type="topic"), routing_key="event.#")
    app = publishing_app(redis_url)
    app.conf.task_queues = [direct, topic]
    with app.producer_or_acquire() as producer:  # Celery itself sends direct queues through
        producer.publish(  # the default exchange: go through the binding table with kombu
            {"n": 1}, exchange=direct.exchange, routing_key="report.daily", declare=[direct]
        )
    for _ in range(3):
        send(app, "plain", 0, T0)
    send(app, "reports", 0, T0)
    send(app, "events", 0, T0, routing_key="event.user.created")
    send(app, "events", 0, T0, routing_key="event.user.deleted")

    with app.connection_for_read() as conn:  # reserve without acking, as a prefetch does
        channel = conn.default_channel
        taken = [channel.basic_get(q, no_ack=False) for q in ("plain", "reports", "events")]
        assert all(message is not None for message in taken)
        assert raw_client.hlen("unacked") == 3
        routes = [json.loads(v)[1:] for v in raw_client.hvals("unacked")]
        assert ["reporting", "report.daily"] in routes and ["bus", "event.user.created"] in routes

        depths = redis_queues.read(raw_client, ["plain", "reports", "events", "idle"], {})

    assert {n: (d.messages, d.reserved) for n, d in depths.items()} == {
        "plain": (2, 1),
        "reports": (1, 1),
        "events": (1, 1),
        "idle": (0, 0),
    }


def test_a_key_of_another_type_is_reported_and_the_other_queues_still_read(
    redis_url: str, raw_client: redis.Redis
) -> None:
    app = publishing_app(redis_url)
    send(app, "fine", 0, T0)
    raw_client.set("broken", "a string, not a list")

    depths = redis_queues.read(raw_client, ["broken", "fine"], {})

    assert depths["broken"].error is not None and "WRONGTYPE" in depths["broken"].error
    assert depths["fine"].messages == 1 and depths["fine"].error is None


def test_a_redis_broker_that_is_down_gives_every_queue_one_line_unreachable() -> None:
    client = redis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0))  # fail fast

    depths = redis_queues.read(client, ["a", "b"], {})

    for depth in depths.values():
        assert depth.error is not None and "unreachable" in depth.error
        assert "\n" not in depth.error and depth.messages == 0 and depth.head is None


def test_unusable_transport_options_are_an_error_not_an_exception(
    raw_client: redis.Redis,
) -> None:
    depths = redis_queues.read(raw_client, ["a"], {"priority_steps": ["high"]})

    assert depths["a"].error is not None and "broker_transport_options" in depths["a"].error


# -- RabbitMQ ------------------------------------------------------------------------------


@pytest.fixture
def amqp_queue(rabbitmq_url: str) -> Iterator[str]:
    """A fresh queue holding 3 messages (publisher confirms: they are in when this returns)."""
    name = f"wd-brokers-{uuid.uuid4().hex[:8]}"
    with Connection(rabbitmq_url, transport_options={"confirm_publish": True}) as conn:
        queue = Queue(name, channel=conn.default_channel, auto_delete=False)
        queue.declare()
        producer = Producer(conn.default_channel)
        for i in range(3):
            producer.publish({"n": i}, routing_key=name, headers={HEADER: T0 + i})
        yield name
        queue.delete()


@pytest.mark.rabbitmq
def test_rabbitmq_reports_ready_messages_and_consumers_and_a_missing_queue(
    rabbitmq_url: str, amqp_queue: str
) -> None:
    missing = f"wd-missing-{uuid.uuid4().hex[:8]}"

    depths = amqp_queues.read(rabbitmq_url, [missing, amqp_queue])

    assert depths[missing].error == "no such queue"
    depth = depths[amqp_queue]
    assert (depth.messages, depth.consumers, depth.error) == (3, 0, None)
    assert depth.reserved is None and depth.head is None and depth.oldest_age_api is None


@pytest.mark.rabbitmq
def test_a_management_api_that_is_down_is_an_error_beside_the_amqp_facts(
    rabbitmq_url: str, amqp_queue: str
) -> None:
    url = f"http://guest:secret@127.0.0.1:{free_port()}"

    depth = amqp_queues.read(rabbitmq_url, [amqp_queue], management_url=url, timeout=1)[amqp_queue]

    assert depth.messages == 3
    assert depth.error is not None and "management API unreachable" in depth.error
    assert "secret" not in depth.error


class _Management(BaseHTTPRequestHandler):
    """Answers like RabbitMQ's GET /api/queues/{vhost}/{name} (documented field names)."""

    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        body = json.dumps(
            {"messages_unacknowledged": 2, "head_message_timestamp": int(time.time()) - 30}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.rabbitmq
def test_the_management_api_adds_unacked_and_the_head_age(
    rabbitmq_url: str, amqp_queue: str
) -> None:
    _Management.seen = []
    server = HTTPServer(("127.0.0.1", 0), _Management)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        url = f"http://guest:guest@127.0.0.1:{server.server_address[1]}/"
        depth = amqp_queues.read(rabbitmq_url, [amqp_queue], management_url=url)[amqp_queue]
    finally:
        server.shutdown()
        server.server_close()

    assert (depth.messages, depth.reserved, depth.error) == (3, 2, None)
    assert depth.oldest_age_api is not None and 29 <= depth.oldest_age_api <= 35
    token = base64.b64encode(b"guest:guest").decode()
    assert _Management.seen == [(f"/api/queues/%2F/{amqp_queue}", f"Basic {token}")]


def test_an_amqp_broker_that_is_down_gives_every_queue_unreachable() -> None:
    url = f"amqp://guest:hunter2@127.0.0.1:{free_port()}//"

    depths = amqp_queues.read(url, ["a", "b"], timeout=1)

    for depth in depths.values():
        assert depth.error is not None and "unreachable" in depth.error
        assert "hunter2" not in depth.error and "\n" not in depth.error


# -- queue names ---------------------------------------------------------------------------


def test_queue_names_come_from_queues_routes_and_the_default_queue() -> None:
    app = Celery("names", set_as_current=False)
    app.conf.update(
        task_default_queue="fallback",
        task_queues=[Queue("alpha"), "beta", Queue("alpha")],
        task_routes=[
            {
                "jobs.report": {"queue": "reports"},
                "jobs.mail.*": "mail",
                "jobs.x": {"exchange": "e"},
            },
            [("jobs.big", {"queue": Queue("bulk")})],
            lambda name, args, kwargs, options, task=None, **kw: {"queue": "dynamic"},
            "myproject.routers.Router",
        ],
    )

    assert queue_names(app) == ["alpha", "beta", "bulk", "fallback", "mail", "reports"]


def test_queue_names_of_a_bare_app_is_the_default_queue() -> None:
    assert queue_names(Celery("bare", set_as_current=False)) == ["celery"]


def test_bound_queues_are_work_queues_not_celerys_remote_control_or_events(
    redis_url: str,
) -> None:
    client = redis.Redis.from_url(redis_url)
    sep = "\x06\x16"
    # As kombu binds them: a queue made by publishing to it, a worker's remote-control
    # queue (celery.pidbox exchange) and an event receiver's queue (celeryev exchange).
    client.sadd("_kombu.binding.reports", f"reports{sep}{sep}reports")
    client.sadd("_kombu.binding.celery.pidbox", f"{sep}{sep}celery@pod-7f9c.celery.pidbox")
    client.sadd("_kombu.binding.celeryev", f"#{sep}{sep}celeryev.1d2b6c.worker")
    app = Celery("bound", set_as_current=False, broker=redis_url)

    assert bound_queues(app) == ["reports"]


MANAGEMENT_URL = "http://guest:guest@127.0.0.1:15672"


@pytest.fixture
def management(rabbitmq_url: str) -> str:
    try:
        with urllib.request.urlopen(
            urllib.request.Request(
                MANAGEMENT_URL.replace("guest:guest@", "") + "/api/overview",
                headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()},
            ),
            timeout=2,
        ):
            return MANAGEMENT_URL
    except OSError as exc:
        pytest.skip(f"RabbitMQ's management API is not reachable at 127.0.0.1:15672 ({exc}); "
                    "enable it with: rabbitmq-plugins enable rabbitmq_management")  # fmt: skip


@pytest.mark.rabbitmq
def test_the_real_management_api_gives_the_head_age_of_timestamped_messages(
    rabbitmq_url: str, management: str
) -> None:
    name = f"wd-mgmt-{uuid.uuid4().hex[:8]}"
    with Connection(rabbitmq_url, transport_options={"confirm_publish": True}) as conn:
        queue = Queue(name, channel=conn.default_channel, auto_delete=False)
        queue.declare()
        try:
            producer = Producer(conn.default_channel)
            # A producer without the watchdog that fills the AMQP timestamp property.
            first = int(time.time()) - 30
            for i in range(3):
                producer.publish({"n": i}, routing_key=name, timestamp=first + i)
            # The management API refreshes its queue statistics every few seconds.
            depth = wait_for(
                lambda: (d := amqp_queues.read(rabbitmq_url, [name], management_url=management)[
                    name]) and d.oldest_age_api is not None and d,
                timeout=20, what="the head's age from the management API",
            )  # fmt: skip
            assert depth.error is None and depth.messages == 3 and depth.reserved == 0
            # The head's stamp against the clock now (the API refreshes its figures every few
            # seconds, while the age goes on growing).
            assert abs(depth.oldest_age_api - (time.time() - first)) <= 2
        finally:
            queue.delete()

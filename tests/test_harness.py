"""The test harness itself: private Redis, prefork workers, clean shutdown."""

from __future__ import annotations

import psutil  # type: ignore[import-untyped]  # no types-psutil in the dev extras
import pytest
import redis

from celery_watchdog.embedded import RedisServer, find_redis_server
from tests.helpers import PreforkWorker, group_members, make_app, run_worker, wait_for


def test_a_redis_server_binary_is_found() -> None:
    assert find_redis_server().endswith("redis-server")


@pytest.mark.timeout(30)
def test_private_redis_server_avoids_6379_and_restarts_on_the_same_port() -> None:
    with RedisServer() as server:
        assert server.port != 6379
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        first_pid = server.pid

        server.restart()

        assert server.port != 6379 and server.pid != first_pid
        assert client.ping()
        assert client.get("k") is None, "nothing is persisted across a restart"
        client.close()
    assert not server.running
    assert first_pid is not None and not psutil.pid_exists(first_pid)


def test_stopping_a_private_redis_server_twice_is_harmless() -> None:
    server = RedisServer().start()
    server.stop()
    server.stop()
    server.close()
    assert not server.running


def test_redis_url_fixture_gives_an_empty_private_database(
    redis_url: str, redis_client: redis.Redis
) -> None:
    assert not redis_url.endswith(":6379/0")
    assert redis_client.dbsize() == 0


def test_each_app_gets_its_own_watchdog_key_prefix(redis_url: str) -> None:
    first, second = make_app(redis_url), make_app(redis_url, task_default_queue="other")
    assert first.conf.watchdog_key_prefix != second.conf.watchdog_key_prefix
    assert second.conf.task_default_queue == "other"
    assert first.conf.watchdog_redis_url == redis_url


@pytest.mark.timeout(30)
def test_in_process_worker_runs_a_task(redis_url: str) -> None:
    app = make_app(redis_url)

    @app.task(name="harness.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    with run_worker(app, pool="threads", concurrency=2):
        assert mul.delay(6, 7).get(timeout=10) == 42


@pytest.mark.timeout(60)
def test_prefork_worker_runs_a_task_and_stops_without_leaving_processes(
    redis_url: str,
) -> None:
    worker = PreforkWorker(redis_url).start()
    try:
        children = worker.pids()
        assert len(children) == 2
        assert worker.task("add").delay(2, 3).get(timeout=10) == 5
    finally:
        main = worker.main_pid
        worker.stop()
    assert not group_members(main)
    assert not any(psutil.pid_exists(pid) for pid in [main, *children])


@pytest.mark.timeout(60)
def test_shared_prefork_worker_answers_on_its_own_redis(
    shared_prefork_worker: PreforkWorker, redis_url: str
) -> None:
    assert shared_prefork_worker.redis_url != redis_url
    assert shared_prefork_worker.task("add").delay(1, 1).get(timeout=10) == 2


@pytest.mark.timeout(60)
def test_shared_prefork_worker_survives_the_flush_of_the_session_server(
    shared_prefork_worker: PreforkWorker, redis_url: str
) -> None:
    assert shared_prefork_worker.task("noop").delay().get(timeout=10) is None


@pytest.mark.timeout(30)
def test_rabbitmq_helper_skips_with_a_reason_when_the_broker_is_unreachable() -> None:
    from tests.helpers import require_rabbitmq

    with pytest.raises(pytest.skip.Exception, match="not reachable"):
        require_rabbitmq("amqp://guest:guest@127.0.0.1:1//", timeout=1)


@pytest.mark.rabbitmq
@pytest.mark.timeout(30)
def test_rabbitmq_fixture_gives_a_reachable_broker_url(rabbitmq_url: str) -> None:
    assert rabbitmq_url.startswith("amqp://")


@pytest.mark.timeout(60)
def test_prefork_worker_writes_watchdog_records_under_its_own_prefix(
    shared_prefork_worker: PreforkWorker,
) -> None:
    assert shared_prefork_worker.task("add").delay(3, 4).get(timeout=10) == 7
    client = shared_prefork_worker.client()
    wait_for(
        lambda: client.keys(f"{shared_prefork_worker.prefix}:*"),
        timeout=10,
        what="watchdog keys under the worker's prefix (settings reach the worker via env)",
    )
    client.close()

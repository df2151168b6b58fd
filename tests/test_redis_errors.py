"""Redis errors told apart, on exceptions a real redis-server produced.

The servers here are this module's own (not the session server of ``redis_url``): the tests
set a password, fill memory and make a replica, and a failing test must not leave the
server every other test uses in that state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from celery_watchdog.embedded import RedisServer
from celery_watchdog.model.redis_errors import KINDS, classify, describe


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


@pytest.fixture
def admin(server: RedisServer) -> Iterator[redis.Redis]:
    """An authenticated-from-the-start client; whatever a test changed is undone after it."""
    client = redis.Redis.from_url(server.url, decode_responses=True)
    client.flushall()
    yield client
    client.config_set("maxmemory", "0")
    client.config_set("requirepass", "")
    client.execute_command("REPLICAOF", "NO", "ONE")
    client.flushall()
    client.close()


def url_with(server: RedisServer, userinfo: str) -> str:
    return server.url.replace("redis://", f"redis://{userinfo}@")


def raised(action: Callable[[], Any]) -> BaseException:
    with pytest.raises(redis.RedisError) as err:
        action()
    return err.value


def piped_commands(client: redis.Redis, *commands: tuple[str, ...]) -> list[Any]:
    pipe = client.pipeline()
    for command in commands:
        pipe.execute_command(*command)
    return pipe.execute()


def ping(url: str, **options: Any) -> Any:
    client = redis.Redis.from_url(url, **options)
    try:
        return client.ping()
    finally:
        client.close()


def test_a_wrong_password_is_auth_and_says_the_password_was_refused(
    server: RedisServer, admin: redis.Redis
) -> None:
    admin.config_set("requirepass", "s3cret")
    url = url_with(server, ":wrong-pw")
    exc = raised(lambda: ping(url))
    assert classify(exc) == "auth"
    assert describe(exc, url) == (
        f"Redis at redis://:***@127.0.0.1:{server.port}/0 refused the password "
        "(AuthenticationError): check watchdog_redis_url"
    )


def test_a_missing_password_is_auth_and_says_one_is_required(
    server: RedisServer, admin: redis.Redis
) -> None:
    admin.config_set("requirepass", "s3cret")
    exc = raised(lambda: ping(server.url))
    assert classify(exc) == "auth"
    assert describe(exc, server.url) == (
        f"Redis at {server.url} requires a password (AuthenticationError): "
        "add it to watchdog_redis_url"
    )


def test_a_user_without_a_needed_command_is_auth_and_points_at_the_acl(
    server: RedisServer, admin: redis.Redis
) -> None:
    admin.execute_command("ACL", "SETUSER", "reader", "on", ">readerpw", "~*", "+@read", "+ping")
    try:
        client = redis.Redis.from_url(url_with(server, "reader:readerpw"))
        exc = raised(lambda: client.set("k", "v"))
        client.close()
    finally:
        admin.execute_command("ACL", "DELUSER", "reader")
    assert classify(exc) == "auth"
    text = describe(exc, url_with(server, "reader:readerpw"))
    assert text.startswith(f"Redis at redis://reader:***@127.0.0.1:{server.port}/0 does not let")
    assert "allow it in the user's ACL" in text and "readerpw" not in text


def full(admin: redis.Redis) -> None:
    """Over maxmemory with nothing to evict: every write is refused with OOM."""
    admin.set("ballast", "x" * 3_000_000)
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", "1mb")


def test_a_full_redis_is_out_of_memory_for_a_command_a_script_and_a_pipeline(
    server: RedisServer, admin: redis.Redis
) -> None:
    full(admin)
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        plain = raised(lambda: client.set("k", "v"))
        # A script's refusal arrives as a plain ResponseError: it must not read as unreachable.
        script = raised(lambda: client.eval("return redis.call('SET', KEYS[1], 'v')", 1, "k"))
        piped = raised(lambda: piped_commands(client, ("SET", "k", "v"), ("INCR", "n")))
    finally:
        client.close()
    assert type(script) is redis.ResponseError
    assert [classify(e) for e in (plain, script, piped)] == ["out_of_memory"] * 3
    assert describe(script, server.url) == (
        f"Redis at {server.url} is out of memory (maxmemory reached): the watchdog cannot "
        "write; free memory or raise maxmemory"
    )


def test_a_read_only_replica_is_told_apart_for_a_command_and_a_script(
    server: RedisServer, admin: redis.Redis
) -> None:
    with RedisServer() as primary:
        admin.execute_command("REPLICAOF", "127.0.0.1", str(primary.port))
        deadline = time.monotonic() + 10
        while admin.info("replication")["master_link_status"] != "up":
            assert time.monotonic() < deadline, "the replica never linked to its primary"
            time.sleep(0.05)
        plain = raised(lambda: admin.set("k", "v"))
        script = raised(lambda: admin.eval("return redis.call('SET', KEYS[1], 'v')", 1, "k"))
        admin.execute_command("REPLICAOF", "NO", "ONE")
    assert [classify(e) for e in (plain, script)] == ["read_only", "read_only"]
    assert describe(plain, server.url) == (
        f"Redis at {server.url} is a read-only replica (READONLY): the watchdog cannot write "
        "there; point watchdog_redis_url at the primary"
    )


def test_a_stopped_redis_is_unreachable_and_its_password_is_not_shown() -> None:
    srv = RedisServer()
    url = url_with(srv, ":s3cret")  # never started: nothing listens on its port
    exc = raised(lambda: ping(url, socket_connect_timeout=2))
    srv.close()
    assert classify(exc) == "unreachable"
    text = describe(exc, url)
    assert text.startswith(f"cannot reach Redis at redis://:***@127.0.0.1:{srv.port}/0: Error ")
    assert "Connection refused" in text and "s3cret" not in text
    assert text.endswith("check that Redis runs there and that watchdog_redis_url points to it")


def test_a_redis_that_does_not_answer_in_time_is_a_timeout(server: RedisServer) -> None:
    client = redis.Redis.from_url(server.url, socket_timeout=0.2)
    try:
        exc = raised(lambda: client.blpop(["nothing-ever-comes"], timeout=5))
    finally:
        client.close()
    assert classify(exc) == "timeout"
    assert describe(exc, server.url).startswith(f"Redis at {server.url} did not answer in time")


def test_any_other_error_keeps_the_servers_words_but_not_a_pipelines_arguments(
    server: RedisServer, admin: redis.Redis
) -> None:
    admin.set("k", "v")
    plain = raised(lambda: admin.lpush("k", "x"))
    assert classify(plain) == "error"
    assert describe(plain, server.url) == (
        f"Redis at {server.url} answered with an error (ResponseError): WRONGTYPE Operation "
        "against a key holding the wrong kind of value"
    )
    piped = raised(lambda: piped_commands(admin, ("GET", "k"), ("LPUSH", "k", "card-4242")))
    assert "card-4242" in str(piped)  # redis-py names the failed command with its arguments
    assert classify(piped) == "error" and "card-4242" not in describe(piped, server.url)


def test_an_error_raised_from_a_redis_error_is_classified_as_that_error(
    server: RedisServer, admin: redis.Redis
) -> None:
    full(admin)
    try:
        try:
            admin.set("k", "v")
        except redis.RedisError as exc:
            raise RuntimeError("flush failed") from exc
    except RuntimeError as wrapped:
        assert classify(wrapped) == "out_of_memory"


def test_socket_level_errors_are_unreachable_or_timeout_and_the_rest_error() -> None:
    assert classify(ConnectionRefusedError(111, "Connection refused")) == "unreachable"
    assert classify(TimeoutError("timed out")) == "timeout"
    assert classify(ValueError("not redis")) == "error"
    assert set(KINDS) == {"unreachable", "timeout", "auth", "out_of_memory", "read_only", "error"}


def test_without_a_url_the_setting_is_named_instead() -> None:
    assert describe(TimeoutError("timed out")).startswith(
        "Redis (watchdog_redis_url) did not answer in time"
    )

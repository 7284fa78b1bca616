"""The Redis pool's rules for a frozen Redis: wait once, then fail fast until it answers.

test_outage.py shows them on a real, stopped redis-server; these tests show
each rule on its own.
"""

import pytest
import redis

from acme_jobs.kit.backends.redis_pool import Breaker, GuardedRetry, RedisDown
from acme_jobs.kit.state import kit_state


class Calls:
    """A Redis call that fails with ``error`` (or answers), counting its attempts."""

    def __init__(self, error: Exception | None = None):
        self.error = error
        self.count = 0

    def __call__(self) -> str:
        self.count += 1
        if self.error is not None:
            raise self.error
        return "PONG"


def ignore(*args) -> None:
    """redis-py's failure callback (it closes the connection): nothing to do here."""


def test_a_timeout_is_not_retried():
    call = Calls(redis.TimeoutError("Timeout reading from socket"))

    with pytest.raises(redis.TimeoutError):
        GuardedRetry(Breaker()).call_with_retry(call, ignore)

    assert call.count == 1


def test_a_dropped_connection_is_retried_once():
    call = Calls(redis.ConnectionError("Connection closed by server."))

    with pytest.raises(redis.ConnectionError):
        GuardedRetry(Breaker()).call_with_retry(call, ignore)

    assert call.count == 2


def test_after_a_timeout_calls_fail_at_once_without_reaching_redis():
    breaker = Breaker(interval=3600)
    with pytest.raises(redis.TimeoutError):
        breaker.call(Calls(redis.TimeoutError("Timeout reading from socket")))
    call = Calls()

    with pytest.raises(RedisDown, match="Timeout reading from socket"):
        breaker.call(call)

    assert call.count == 0


def test_once_the_interval_is_over_a_call_probes_and_an_answer_reopens_the_way():
    breaker = Breaker(interval=0)
    with pytest.raises(redis.TimeoutError):
        breaker.call(Calls(redis.TimeoutError()))

    assert breaker.call(Calls()) == "PONG"
    breaker.interval = 3600  # a new timeout would now hold for an hour
    assert breaker.call(Calls()) == "PONG"


def test_a_connect_made_inside_a_probe_is_part_of_it():
    breaker = Breaker(interval=0)
    with pytest.raises(redis.TimeoutError):
        breaker.call(Calls(redis.TimeoutError()))
    breaker.interval = 3600  # the probe's own connect must not be refused

    assert breaker.call(lambda: breaker.call(Calls())) == "PONG"


def test_the_refusal_is_a_redis_error_that_redis_py_does_not_retry():
    assert issubclass(RedisDown, redis.RedisError)
    assert not issubclass(RedisDown, redis.ConnectionError | redis.TimeoutError)


def test_every_connection_of_a_pool_shares_one_breaker(redis_app):
    pool = kit_state(redis_app).huey.storage.conn.connection_pool
    first, second = pool.make_connection(), pool.make_connection()

    assert first.retry is not second.retry
    assert first.retry.breaker is second.retry.breaker


def test_a_web_process_waits_one_second_for_redis(redis_app):
    pool = kit_state(redis_app).huey.storage.conn.connection_pool

    assert pool.connection_kwargs["socket_timeout"] == 1.0


def test_a_process_that_starts_a_consumer_waits_the_workers_socket_timeout(redis_app):
    huey = kit_state(redis_app).huey
    huey.storage.conn.ping()  # a connection made with the web's timeout

    huey.create_consumer(workers=1, worker_type="thread")

    pool = huey.storage.conn.connection_pool
    assert pool.connection_kwargs["socket_timeout"] == 5.0
    connection = pool.get_connection()
    try:
        assert connection.socket_timeout == 5.0
    finally:
        pool.release(connection)


def test_a_take_from_an_empty_queue_ends_before_the_web_socket_timeout(redis_app, caplog):
    # No consumer started: the pool keeps the web's 1 s timeout, and the
    # blocking take (1 s in a worker) must wait less than that.
    huey = kit_state(redis_app).huey

    assert huey.dequeue() is None

    assert "unreachable" not in caplog.text

"""The Redis connection pool: how long a call may wait, and when not to call.

A Redis that is down refuses connections, and a call fails at once. A frozen
one (a hung host, a paused VM, a stopped process) is worse: the kernel still
accepts connections but nothing answers, so every call waits out its socket
timeout, and every retry and every further call of the same request waits
again. Three rules keep a web request within about one socket timeout:

* web processes wait ``REDIS_SOCKET_TIMEOUT`` (1 s) for a reply;
* a timeout is never retried. Only a dropped connection is, once and at once:
  that is a pooled connection the server or a proxy closed while it was idle;
* after a timeout, Redis counts as down for :data:`PROBE_INTERVAL`: calls
  fail at once with :class:`RedisDown`, without touching the network. Then
  one call goes through as a probe; when it is answered, calls flow again.
  So one request (or one background thread) pays for the timeout, the others
  fail fast, and recovery is noticed within about a second.

Workers wait longer (``REDIS_WORKER_SOCKET_TIMEOUT``, 5 s): a slow reply
costs them only time, and their blocking takes (``BLMOVE``, ``BRPOP``) wait
up to Huey's ``read_timeout`` (1 s) for a job, which the socket must outlast.
A process that starts a consumer switches to it (:func:`use_socket_timeout`);
the lease store's take also waits at most half the socket timeout, for a
process that takes jobs without a consumer (tests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

T = TypeVar("T")

# Seconds Redis counts as down after a call timed out, before one call probes it.
PROBE_INTERVAL = 1.0

# A reply or a connection that did not come in time: redis-py raises its own
# TimeoutError for most, the socket's (the builtin one) for a few.
TIMEOUTS = (redis.TimeoutError, TimeoutError)


class RedisDown(redis.RedisError):
    """Redis timed out a moment ago: this call was not sent.

    Not a ``ConnectionError``, so that redis-py does not retry it (and close
    a healthy connection on the way); it is a ``RedisError`` like the rest,
    which the kit reports as "unavailable".
    """


class Breaker:
    """Whether Redis timed out a moment ago, shared by the pool's connections.

    No lock: two threads may now and then both probe, which costs nothing,
    and a lock held by another thread when a worker process forks would
    stay locked in that process forever.
    """

    def __init__(self, interval: float = PROBE_INTERVAL):
        self.interval = interval
        self._retry_at = 0.0  # monotonic time of the next probe; 0: Redis answers
        self._reason = ""  # what timed out, for the message
        # The connect (and the health check) that redis-py makes inside a
        # command is part of that command, not a call of its own.
        self._inside = threading.local()

    def __deepcopy__(self, memo: dict) -> Breaker:
        # redis-py deep-copies the Retry for each connection it makes; the
        # breaker must stay one per pool.
        return self

    def call(self, do: Callable[[], T]) -> T:
        """Run one attempt of a Redis call, unless Redis is down."""
        if getattr(self._inside, "active", False):
            return do()
        self._before()
        self._inside.active = True
        try:
            result = do()
        except TIMEOUTS as exc:
            self._reason = str(exc) or type(exc).__name__
            self._retry_at = time.monotonic() + self.interval
            raise
        except BaseException:
            # Answered with an error, refused, or interrupted: not frozen.
            self._retry_at = 0.0
            raise
        finally:
            self._inside.active = False
        self._retry_at = 0.0
        return result

    def _before(self) -> None:
        retry_at = self._retry_at
        if not retry_at:  # the usual case
            return
        now = time.monotonic()
        if now < retry_at:
            raise RedisDown(
                f"Redis timed out a moment ago ({self._reason}); "
                f"not asked again for {retry_at - now:.1f} s"
            )
        # This call probes; the others still fail fast until it is over
        # (or for one more interval, should it take longer).
        self._retry_at = now + self.interval


class GuardedRetry(Retry):
    """One immediate retry for a dropped connection, none for a timeout; and the breaker.

    redis-py runs every command, pipeline, connect and health check through
    its connection's ``Retry.call_with_retry``: the one place to guard them all.
    """

    def __init__(self, breaker: Breaker):
        super().__init__(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))
        self.breaker = breaker

    def __deepcopy__(self, memo: dict) -> GuardedRetry:
        return GuardedRetry(self.breaker)

    def call_with_retry(self, do: Callable[[], T], fail: Callable[..., Any], *args, **kwargs) -> T:
        # Huey and the kit never call this; redis-py does, with arguments
        # that vary between its versions: passed on as they come.
        return super().call_with_retry(lambda: self.breaker.call(do), fail, *args, **kwargs)


def connection_pool(
    url: str, connect_timeout: float, socket_timeout: float
) -> redis.ConnectionPool:
    """The pool every part of the kit shares in this process (see the module's doc)."""
    return redis.ConnectionPool.from_url(
        url,
        socket_connect_timeout=connect_timeout,
        socket_timeout=socket_timeout,
        health_check_interval=30,
        retry=GuardedRetry(Breaker()),
    )


def use_socket_timeout(pool: redis.ConnectionPool, seconds: float) -> None:
    """Give the pool's connections from now on a socket timeout of ``seconds``.

    Called when a consumer starts, before its workers take anything. Idle
    connections are closed and forgotten, so none keeps the old timeout.
    """
    if pool.connection_kwargs.get("socket_timeout") == seconds:
        return
    pool.connection_kwargs["socket_timeout"] = seconds
    pool.disconnect(inuse_connections=False)
    pool.reset()

"""Redis behind Sentinel: the kit follows its master through a failover.

With ``REDIS_SENTINELS`` set, no address of the master is configured: the
pool asks the sentinels for it whenever it opens a connection. When the
master dies, calls fail with a connection error (the web answers 503) until
the sentinels have promoted a replica; the next connection goes to it, with
no restart. A master that was demoted while the kit was connected answers
writes with ``READONLY``: redis-py's Sentinel connection turns that into a
connection error too, drops the connection and asks the sentinels again.

The pool keeps the rules of ``redis_pool``: the same timeouts, one
immediate retry of a dropped connection (which is what lets a call reach the
new master at once), no retry of a timeout, and the breaker.

``REDIS_WAIT_REPLICAS`` makes a dispatch wait until that many replicas have
the new job (Redis ``WAIT``): see :func:`wait_settings`, and
``history/redis_store.py`` for where it is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

from .redis_pool import Breaker, GuardedRetry

# Connection options REDIS_URL may give the master when sentinels find it.
MASTER_OPTIONS = ("username", "password", "db")


class ReplicasBehind(redis.RedisError):
    """The job was written to the master, but fewer replicas than asked have it yet.

    The write is not undone: Redis cannot take it back, and the job runs if
    the master lives on. Lost only if the master dies before it replicates.
    """

    def __init__(self, acked: int, wanted: int):
        super().__init__(f"{acked} of {wanted} replicas acknowledged the job in time")
        self.acked, self.wanted = acked, wanted


class SentinelConnection(SentinelManagedConnection):
    """A connection to the master that asks the sentinels again when it reconnects.

    redis-py's own reconnects a dropped connection, inside a command's
    retry, to the address it last had: after a ``READONLY`` from a demoted
    master, the retry would go to that same server and fail again.
    """

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._sock:
            self.connect()  # through the sentinels
        super().send_packed_command(command, check_health)


def parse_sentinels(value: str | list[str]) -> list[tuple[str, int]]:
    """``"host:port,host:port"`` (or a JSON list of such) as address pairs."""
    items = value.split(",") if isinstance(value, str) else [str(item) for item in value]
    found = []
    for item in (item.strip() for item in items):
        if not item:
            continue
        host, colon, port = item.rpartition(":")
        if not colon or not host or not port.isdigit():
            raise ValueError(f"REDIS_SENTINELS: {item!r} is not host:port")
        found.append((host.strip("[]"), int(port)))  # [::1]:26379 too
    if not found:
        raise ValueError("REDIS_SENTINELS names no sentinel")
    return found


def connection_pool(config: Mapping[str, Any]) -> SentinelConnectionPool:
    """A pool to the master the sentinels name, with the kit's timeouts and breaker."""
    connect_timeout = config["REDIS_CONNECT_TIMEOUT"]
    master_options: dict[str, Any] = {}
    if config.get("REDIS_URL"):
        if config["REDIS_URL"].startswith("rediss://"):
            # Better refused than the master's password sent in clear text.
            raise ValueError(
                "REDIS_SENTINELS does not support TLS (a rediss:// REDIS_URL) to the master: "
                "use redis:// on a private network, or REDIS_URL alone"
            )
        # The master's credentials and database; its address comes from the sentinels.
        parsed = redis.connection.parse_url(config["REDIS_URL"])
        master_options = {key: parsed[key] for key in MASTER_OPTIONS if key in parsed}
    sentinels = Sentinel(
        parse_sentinels(config["REDIS_SENTINELS"]),
        # Asked once per new connection: short timeouts and no retries, a
        # sentinel that does not answer is skipped for the next one.
        sentinel_kwargs={
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": connect_timeout,
            "retry": Retry(NoBackoff(), 0),
            "username": config.get("REDIS_SENTINEL_USERNAME"),
            "password": config.get("REDIS_SENTINEL_PASSWORD"),
        },
    )
    return SentinelConnectionPool(
        config["REDIS_SENTINEL_MASTER"],
        sentinels,
        socket_connect_timeout=connect_timeout,
        socket_timeout=config["REDIS_SOCKET_TIMEOUT"],
        health_check_interval=30,
        retry=GuardedRetry(Breaker()),
        connection_class=SentinelConnection,
        **master_options,
    )


def wait_settings(config: Mapping[str, Any]) -> tuple[int, int]:
    """``(replicas, timeout in ms)`` a dispatch waits for; replicas 0: no wait.

    The wait blocks the web's connection, so it must end well before the
    socket timeout, or the dispatch would time out (and trip the breaker).
    """
    replicas = int(config.get("REDIS_WAIT_REPLICAS") or 0)
    timeout_ms = int(config.get("REDIS_WAIT_TIMEOUT_MS") or 0)
    if replicas < 0:
        raise ValueError("REDIS_WAIT_REPLICAS must be 0 or more")
    if replicas and not 0 < timeout_ms < config["REDIS_SOCKET_TIMEOUT"] * 1000:
        raise ValueError(
            "REDIS_WAIT_TIMEOUT_MS must be above 0 and below REDIS_SOCKET_TIMEOUT "
            f"({config['REDIS_SOCKET_TIMEOUT']} s): a WAIT of 0 never ends"
        )
    return replicas, timeout_ms

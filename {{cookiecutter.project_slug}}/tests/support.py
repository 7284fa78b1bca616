"""Small helpers shared by the tests and their fixtures."""

import socket
import time
import uuid

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unique_queue_name() -> str:
    """Tests share one Redis: each gets its own queue (and so its own keys)."""
    return f"test_{uuid.uuid4().hex[:12]}"


def pending(app) -> int:
    """How many jobs are waiting in the app's queue."""
    return app.extensions["huey"].pending_count()


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def wait_for(check, message: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(message)

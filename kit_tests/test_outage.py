"""Redis goes away and comes back: the web answers 503 fast, then recovers by
itself, and the worker waits quietly and resumes, without a restart.

The Redis here is the test's own ``redis-server``, stopped and started again
on the same port.
"""

import shutil
import sys
import time

import pytest

from support import PrivateRedis, free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.redis]

PACKAGE = "acme_jobs"
PESSOA = {"nome": "Ana", "idade": 30}


@pytest.fixture
def private_redis(tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("the outage test starts its own redis-server, and there is none")
    server = PrivateRedis(binary, free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_web_and_worker_ride_out_a_redis_restart(start_stack, private_redis):
    stack = start_stack(redis_url=private_redis.url, worker=False)
    worker = stack.start("worker", [sys.executable, "-m", f"{PACKAGE}.worker", "-w", "2"])
    code, body = stack.request("POST", "/jobs/testGreet", PESSOA)
    assert code == 202
    assert stack.wait_for_status(body["id"], {"complete"})["status"] == "complete"

    private_redis.stop()

    (code, body), seconds = timed(lambda: stack.request("POST", "/jobs/testGreet", PESSOA))
    assert code == 503, body
    assert body["error"] == "queue_unavailable"
    assert seconds < 3
    (code, body), seconds = timed(lambda: stack.request("GET", "/readyz"))
    assert code == 503
    assert seconds < 3
    time.sleep(6)  # longer than a heartbeat: every thread of the worker meets the outage
    assert worker.poll() is None

    private_redis.start()

    wait_for(lambda: stack.request("GET", "/readyz")[0] == 200, "/readyz did not recover", 10)
    code, body = stack.request("POST", "/jobs/testGreet", PESSOA)
    assert code == 202
    assert stack.wait_for_status(body["id"], {"complete"}, 20)["status"] == "complete"
    assert worker.poll() is None

    # Said once per process (two workers and the scheduler) when it starts
    # and once when it ends, instead of a traceback every second.
    def balanced() -> bool:
        logs = stack.read_logs()
        return logs.count("is unreachable") == logs.count("is reachable again")

    wait_for(balanced, "the worker did not log the end of the outage", 5)
    logs = stack.read_logs()
    assert 1 <= logs.count("is unreachable") <= 3, logs
    assert logs.count("could not write to the job history") <= 2, logs  # once per worker
    assert "Error reading from queue" not in logs
    assert "Error reading schedule" not in logs
    assert "died" not in logs

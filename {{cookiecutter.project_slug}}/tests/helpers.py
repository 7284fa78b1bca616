"""Helpers for the tests: what a test asks of the queue, and waiting on it."""

import time
from collections.abc import Callable

from flask.testing import FlaskClient

from {{ cookiecutter.project_slug }} import jobkit

# The jobs API refuses requests without a key. The tests' apps have this one,
# for every job, and their test clients send it, as a real client would.
API_KEY = "tests-only-api-key-0123456789"
API_KEYS = {"tests": {"key": API_KEY, "jobs": ["*"]}}


class ApiKeyClient(FlaskClient):
    """Flask's test client, sending ``Authorization: Bearer <API_KEY>``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_KEY}"


def pending(app) -> int:
    """How many jobs wait in the app's queue."""
    return jobkit.huey(app).pending_count()


def wait_until(check: Callable[[], object], message: str, timeout: float = 20) -> None:
    """Poll ``check`` until it returns something true: wait on an event, not a sleep."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(message)
        time.sleep(0.02)


def wait_for_status(client, job_id: str, statuses: set[str]) -> dict:
    """Poll ``GET /jobs/<id>`` until the job reaches one of ``statuses``."""
    record: dict = {}

    def reached() -> bool:
        nonlocal record
        record = client.get(f"/jobs/{job_id}").get_json()
        return record["status"] in statuses

    wait_until(reached, f"job {job_id} never reached {statuses}")
    return record

"""Fixtures for the monitor's tests: an app with credentials, a logged-in client.

``mapp`` runs on both backends with a real queue and no worker: tests play
the worker's part with ``run_next`` and ``fail_next`` (see monitor_helpers),
so every record the monitor shows was written by the real history code.
"""

import pytest

from acme_jobs import create_app
from support import SECRET_KEY, unique_queue_name

from .monitor_helpers import PASSWORD, USERNAME, MonitorClient

SETTINGS = {
    "TESTING": True,
    "SECRET_KEY": SECRET_KEY,
    "MONITOR_USERNAME": USERNAME,
    "MONITOR_PASSWORD": PASSWORD,
}


@pytest.fixture(params=["sqlite", "redis"])
def mapp(request, tmp_path):
    """The app on each backend, with monitor credentials, and no worker."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        app = create_app({**SETTINGS, "REDIS_URL": url, "QUEUE_NAME": unique_queue_name()})
    else:
        app = create_app({**SETTINGS, "REDIS_URL": None, "SQLITE_PATH": str(tmp_path / "q.db")})
    yield app
    app.extensions["jobkit"].history.store.clear()
    app.extensions["jobkit"].huey.flush()


@pytest.fixture
def sqlite_app(tmp_path):
    """One backend is enough for tests about HTTP rules rather than data."""
    return create_app({**SETTINGS, "REDIS_URL": None, "SQLITE_PATH": str(tmp_path / "q.db")})


@pytest.fixture
def monitor(mapp) -> MonitorClient:
    """A browser logged in to the monitor (through the login form)."""
    client = MonitorClient(mapp)
    client.log_in()
    return client


@pytest.fixture
def anonymous(sqlite_app) -> MonitorClient:
    return MonitorClient(sqlite_app)

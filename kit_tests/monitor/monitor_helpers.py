"""Helpers for the monitor's tests: a browser-like client, and a fake worker."""

import re
from typing import Any

from flask import Flask
from werkzeug.test import TestResponse

USERNAME = "admin"
PASSWORD = "correct horse battery staple"
PESSOA = {"nome": "João", "idade": 30}

XSS_PAYLOADS = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>']


class MonitorClient:
    """Flask's test client plus the CSRF token a real page would carry."""

    def __init__(self, app: Flask):
        self.app = app
        self.client = app.test_client()

    def log_in(self, username: str = USERNAME, password: str = PASSWORD) -> TestResponse:
        token = self.token_from(self.client.get("/monitor/login"))
        form = {"username": username, "password": password, "csrf_token": token}
        return self.client.post("/monitor/login", data=form)

    @staticmethod
    def token_from(page: TestResponse) -> str:
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert match, "the page has no CSRF token"
        return match.group(1)

    def csrf(self) -> str:
        with self.client.session_transaction() as session:
            return session["csrf_token"]

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.client.get(path, **kwargs)

    def post(self, path: str, data: dict | None = None, **kwargs: Any) -> TestResponse:
        """A form POST as the monitor's own pages send it: with the token."""
        form = {"csrf_token": self.csrf(), **(data or {})}
        return self.client.post(path, data=form, **kwargs)

    @property
    def history(self):
        return self.app.extensions["jobkit"].history


def dispatch(app: Flask, payload: dict | None = None) -> str:
    """Queue testGreet through the public API, as a user would."""
    response = app.test_client().post("/jobs/testGreet", json=payload or PESSOA)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def run_next(app: Flask) -> str:
    """Run the next queued job in-process, exactly as a worker would."""
    huey = app.extensions["jobkit"].huey
    task = huey.dequeue()
    assert task is not None, "nothing is queued"
    huey.execute(task)
    return task.id


def fail_next(app: Flask, message: str = "the printer is on fire") -> str:
    """Take the next queued job and make it fail for good."""
    task = app.extensions["jobkit"].huey.dequeue()
    assert task is not None, "nothing is queued"
    return fail(app, task, message)


def fail(app: Flask, task: Any, message: str = "the printer is on fire") -> str:
    """Send the signals Huey sends for a job that raises with no retry left.

    With a real exception, so the record holds a real traceback.
    """
    history = app.extensions["jobkit"].history
    history.on_signal("executing", task)
    try:
        raise RuntimeError(message)
    except RuntimeError as exc:
        task.retries = 0
        history.on_signal("error", task, exc)
    return task.id


def record_job(app: Flask, payload: dict) -> Any:
    """Record a queued testGreet with any payload, skipping validation.

    Returns its task, which ``fail`` can then fail.
    """
    task = app.extensions["jobkit"].tasks["testGreet"].s(payload)
    app.extensions["jobkit"].history.job_enqueued(task, payload)
    return task

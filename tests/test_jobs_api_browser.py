"""A page of another site cannot queue a job through a visitor's browser.

The jobs API reads any body as JSON, so a plain HTML form with
``enctype="text/plain"`` can carry a JSON object, and browsers send such a
form to any site without asking it first. The stack runs the API open (no
key, as in debug mode), where that form would have queued a job: a page on
another port (another origin, the same site) submits it by itself in
headless Chromium, and the API refuses it; a curl-like request still
queues one. One backend: what is checked is the browser's request.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from selenium.webdriver.support.ui import WebDriverWait
from test_monitor_browser import PASSWORD, USERNAME, Stack, browser, project  # noqa: F401

pytestmark = pytest.mark.generated

# text/plain sends "name=value": the "=" lands inside the string "nome".
FORM = """<!doctype html>
<form method="post" enctype="text/plain" action="{action}">
  <input type="hidden" name='{{"nome": "Eve' value='", "idade": 30}}'>
</form>
<script>document.forms[0].submit()</script>
"""


@pytest.fixture
def open_stack(project: Path, tmp_path: Path) -> Iterator[Stack]:  # noqa: F811
    env = dict(
        os.environ,
        PYTHONPATH=str(project),
        FLASK_SKIP_DOTENV="1",
        FLASK_SECRET_KEY=uuid.uuid4().hex,
        FLASK_MONITOR_USERNAME=USERNAME,
        FLASK_MONITOR_PASSWORD=PASSWORD,
        FLASK_QUEUE_NAME=f"browser_{uuid.uuid4().hex[:8]}",
        FLASK_SQLITE_PATH=json.dumps(str(tmp_path / "queue.sqlite3")),
        # No key: anyone may dispatch, as with `flask run --debug`.
        FLASK_JOBS_API_KEYS="",
        FLASK_JOBS_API_OPEN="1",
    )
    env.pop("REDIS_URL", None)
    stack = Stack(project, env, tmp_path)
    try:
        yield stack.up()
    finally:
        stack.down()


@pytest.fixture
def other_site(open_stack: Stack, tmp_path: Path) -> Iterator[str]:
    """The URL of a page, served from another port, that posts the form."""
    pages = tmp_path / "other-site"
    pages.mkdir()
    action = f"{open_stack.base_url}/jobs/jobModelo"
    (pages / "index.html").write_text(FORM.format(action=action), encoding="utf-8")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(pages))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()


def jobs_recorded(stack: Stack) -> int:
    """How many jobs the monitor knows of, whatever their status."""
    request = urllib.request.Request(stack.base_url + "/monitor/api/counts")
    login = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    request.add_header("Authorization", f"Basic {login}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return sum(json.load(response)["counts"].values())


def test_a_form_on_another_site_cannot_queue_a_job(browser, open_stack, other_site):  # noqa: F811
    browser.get(other_site)

    # The browser sent it, and landed on the API's refusal.
    WebDriverWait(browser, 20).until(lambda b: "cross_site_request" in b.page_source)
    assert jobs_recorded(open_stack) == 0

    # curl's way still works: no Origin, no Sec-Fetch-*.
    open_stack.dispatch("jobModelo", {"nome": "Ana", "idade": 30})
    assert jobs_recorded(open_stack) == 1

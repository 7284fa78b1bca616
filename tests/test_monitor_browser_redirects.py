"""Hostile ``next`` links in a real browser, and the Secure cookie behind a proxy.

A link such as ``/monitor/login?next=/%09/evil.example`` once made the
monitor answer ``Location: //evil.example``, and Chromium followed it. Here
Chromium opens such links, before and after logging in, and must stay on the
monitor's own host. Same generated project and servers (gunicorn) as
``test_monitor_browser.py``, on SQLite only: the behaviour is the browser's.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_monitor_browser as base
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.generated

# The fixtures of the monitor's browser test, shared (not redefined) here.
browser = base.browser
project = base.project

HOSTILE = ["/\t/evil.example", "/\\evil.example", "/\r/x", "//evil.example"]


@pytest.fixture
def stack(project: Path, tmp_path: Path) -> Iterator[base.Stack]:
    env = dict(
        os.environ,
        PYTHONPATH=str(project),
        FLASK_SKIP_DOTENV="1",
        FLASK_SECRET_KEY=uuid.uuid4().hex + uuid.uuid4().hex,
        FLASK_MONITOR_USERNAME=base.USERNAME,
        FLASK_MONITOR_PASSWORD=base.PASSWORD,
        FLASK_QUEUE_NAME=f"browser_{uuid.uuid4().hex[:8]}",
        FLASK_SQLITE_PATH=json.dumps(str(tmp_path / "queue.sqlite3")),
    )
    env.pop("REDIS_URL", None)
    stack = base.Stack(project, env, tmp_path)
    try:
        yield stack.up()
    finally:
        stack.down()


def login_link(stack: base.Stack, target: str) -> str:
    return f"{stack.base_url}/monitor/login?next={urllib.parse.quote(target, safe='')}"


def test_hostile_next_links_keep_the_browser_on_the_monitor(browser, stack):
    here = urllib.parse.urlsplit(stack.base_url).netloc

    # Logging in from such a link...
    browser.get(login_link(stack, HOSTILE[0]))
    browser.find_element(By.NAME, "username").send_keys(base.USERNAME)
    browser.find_element(By.NAME, "password").send_keys(base.PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form.login button").click()
    WebDriverWait(browser, 10).until(EC.url_matches(r"/monitor/$"))
    assert urllib.parse.urlsplit(browser.current_url).netloc == here

    # ...and opening one while logged in.
    for target in HOSTILE:
        browser.get(login_link(stack, target))
        WebDriverWait(browser, 10).until(lambda b: "/login" not in b.current_url)
        assert urllib.parse.urlsplit(browser.current_url).netloc == here, target
        assert browser.find_element(By.CSS_SELECTOR, "[data-count]")  # the overview


def test_behind_a_proxy_that_says_https_the_session_cookie_is_secure(stack):
    # gunicorn believes X-Forwarded-Proto from 127.0.0.1, its default proxy.
    proxied = {"X-Forwarded-Proto": "https"}
    first = urllib.request.Request(stack.base_url + "/monitor/login", headers=proxied)
    with urllib.request.urlopen(first, timeout=10) as page:
        cookie = page.headers["Set-Cookie"]
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.read().decode())[1]
    form = urllib.parse.urlencode(
        {"username": base.USERNAME, "password": base.PASSWORD, "csrf_token": token}
    )
    request = urllib.request.Request(
        stack.base_url + "/monitor/login",
        data=form.encode(),
        headers={**proxied, "Cookie": cookie.split(";", 1)[0]},
    )

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    with pytest.raises(urllib.error.HTTPError) as answer:  # the redirect, not followed
        urllib.request.build_opener(NoRedirect).open(request, timeout=10)

    assert answer.value.code == 302
    assert "; Secure" in answer.value.headers["Set-Cookie"]
    assert "; Secure" in cookie

"""The monitor in a real browser: headless Chromium driven by Selenium.

A project is generated, one job module is added to it (which also shows that
adding a job takes one module), and its web server (gunicorn) and worker
(huey_consumer) are started on SQLite and on Redis. Then, as an operator
would: log in, watch a job fail, read its traceback under Failed, fix the
cause, press Retry and watch the new attempt complete, live. A screenshot of
the overview is saved to ``artifacts/``.

Needs Debian's ``chromium`` and ``chromium-driver`` (the CI script installs
them); skipped when they are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter
from variants import ROOT

pytestmark = pytest.mark.generated

# Debian's packages; CHROMIUM and CHROMEDRIVER name other binaries.
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
ARTIFACTS = ROOT / "artifacts"
SLUG = "acme_jobs"
USERNAME, PASSWORD = "operator", "correct horse battery staple"

# The job the test adds to the generated project: it fails while a "jam"
# file exists, so the operator can fix the cause and retry it.
JOB_MODULE = '''
"""printReportJob: prints a report, unless the printer is jammed."""

import time
from pathlib import Path

from marshmallow import Schema, fields

from ..kit import job


class Report(Schema):
    jam_file = fields.String(required=True)
    seconds = fields.Float(load_default=0.0)


@job("printReportJob", schema=Report)
def print_report(report: dict) -> dict:
    """Print a report; fails while its jam file exists."""
    time.sleep(report["seconds"])
    if Path(report["jam_file"]).exists():
        raise RuntimeError(f"the printer is jammed ({report['jam_file']})")
    return {"printed": True}
'''

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], object], what: str, timeout: float = 20) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """$REDIS_URL, else a private redis-server; skip (or fail with REQUIRE_REDIS=1)."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail("REQUIRE_REDIS=1 but there is no REDIS_URL and no redis-server")
        pytest.skip("no Redis to test against")
    port = free_port()
    server = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        cwd=tmp_path_factory.mktemp("redis"),
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: redis_answers(port), "redis-server to start")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly generated project, plus the test's job module."""
    out = tmp_path_factory.mktemp("browser-bake")
    path = Path(cookiecutter(str(ROOT), no_input=True, output_dir=str(out)))
    (path / SLUG / "jobs" / "job_print_report.py").write_text(
        JOB_MODULE, encoding="utf-8"
    )
    return path


class Stack:
    """gunicorn and huey_consumer for one generated project.

    The jobs API needs a key: the stack has one for every job, unless
    ``env`` brings its own ``FLASK_JOBS_API_KEYS``.
    """

    def __init__(self, project: Path, env: dict[str, str], logs: Path):
        self.project = project
        self.api_key = f"browser-{uuid.uuid4().hex}"
        keys = {"browser-tests": {"key": self.api_key, "jobs": ["*"]}}
        self.env = {"FLASK_JOBS_API_KEYS": json.dumps(keys), **env}
        self.logs = logs
        self.backend = "redis" if "REDIS_URL" in env else "sqlite"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen] = []

    def start(self, name: str, argv: list[str]) -> None:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.processes.append(
            subprocess.Popen(
                argv,
                cwd=self.project,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )

    def up(self) -> Stack:
        self.start(
            "web",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--workers",
                "2",
                "--bind",
                f"127.0.0.1:{self.port}",
                f"{SLUG}:create_app()",
            ],
        )
        self.start(
            "worker",
            [
                sys.executable,
                "-m",
                "huey.bin.huey_consumer",
                f"{SLUG}.worker.huey",
                "--worker-type",
                "process",
                "--workers",
                "2",
                "--delay",
                "0.01",
                "--max-delay",
                "0.25",
                # The example periodic job would add a run to the counts
                # watched here whenever a test straddles a 5-minute mark.
                "--no-periodic",
            ],
        )
        wait_until(
            lambda: answers(self.base_url + "/healthz"), "the web server to start"
        )
        return self

    def down(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()

    def dispatch(self, name: str, payload: dict) -> str:
        req = urllib.request.Request(
            f"{self.base_url}/jobs/{name}",
            data=json.dumps(payload).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self.api_key}",
            },
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as response:
            return json.load(response)["id"]

    def read_logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()}" for p in sorted(self.logs.glob("*.log"))
        )


@pytest.fixture(params=["sqlite", "redis"])
def stack(request, project: Path, tmp_path: Path) -> Iterator[Stack]:
    env = dict(
        os.environ,
        PYTHONPATH=str(project),
        FLASK_SKIP_DOTENV="1",
        FLASK_SECRET_KEY=uuid.uuid4().hex,
        FLASK_MONITOR_USERNAME=USERNAME,
        FLASK_MONITOR_PASSWORD=PASSWORD,
        FLASK_QUEUE_NAME=f"browser_{uuid.uuid4().hex[:8]}",
    )
    env.pop("REDIS_URL", None)
    if request.param == "redis":
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
    else:
        env["FLASK_SQLITE_PATH"] = json.dumps(str(tmp_path / "queue.sqlite3"))
    stack = Stack(project, env, tmp_path)
    try:
        yield stack.up()
    finally:
        stack.down()


@pytest.fixture
def browser() -> Iterator:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--no-first-run",
        "--window-size=1280,1100",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    ARTIFACTS.mkdir(exist_ok=True)  # screenshots go there (git ignores it)
    try:
        yield driver
    finally:
        driver.quit()


def log_in(browser, stack: Stack) -> None:
    browser.get(stack.base_url + "/monitor/?refresh=1")
    assert "/monitor/login" in browser.current_url
    browser.find_element(By.NAME, "username").send_keys(USERNAME)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form.login button").click()
    WebDriverWait(browser, 10).until(EC.url_contains("/monitor/?refresh=1"))


def count_of(browser, status: str) -> int | None:
    """A count on the overview; None while the live refresh swaps it."""
    try:
        return int(
            browser.find_element(By.CSS_SELECTOR, f'[data-count="{status}"]').text
        )
    except StaleElementReferenceException:
        return None


def test_an_operator_sees_a_failure_retries_it_and_watches_it_complete(
    browser, stack, tmp_path
):
    wait = WebDriverWait(browser, 30)
    log_in(browser, stack)

    # A job fails: the printer is jammed.
    jam = tmp_path / "jam"
    jam.write_text("paper everywhere")
    failed_id = stack.dispatch("printReportJob", {"jam_file": str(jam)})

    # It shows up under Failed by itself (live refresh, no reload).
    browser.get(stack.base_url + "/monitor/jobs/failed?refresh=1")
    row = f'tr[data-job-id="{failed_id}"]'
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, row)))
    assert "the printer is jammed" in browser.find_element(By.CSS_SELECTOR, row).text

    # Its page shows the traceback.
    browser.find_element(By.CSS_SELECTOR, f"{row} td.id a").click()
    traceback = wait.until(
        EC.visibility_of_element_located((By.CSS_SELECTOR, "pre.traceback"))
    )
    assert "Traceback (most recent call last)" in traceback.text
    assert "RuntimeError: the printer is jammed" in traceback.text
    if stack.backend == "sqlite":
        browser.save_screenshot(str(ARTIFACTS / "monitor-failed-job.png"))

    # Fix the cause, press Retry, and watch the new attempt complete.
    jam.unlink()
    browser.find_element(By.ID, "retry").click()
    wait.until(EC.url_matches(r"/monitor/job/(?!" + failed_id + ")"))
    wait.until(
        EC.presence_of_element_located(
            (By.CSS_SELECTOR, '.record [data-status="complete"]')
        ),
        message=stack.read_logs(),
    )
    assert (
        failed_id in browser.find_element(By.CSS_SELECTOR, "dl.record").text
    )  # "Retry of"
    assert "printed" in browser.find_element(By.CSS_SELECTOR, "pre.result").text

    # The original now says it was retried, and links to the new job.
    browser.get(f"{stack.base_url}/monitor/job/{failed_id}")
    assert (
        browser.find_element(By.CSS_SELECTOR, ".record [data-status]").text == "Retried"
    )
    assert browser.find_element(By.CSS_SELECTOR, "[data-retried-by]").text


def test_the_overview_follows_jobs_live_and_can_be_paused(browser, stack, tmp_path):
    log_in(browser, stack)
    for _ in range(3):
        stack.dispatch("printReportJob", {"jam_file": str(tmp_path / "none")})
    stack.dispatch("printReportJob", {"jam_file": str(tmp_path / "none"), "seconds": 4})
    jam = tmp_path / "jam"
    jam.write_text("")
    stack.dispatch("printReportJob", {"jam_file": str(jam)})

    # Counts move without a reload: a long job shows as running, then all end.
    wait_until(
        lambda: count_of(browser, "running") == 1, "a running job on the overview"
    )
    wait_until(
        lambda: count_of(browser, "complete") >= 3, "completed jobs on the overview"
    )
    wait_until(lambda: count_of(browser, "failed") == 1, "the failure on the overview")
    if stack.backend == "sqlite":
        browser.save_screenshot(str(ARTIFACTS / "monitor-overview.png"))
    wait_until(
        lambda: count_of(browser, "complete") == 4, "the long job to complete", 15
    )

    # Paused, the page stops refreshing even as jobs complete.
    browser.find_element(By.ID, "live-toggle").click()
    assert browser.find_element(By.ID, "live-toggle").text == "Resume"
    stack.dispatch("printReportJob", {"jam_file": str(tmp_path / "none")})
    time.sleep(2.5)
    assert count_of(browser, "complete") == 4
    browser.find_element(By.ID, "live-toggle").click()
    wait_until(lambda: count_of(browser, "complete") == 5, "the refresh to resume")

    # The strict Content-Security-Policy broke nothing on the page.
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_the_workers_page_shows_the_worker_processes(browser, stack):
    log_in(browser, stack)
    browser.get(stack.base_url + "/monitor/workers?refresh=1")

    rows = wait_until(
        lambda: browser.find_elements(By.CSS_SELECTOR, "table.workers tr.alive"),
        "worker heartbeats",
    )

    assert len(rows) == 2  # --workers 2 --worker-type process: two processes
    assert "process" in rows[0].text


def test_job_data_stays_text_in_the_browser(browser, stack):
    log_in(browser, stack)
    evil = (
        '"><img src=x onerror="document.title=\'pwned\'">'
        '<script>document.title="pwned"</script>'
    )
    job_id = stack.dispatch("jobModelo", {"nome": evil, "idade": 30})

    browser.get(f"{stack.base_url}/monitor/job/{job_id}?refresh=1")
    WebDriverWait(browser, 20).until(
        EC.presence_of_element_located(
            (By.CSS_SELECTOR, '.record [data-status="complete"]')
        )
    )

    assert browser.title != "pwned"
    assert not browser.find_elements(By.CSS_SELECTOR, "main img")
    shown = browser.find_element(By.CSS_SELECTOR, "pre.payload").text
    assert json.dumps(evil) in shown  # the payload's JSON, as plain text

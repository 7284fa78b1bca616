"""The monitor's job controls in a real browser (headless Chromium, Selenium).

Same generated project, servers and browser as ``test_monitor_browser.py``
(its fixtures are reused here), on SQLite and on Redis. As an operator
would: start a long import, watch its progress bar advance and its log
lines appear, cancel it and see it recorded as cancelled, by whom; then the
audit log, the periodic jobs page ("Run now") and a pause of the queue.
Screenshots go to ``artifacts/``.
"""

from __future__ import annotations

import re
import time

import pytest
import test_monitor_browser as base
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.generated

# The fixtures of the monitor's browser test, shared (not redefined) here.
browser = base.browser
stack = base.stack
project = base.project
redis_url = base.redis_url

ARTIFACTS = base.ARTIFACTS
PEOPLE = [{"nome": f"Pessoa {i}", "idade": 18 + i % 60} for i in range(60)]


def screenshot(browser, stack, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"{name}-{stack.backend}.png"))


def progress_value(browser) -> float | None:
    """The value of the job page's progress bar; None while it is swapped."""
    try:
        bars = browser.find_elements(By.CSS_SELECTOR, ".progress progress")
        return float(bars[0].get_attribute("value")) if bars else None
    except (StaleElementReferenceException, TypeError, ValueError):
        return None


def text_of(browser, selector: str) -> str:
    """The text of the matching elements, shown or folded (in a closed <details>)."""
    try:
        found = browser.find_elements(By.CSS_SELECTOR, selector)
        return " ".join(element.get_attribute("textContent") for element in found)
    except StaleElementReferenceException:
        return ""


def confirm(browser) -> None:
    """Accept the page's "are you sure?" dialog (forms with data-confirm)."""
    WebDriverWait(browser, 5).until(EC.alert_is_present())
    browser.switch_to.alert.accept()


def no_console_errors(browser) -> None:
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_an_operator_watches_a_job_progress_and_cancels_it(browser, stack):
    wait = WebDriverWait(browser, 30)
    base.log_in(browser, stack)
    job_id = stack.dispatch("importarPessoas", {"pessoas": PEOPLE, "atraso": 0.25})

    # The job page: a progress bar that moves by itself, and the job's log.
    browser.get(f"{stack.base_url}/monitor/job/{job_id}?refresh=1")
    first = base.wait_until(lambda: progress_value(browser), "a progress bar", 30)
    base.wait_until(
        lambda: (progress_value(browser) or 0) >= first + 3,
        "the progress bar to advance",
        30,
    )
    base.wait_until(
        lambda: "imported Pessoa 2" in text_of(browser, "pre.joblog"),
        "the job's log lines",
    )
    assert "importing 60 people" in text_of(browser, "pre.joblog")
    record = text_of(browser, "dl.record")
    assert re.search(r"of 1 h 0 min", record), record  # elapsed against its timeout
    assert "left" in text_of(browser, ".progress")
    screenshot(browser, stack, "controls-job-progress")

    # The running list shows the bar too.
    browser.get(f"{stack.base_url}/monitor/jobs/running?refresh=1")
    row = f'tr[data-job-id="{job_id}"]'
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, f"{row} progress")))
    screenshot(browser, stack, "controls-running-list")

    # Cancel it from its page: it stops, and says who cancelled it.
    browser.get(f"{stack.base_url}/monitor/job/{job_id}?refresh=1")
    wait.until(EC.element_to_be_clickable((By.ID, "cancel"))).click()
    confirm(browser)
    wait.until(
        EC.presence_of_element_located(
            (By.CSS_SELECTOR, '.record [data-status="cancelled"]')
        ),
        message=stack.read_logs(),
    )
    timeline = text_of(browser, "table.timeline")
    assert "cancel requested" in timeline
    assert f"cancelled by {base.USERNAME}" in timeline
    assert (progress_value(browser) or 0) < len(PEOPLE)  # it stopped midway
    assert "Cancelled" in text_of(browser, ".record [data-status]")
    cancelled = text_of(browser, ".record [data-cancelled]")
    assert f"cancelled by {base.USERNAME}" in cancelled
    screenshot(browser, stack, "controls-job-cancelled")

    # The audit log names the operator.
    browser.get(f"{stack.base_url}/monitor/audit")
    entry = browser.find_element(By.CSS_SELECTOR, 'tr[data-action="cancel"]').text
    assert base.USERNAME in entry and job_id in entry
    screenshot(browser, stack, "controls-audit-log")
    no_console_errors(browser)


def test_an_operator_runs_a_periodic_job_and_pauses_the_queue(browser, stack):
    wait = WebDriverWait(browser, 30)
    base.log_in(browser, stack)

    # Periodic jobs: the schedule in words, and "Run now".
    browser.get(f"{stack.base_url}/monitor/periodic")
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-periodic="relatorioFila"]')
    assert "every 5 minutes" in row.text
    screenshot(browser, stack, "controls-periodic")
    row.find_element(By.CSS_SELECTOR, "button").click()
    confirm(browser)
    wait.until(EC.url_contains("/monitor/job/"))
    browser.get(browser.current_url + "?refresh=1")
    wait.until(
        EC.presence_of_element_located(
            (By.CSS_SELECTOR, '.record [data-status="complete"]')
        ),
        message=stack.read_logs(),
    )
    assert "queue report:" in text_of(browser, "pre.joblog")

    # Pause the queue with a reason: a banner says so; jobs wait.
    browser.get(f"{stack.base_url}/monitor/pauses")
    reason = '[data-target="queue"] input[name="reason"]'
    browser.find_element(By.CSS_SELECTOR, reason).send_keys("deploying a new version")
    browser.find_element(By.ID, "pause-queue").click()
    banner = wait.until(
        EC.presence_of_element_located((By.CSS_SELECTOR, "[data-queue-paused]"))
    )
    assert "deploying a new version" in banner.text
    screenshot(browser, stack, "controls-queue-paused")
    time.sleep(1.5)  # workers look at the pauses once a second (PAUSE_CHECK_INTERVAL)
    waiting = stack.dispatch("jobModelo", {"nome": "Ana", "idade": 31})
    time.sleep(2)
    browser.get(f"{stack.base_url}/monitor/job/{waiting}?refresh=1")
    status = browser.find_element(By.CSS_SELECTOR, ".record [data-status]").text
    assert status == "Queued"

    # Resume: the waiting job runs.
    browser.get(f"{stack.base_url}/monitor/pauses")
    browser.find_element(By.ID, "resume-queue").click()
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, ".flash"), "Resumed"))
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-queue-paused]")
    browser.get(f"{stack.base_url}/monitor/job/{waiting}?refresh=1")
    wait.until(
        EC.presence_of_element_located(
            (By.CSS_SELECTOR, '.record [data-status="complete"]')
        ),
        message=stack.read_logs(),
    )
    no_console_errors(browser)

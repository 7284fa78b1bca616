"""A baked project's /metrics, checked by Prometheus' own promtool.

``promtool check metrics`` reads an exposition on stdin and reports what
Prometheus' naming and format conventions reject (a counter without
``_total``, a unit missing from the name, a malformed histogram...).
"""

from __future__ import annotations

import linters
import pytest
from projects import assert_succeeded, run_in_project

pytestmark = pytest.mark.generated

# Runs one job that completes and one that fails for good in immediate mode,
# so that every series (counters, histogram, gauges) has samples, then writes
# what GET /metrics answers to the file named by its argument (its output has
# the app's log lines).
SCRAPE = """
import sys, tempfile
from {slug} import create_app
from {slug}.kit import registry
from {slug}.kit.queue import enqueue
from {slug}.jobs.job_modelo import Pessoa

@registry.job("alwaysFails", schema=Pessoa, retries=1)
def always_fails(data):
    raise RuntimeError("fails on purpose")

app = create_app({{
    "TESTING": True,
    "QUEUE_IMMEDIATE": True,
    "SQLITE_PATH": tempfile.mkdtemp() + "/queue.sqlite3",
    "METRICS_TOKEN": "token",
}})
with app.app_context():
    enqueue("jobModelo", {{"nome": "Ana", "idade": 30}})
    try:
        enqueue("alwaysFails", {{"nome": "Ana", "idade": 30}})
    except RuntimeError:
        pass
bearer = {{"Authorization": "Bearer token"}}
response = app.test_client().get("/metrics", headers=bearer)
assert response.status_code == 200, response.status_code
with open(sys.argv[1], "w", encoding="utf-8") as out:
    out.write(response.get_data(as_text=True))
"""


@pytest.fixture(scope="module")
def exposition(bake, tmp_path_factory) -> str:
    baked = bake("default")
    scraped = tmp_path_factory.mktemp("metrics") / "metrics.txt"
    script = SCRAPE.format(slug=baked.variant.slug)
    assert_succeeded(run_in_project(baked.path, "-c", script, str(scraped)))
    return scraped.read_text(encoding="utf-8")


def test_the_scrape_has_every_kind_of_series(exposition):
    assert "# TYPE acme_jobs_jobs_completed_total counter" in exposition
    assert "# TYPE acme_jobs_jobs_duration_seconds histogram" in exposition
    assert "# TYPE acme_jobs_jobs_queue_depth gauge" in exposition
    failed = 'acme_jobs_jobs_failed_total{job_name="alwaysFails",queue="default"} 1.0'
    assert failed in exposition


def test_promtool_finds_nothing_to_report_in_the_metrics(exposition):
    result = linters.run(
        linters.promtool(), "check", "metrics", cwd=linters.ROOT, stdin=exposition
    )

    assert result.returncode == 0, result.stdout
    assert result.stdout == ""

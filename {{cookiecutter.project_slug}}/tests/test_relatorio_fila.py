"""relatorioFila: the periodic queue report."""

import datetime

from {{ cookiecutter.project_slug }}.jobs.relatorio_fila import relatorio_fila
from {{ cookiecutter.project_slug }}.kit import get_job


def test_it_runs_every_five_minutes():
    schedule = get_job("relatorioFila").schedule
    at = datetime.datetime(2026, 1, 1, 12, 0)

    due = [minute for minute in range(15) if schedule(at + datetime.timedelta(minutes=minute))]

    assert due == [0, 5, 10]


def test_it_reports_the_queued_jobs(queue_app):
    runner = queue_app.test_cli_runner()
    for _ in range(2):
        assert runner.invoke(args=["jobs", "enqueue", "relatorioFila"]).exit_code == 0

    with queue_app.app_context():
        report = relatorio_fila()

    assert report["queued"] == 2
    assert report["failed"] == 0

"""relatorioFila: the example periodic job, a report on the queue every 5 minutes.

A periodic job runs on a schedule instead of being dispatched: Huey's
scheduler (inside the worker) queues it when its crontab says so. It takes
no payload. The monitor's periodic jobs page lists it with its schedule in
words, its last and next run, and a "Run now" button.
"""

import logging

from ..kit import cron, periodic_job, queue_overview

JOB_NAME = "relatorioFila"

log = logging.getLogger(__name__)


@periodic_job(JOB_NAME, cron("*/5 * * * *"), timeout=60)
def relatorio_fila() -> dict:
    """Log how many jobs are waiting, running and failing."""
    overview = queue_overview(hours=1)
    counts = overview["counts"]
    report = {
        "queued": counts["queued"],
        "running": counts["running"],
        "failed": counts["failed"],
        "completed_last_hour": overview["complete"],
        "failed_last_hour": overview["failed"],
        "oldest_queued_seconds": round(overview["latency"], 1),
    }
    log.info(
        "queue report: %(queued)d queued, %(running)d running, "
        "%(completed_last_hour)d completed and %(failed_last_hour)d failed in the last hour",
        report,
    )
    if overview["failed"]:
        log.warning("%d jobs failed in the last hour: see /monitor", overview["failed"])
    return report

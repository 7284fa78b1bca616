"""testPeriodic: a periodic job, every 5 minutes."""

import logging

from acme_jobs.kit import cron, periodic_job, queue_overview

log = logging.getLogger(__name__)


@periodic_job("testPeriodic", cron("*/5 * * * *"), timeout=60)
def queue_report() -> dict:
    """Count the queued, running and failed jobs."""
    counts = queue_overview(hours=1)["counts"]
    log.info("queue report: %(queued)d queued, %(running)d running", counts)
    return {key: counts[key] for key in ("queued", "running", "failed")}

"""Jobs for the job-control tests that run real workers (test_controls_live.py).

Worker processes import this module through the ``JOB_MODULES`` setting.
"""

import logging
import time

from marshmallow import Schema, fields

from acme_jobs.kit import registry
from acme_jobs.kit.progress import check_cancelled

log = logging.getLogger(__name__)


class Steps(Schema):
    steps = fields.Integer(load_default=3)
    seconds = fields.Float(load_default=0.0)


@registry.job("testLogsThenFails", schema=Steps)
def logs_then_fails(data: dict) -> None:
    """Log a few lines, then fail: the lines must stay next to the error."""
    for step in range(data["steps"]):
        log.info("step %d of %d", step + 1, data["steps"])
    log.warning("about to fail")
    raise RuntimeError("the disk is full")


@registry.job("testChecksCancel", schema=Steps, retries=3)
def checks_cancel(data: dict) -> str:
    """Work without reporting progress, but check for a cancel now and then."""
    deadline = time.monotonic() + data["seconds"]
    while time.monotonic() < deadline:
        check_cancelled()
        time.sleep(0.05)
    return "ran to the end"

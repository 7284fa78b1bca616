"""The worker's entry point::

    python -m {{ cookiecutter.project_slug }}.worker

runs Huey's consumer with the kit's defaults: process workers, so job
timeouts are enforced; short polling, so a job queued in SQLite starts
within a quarter of a second; and a graceful shutdown on both SIGTERM and
SIGINT, which puts back on the queue the jobs that could not finish in time.
It takes ``huey_consumer``'s flags (``--workers 4``, ...).

Plain ``huey_consumer {{ cookiecutter.project_slug }}.worker.huey`` works too; give it the
same behaviour with ``--worker-type process --workers 2 --delay 0.01
--max-delay 0.25 --graceful-signal TERM --shutdown-timeout 30``.

Importing this module builds the app once per process, which registers every
job on ``huey``. Each job then runs in its own app context, so it can use
``current_app``, the config and any extension.
"""

from . import create_app, jobkit
from .kit import load_worker_app, run_worker

app = load_worker_app(create_app)
huey = jobkit.huey(app)

if __name__ == "__main__":
    raise SystemExit(run_worker(app))

"""The worker's entry point::

    python -m {{ cookiecutter.project_slug }}.worker

runs Huey's consumer with the kit's defaults (see ``consumer.py``): process
workers, so job timeouts are enforced; short polling, so a job queued in
SQLite starts within a quarter of a second; and a graceful shutdown on both
SIGTERM and SIGINT, which puts back on the queue the jobs that could not
finish in time. It takes ``huey_consumer``'s flags (``--workers 4``, ...).

Plain ``huey_consumer {{ cookiecutter.project_slug }}.worker.huey`` works too; give it the
same behaviour with ``--worker-type process --workers 2 --delay 0.01
--max-delay 0.25 --graceful-signal TERM --shutdown-timeout 30``.

Importing this module builds the app once per process, which registers every
job on ``huey``. Each job then runs in its own app context, so it can use
``current_app``, the config and any extension.
"""

import os

from flask.cli import load_dotenv
from flask.helpers import get_load_dotenv

from . import create_app
from .logs import configure_consumer_logging

# Read .env like `flask run` does (the environment wins; FLASK_SKIP_DOTENV=1
# turns it off), so that a REDIS_URL set there reaches web and worker alike.
if get_load_dotenv() and os.path.isfile(".env"):
    load_dotenv(".env", load_defaults=False)

app = create_app()
huey = app.extensions["huey"]

# Text logs: huey_consumer's lines keep its own handler; JSON: they go
# through the app's JSON handler (see logs.configure_consumer_logging).
configure_consumer_logging(app.config["LOG_FORMAT"])

if __name__ == "__main__":
    from .consumer import main

    raise SystemExit(main(huey, app.config))

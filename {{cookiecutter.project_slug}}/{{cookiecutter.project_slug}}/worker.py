"""The worker's entry point: ``huey_consumer {{ cookiecutter.project_slug }}.worker.huey``.

Importing this module builds the app once per process, which registers every
job on ``huey``. Each job then runs in its own app context, so it can use
``current_app``, the config and any extension. Recommended flags::

    huey_consumer {{ cookiecutter.project_slug }}.worker.huey --worker-type process --workers 2 \\
        --delay 0.01 --max-delay 0.25 --graceful-signal TERM --shutdown-timeout 30

``--delay``/``--max-delay`` keep the SQLite queue's polling short, so a job
starts within a quarter of a second (Redis wakes workers at once anyway).
"""

from . import create_app
from .logs import configure_consumer_logging

app = create_app()
huey = app.extensions["huey"]

# Text logs: huey_consumer's lines keep its own handler; JSON: they go
# through the app's JSON handler (see logs.configure_consumer_logging).
configure_consumer_logging(app.config["LOG_FORMAT"])

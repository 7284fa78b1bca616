"""The worker's entry point: ``huey_consumer {{ cookiecutter.project_slug }}.worker.huey``.

Importing this module builds the app once per process, which registers every
job on ``huey``. Each job then runs in its own app context, so it can use
``current_app``, the config and any extension. Recommended flags::

    huey_consumer {{ cookiecutter.project_slug }}.worker.huey --worker-type process --workers 2 \\
        --delay 0.01 --max-delay 0.25 --graceful-signal TERM --shutdown-timeout 30

``--delay``/``--max-delay`` keep the SQLite queue's polling short, so a job
starts within a quarter of a second (Redis wakes workers at once anyway).
"""

import logging

from . import create_app

app = create_app()
huey = app.extensions["huey"]

# huey_consumer gives the "huey" logger a handler of its own; without this,
# each of its lines would also reach ours and be printed twice.
logging.getLogger("huey").propagate = False

"""What the project's ``worker.py`` entry point runs.

``load_worker_app`` reads ``.env`` like ``flask run`` does, builds the app
(which registers every job on its Huey) and sets up the consumer's logging.
``run_worker`` runs Huey's consumer with the kit's defaults (``consumer.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from flask import Flask
from flask.cli import load_dotenv
from flask.helpers import get_load_dotenv

from .logs import configure_consumer_logging
from .state import kit_state


def load_worker_app(create_app: Callable[[], Flask]) -> Flask:
    """Build the app for a worker process, reading ``.env`` first."""
    # The environment wins over .env; FLASK_SKIP_DOTENV=1 turns it off. So a
    # REDIS_URL set there reaches web and worker alike.
    if get_load_dotenv() and os.path.isfile(".env"):
        load_dotenv(".env", load_defaults=False)
    app = create_app()
    # Text logs: huey_consumer's lines keep its own handler; JSON: they go
    # through the app's JSON handler (see logs.configure_consumer_logging).
    configure_consumer_logging(app.config["LOG_FORMAT"])
    return app


def run_worker(app: Flask, argv: list[str] | None = None) -> int:
    """Run the consumer on ``app``'s queue until it is told to stop."""
    from .consumer import main  # only the worker process needs the consumer

    return main(kit_state(app).huey, app.config, argv)

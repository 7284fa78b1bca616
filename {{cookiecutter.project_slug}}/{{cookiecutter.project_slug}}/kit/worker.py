"""What the project's ``worker.py`` entry point runs.

``load_worker_app`` builds the app (which reads ``.env`` like ``flask run``
does, and registers every job on its Huey) and sets up the consumer's logging.
``run_worker`` runs Huey's consumer with the kit's defaults (``consumer.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from .logs import configure_consumer_logging
from .state import kit_state


def load_worker_app(create_app: Callable[[], Flask]) -> Flask:
    """Build the app for a worker process (plain ``huey_consumer`` too)."""
    # The factory reads .env (kit/environment.py), as in the web app.
    app = create_app()
    # huey_consumer's own lines go through the app's handler, with its layout.
    configure_consumer_logging()
    return app


def run_worker(app: Flask, argv: list[str] | None = None) -> int:
    """Run the consumer on ``app``'s queue until it is told to stop."""
    from .consumer import main  # only the worker process needs the consumer

    return main(kit_state(app).huey, app.config, argv)

"""``JobKit``: the Flask extension that wires jobs into an app.

Follows Flask's extension pattern: create it once, then ``init_app(app)``
in the app factory. Nothing per app is kept on the ``JobKit`` object; all
of it lives in ``app.extensions["jobkit"]`` (see ``state.py``).
"""

from __future__ import annotations

import logging

from flask import Flask
from huey import Huey

from . import cli, front, health, jobs_api, metrics, monitor, openapi, queue, settings
from .logs import configure_logging, init_request_ids
from .state import kit_state

log = logging.getLogger(__name__)


class JobKit:
    """Background jobs for a Flask app: Huey queue, HTTP API, CLI, monitor.

    ``jobs_package`` is the dotted name of the package whose modules define
    the jobs; by default the app's own ``<import name>.jobs``.
    """

    def __init__(self, app: Flask | None = None, *, jobs_package: str | None = None):
        self.jobs_package = jobs_package
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Apply the kit's defaults, build the queue, register the blueprints."""
        for name in dir(settings):
            if name.isupper():
                app.config.setdefault(name, getattr(settings, name))
        # Flask defines these itself, as None (no limit, no SameSite): the
        # kit's safer defaults apply unless the app set a value of its own.
        for name in ("MAX_CONTENT_LENGTH", "SESSION_COOKIE_SAMESITE"):
            if app.config.get(name) is None:
                app.config[name] = getattr(settings, name)
        app.config.setdefault("QUEUE_NAME", app.import_name)
        app.config.setdefault("JOBS_PACKAGE", self.jobs_package or f"{app.import_name}.jobs")

        configure_logging(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
        init_request_ids(app)
        queue.init_app(app)
        # Each process's first line says which queue it uses: a web app and a
        # worker that read different settings show it at once.
        name = app.config["QUEUE_NAME"]
        location = queue.queue_location(app.config, app.instance_path)
        log.info("queue %s on %s", name, location, extra={"queue_name": name, "backend": location})

        app.register_blueprint(jobs_api.bp)
        app.register_blueprint(health.bp)
        app.register_blueprint(cli.bp)
        app.register_blueprint(metrics.bp)
        app.register_blueprint(monitor.bp)
        app.register_blueprint(openapi.bp)
        # GET /, unless the app has a / of its own (see front.py).
        front.init_app(app)

    @staticmethod
    def huey(app: Flask) -> Huey:
        """The app's Huey instance: what ``huey_consumer`` is pointed at."""
        return kit_state(app).huey

"""{{ cookiecutter.project_name }}: the app factory that ties the web app and its job queue."""

import os
from typing import Any

from flask import Flask

from . import api, cli, config, health, metrics, monitor, queue
from .logs import configure_logging, init_request_ids


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Create the Flask app: defaults, then the environment, then ``test_config``."""
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_object(config)
    app.config.from_prefixed_env()
    if os.environ.get("REDIS_URL"):
        app.config["REDIS_URL"] = os.environ["REDIS_URL"]
    if test_config is not None:
        app.config.update(test_config)

    configure_logging(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
    init_request_ids(app)
    queue.init_app(app)

    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(cli.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(monitor.bp)
    return app

"""{{ cookiecutter.project_name }}: the app factory.

This package is yours: the factory below, your settings (``config.py``),
your jobs (``jobs/``) and your own views (``views.py``). The job machinery
is the ``kit`` subpackage, a Flask extension you use but do not edit.
"""

from typing import Any

from flask import Flask

from . import config, views
from .kit import JobKit, load_environment

# Flask's extension pattern: one JobKit, bound to each app in the factory.
jobkit = JobKit()


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Create the Flask app: your config, then the environment, then ``test_config``."""
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_object(config)
    # .env (as `flask run` reads it), then the environment, which wins:
    # FLASK_<NAME> and REDIS_URL. Every process builds its app here, so web,
    # worker and `flask` commands all read the same settings.
    load_environment(app)
    if test_config is not None:
        app.config.update(test_config)

    # The queue, POST /jobs/<name>, /jobs/openapi.json, `flask jobs`, /healthz,
    # /metrics, /monitor, and a page at / unless your views define one.
    jobkit.init_app(app)
    app.register_blueprint(views.bp)
    return app

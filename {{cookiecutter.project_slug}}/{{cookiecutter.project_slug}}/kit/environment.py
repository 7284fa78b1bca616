"""Settings from the environment, read the same way by every process.

``flask run`` reads ``.env`` before it builds the app; gunicorn,
``huey_consumer`` and ``python -m <package>.worker`` would not, and a web app
and a worker could then run on different queues without a word. So the app
factory calls :func:`load_environment` (and ``gunicorn.conf.py`` does what
:func:`read_dotenv` does, for its own settings): every entry point reads
``.env`` in the same way, and the real environment always wins over it.
"""

from __future__ import annotations

import os

import dotenv
from flask import Flask
from flask.helpers import get_load_dotenv


def read_dotenv() -> None:
    """Copy ``.env``'s variables into ``os.environ``, as ``flask run`` does.

    The file is looked for in the working directory and then its parents,
    like Flask's CLI. A variable already set in the environment keeps its
    value. ``FLASK_SKIP_DOTENV=1`` turns this off (tests, containers).
    ``.flaskenv`` is not read: it is for ``flask`` commands only.
    """
    if not get_load_dotenv():
        return
    path = dotenv.find_dotenv(".env", usecwd=True)
    if path:
        dotenv.load_dotenv(path, override=False, encoding="utf-8")


def load_environment(app: Flask) -> None:
    """Read ``.env``, then ``FLASK_<NAME>`` and ``REDIS_URL`` into ``app.config``.

    ``FLASK_<NAME>`` sets ``<NAME>`` (values parsed as JSON when they can be);
    ``REDIS_URL`` is read as is, the name every hosting platform uses.
    """
    read_dotenv()
    app.config.from_prefixed_env()
    if os.environ.get("REDIS_URL"):
        app.config["REDIS_URL"] = os.environ["REDIS_URL"]

"""``/monitor``: watch jobs live, read their history, re-run the failed ones.

Server-rendered pages (Jinja templates in ``templates/monitor``) plus one
small script (``static/monitor.js``) that refreshes the live parts
of a page by fetching them again (``?partial=1``), with a pause button. No
build step, no CDN: it works offline. ``/monitor/api/...`` serves the same
data as JSON for scripts and deploy hooks.

Security is on by default; see ``security.py`` and ``blueprint.py``, and
``sessions.py`` (logins that end), ``throttle.py`` and ``stores.py`` (failed
sign-ins and logouts, shared through the queue's backend). Pages
are in ``views.py`` and ``operations.py``, the JSON API in ``api.py``,
formatting helpers in ``present.py``.
"""

from . import api, operations, views  # noqa: F401 - importing them registers their routes
from .blueprint import bp

__all__ = ["bp"]

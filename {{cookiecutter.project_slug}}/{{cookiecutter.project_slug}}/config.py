"""Your settings. Every one can be overridden from the environment.

``FLASK_<NAME>`` sets ``<NAME>`` (``FLASK_MAX_CONTENT_LENGTH=131072``); values
are parsed as JSON when they can be. ``REDIS_URL`` is also read as is, the
name every hosting platform uses. Secrets (``FLASK_SECRET_KEY``, the monitor's
password) come only from the environment: never write them here.

The job kit's settings (timeouts, leases, history retention, the monitor...)
have defaults in ``kit/settings.py``; set any of them here or in the
environment to change it.
"""

# The app's name for people: the page at / and the API's OpenAPI title.
APP_NAME = {{ cookiecutter.project_name | tojson }}

# The queue's name: Redis keys and SQLite rows are namespaced by it.
QUEUE_NAME = "{{ cookiecutter.project_slug }}"

# Unset: Huey's SQLite storage in the instance folder (no server needed).
# Set (redis://host:6379/0): Redis, which lets many machines share the work.
REDIS_URL = None

# The named queues a worker serves, with weights: each take picks a non-empty
# queue with a chance proportional to its weight (docs/jobs.md, "Named queues").
# A job waits in the queue its @job names; `--queues` overrides this per worker.
WORKER_QUEUES = {"default": 1}

# Seconds a job may run before it is stopped, for jobs that set no timeout.
JOB_TIMEOUT = 300

# Largest request body accepted, in bytes; larger ones get 413.
MAX_CONTENT_LENGTH = 64 * 1024

# Browsers send the session cookie only to requests from this site's own pages.
SESSION_COOKIE_SAMESITE = "Lax"

LOG_LEVEL = "INFO"
# "text" for people, "json" (one object per line) for log collectors.
LOG_FORMAT = "text"

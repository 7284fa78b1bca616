"""Default settings. Every one can be overridden from the environment.

``FLASK_<NAME>`` sets ``<NAME>`` (``FLASK_MAX_CONTENT_LENGTH=131072``); values
are parsed as JSON when they can be. ``REDIS_URL`` is also read as is, the
name every hosting platform uses. Secrets (``FLASK_SECRET_KEY``) come only
from the environment: never write them here.
"""

# The queue's name: Redis keys and SQLite rows are namespaced by it.
QUEUE_NAME = "{{ cookiecutter.project_slug }}"

# Unset: Huey's SQLite storage in the instance folder (no server needed).
# Set (redis://host:6379/0): Redis, which lets many machines share the work.
REDIS_URL = None

# Where the SQLite queue lives when REDIS_URL is unset. None means
# ``<instance folder>/queue.sqlite3``; the web app and the worker must agree.
SQLITE_PATH = None

# Seconds to wait for Redis before answering 503: short, so an outage is
# reported at once instead of piling up stuck requests.
REDIS_CONNECT_TIMEOUT = 1.0
REDIS_SOCKET_TIMEOUT = 5.0

# Run jobs in the calling process instead of queueing them (tests only).
QUEUE_IMMEDIATE = False

# Largest request body accepted, in bytes; larger ones get 413.
MAX_CONTENT_LENGTH = 64 * 1024

LOG_LEVEL = "INFO"
# "text" for people, "json" (one object per line, with job name, job id,
# attempt and request id) for log collectors.
LOG_FORMAT = "text"

# /metrics (Prometheus). Closed until one of these is set: a bearer token
# (FLASK_METRICS_TOKEN), or the monitor's user (MONITOR_USERNAME and
# MONITOR_PASSWORD) over HTTP Basic.
METRICS_TOKEN = None
# Each process writes its counts to the queue's backend this often (seconds).
METRICS_FLUSH_INTERVAL = 1.0
# A worker whose last heartbeat is older than this (seconds) is not alive.
METRICS_WORKER_TTL = 15.0
# Upper bounds (seconds) of the job duration histogram's buckets.
METRICS_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]

"""The kit's default settings.

``JobKit.init_app`` copies each of these into ``app.config`` unless the app
already has a value, so the project's own ``config.py``, ``FLASK_<NAME>``
environment variables and a factory's ``test_config`` all override them.
Set values in your own config, not here: this file belongs to the kit and is
replaced when the kit is updated.
"""

# Unset: Huey's SQLite storage in the instance folder (no server needed).
# Set (redis://host:6379/0): Redis, which lets many machines share the work.
REDIS_URL = None

# Where the SQLite queue lives when REDIS_URL is unset. None means
# ``<instance folder>/queue.sqlite3``; the web app and the worker must agree.
SQLITE_PATH = None

# Modules to import jobs from besides the project's jobs package, as dotted
# names (FLASK_JOB_MODULES='["billing.jobs"]'); web and worker must agree.
JOB_MODULES: list[str] = []

# The app's name for people: the front door (GET /) and the OpenAPI
# document's title. None means the Flask app's import name.
APP_NAME = None

LOG_LEVEL = "INFO"
# "text" for people, "json" (one object per line, with job name, job id,
# attempt and request id) for log collectors.
LOG_FORMAT = "text"

# Largest request body accepted, in bytes; larger ones get 413.
MAX_CONTENT_LENGTH = 64 * 1024

# Browsers send the monitor's session cookie only to requests from this
# site's own pages.
SESSION_COOKIE_SAMESITE = "Lax"

# Flask's own: the host names this app answers to. The Host header a client
# sends goes into every absolute URL the app writes (the jobs API's
# status_url): in production set it to your public names, and any other Host
# is refused with 400 (FLASK_TRUSTED_HOSTS='["jobs.example.com"]'; a leading
# "." allows subdomains). Include what your load balancer's health checks
# send. None (the default) trusts any Host, which suits a laptop.
TRUSTED_HOSTS = None

# The jobs HTTP API's keys (api_keys.py): a JSON object of key name ->
# {"key": "<secret, 16+ characters>", "jobs": ["<job name>", ... or "*"]},
# sent as "Authorization: Bearer <secret>". A secret: set it only in the
# environment (FLASK_JOBS_API_KEYS). With none set the API refuses everyone
# (503), unless the app runs in debug mode or JOBS_API_OPEN is true: then
# anyone may dispatch, and GET /jobs/<id> shows only its public fields.
JOBS_API_KEYS = None
JOBS_API_OPEN = False

# Monitor credentials; with none set the monitor refuses everyone.
MONITOR_USERNAME = None
MONITOR_PASSWORD = None

# Seconds to wait for Redis before answering 503: short, so an outage is
# reported at once instead of piling up stuck requests. A frozen Redis (a hung
# host) accepts connections and never answers: a request then waits
# REDIS_SOCKET_TIMEOUT once; a timeout is not retried, and for a second after
# it every call fails at once, until one call finds Redis answering again.
REDIS_CONNECT_TIMEOUT = 1.0
REDIS_SOCKET_TIMEOUT = 1.0
# The same, in worker processes (those that start a consumer). Longer: a
# slow reply costs a worker nothing but time. A worker's take waits for a job
# for a second, or half its socket timeout if that is less.
REDIS_WORKER_SOCKET_TIMEOUT = 5.0

# -- Redis Sentinel (docs/scaling.md) ----------------------------------------
# Set REDIS_SENTINELS ("host1:26379,host2:26379,host3:26379") to find the
# Redis master through Sentinel instead of REDIS_URL's address: web and
# workers follow a failover without a restart (dispatch answers 503 while it
# lasts). REDIS_URL, if set too, gives the master's password and database.
# The sentinels' own credentials are secrets: set them in the environment.
REDIS_SENTINELS = None
REDIS_SENTINEL_MASTER = "mymaster"
REDIS_SENTINEL_USERNAME = None
REDIS_SENTINEL_PASSWORD = None
# Replicas a new job must reach before a dispatch answers 202 (Redis WAIT),
# so that an accepted job survives the master's death; 0: do not wait. If
# they do not answer within REDIS_WAIT_TIMEOUT_MS (below the socket timeout),
# the dispatch answers 503 "not_replicated": the job is on the master, and
# sending it again with the same Idempotency-Key finds it.
REDIS_WAIT_REPLICAS = 0
REDIS_WAIT_TIMEOUT_MS = 500

# A dispatch sent again with the same Idempotency-Key header (or
# idempotency_key= in enqueue/dispatch) within this many seconds of the first
# queues nothing and gets the first job back; with another payload, or for
# another job, it is refused (422). After the window the key is free again.
# Keys are kept in the queue's backend for the window: one small entry per key.
IDEMPOTENCY_WINDOW = 24 * 3600

# Named queues (kit/queues.py). A job waits in the queue its @job names
# ("default" unless it says otherwise). A worker serves WORKER_QUEUES, a JSON
# object of queue name -> weight ({"critical": 6, "default": 3, "low": 1}, or
# `--queues critical=6,default=3,low=1` on the worker): each take picks a
# non-empty queue with a probability proportional to its weight. With
# STRICT_PRIORITY the heaviest non-empty queue always goes first, and a
# worker takes no job ahead (WORKER_PREFETCH): each one is chosen as it starts.
WORKER_QUEUES = {"default": 1}
STRICT_PRIORITY = False

# Delayed dispatch (kit/delays.py): enqueue(..., delay=600) or eta=<aware
# datetime>, POST /jobs/<name>?delay=600 or ?at=<ISO 8601 with offset>. A
# job may be scheduled at most MAX_SCHEDULE_DELAY seconds ahead; a time up
# to SCHEDULE_PAST_TOLERANCE seconds past runs now, an older one is refused.
# Workers move due jobs to their queue every SCHEDULE_POLL seconds.
MAX_SCHEDULE_DELAY = 30 * 24 * 3600
SCHEDULE_PAST_TOLERANCE = 5.0
SCHEDULE_POLL = 0.25

# Run jobs in the calling process instead of queueing them (tests only).
QUEUE_IMMEDIATE = False

# Seconds a job may run before it is stopped and counted as a failed
# attempt ("timed out"), for jobs that set no timeout of their own. Enforced
# with process workers, the default of the kit's worker (`python -m <package>.worker`).
JOB_TIMEOUT = 300

# At-least-once delivery (leases/). A worker renews its registration every
# LEASE_HEARTBEAT seconds; one silent for LEASE_TIMEOUT seconds is dead, and
# the next reaper pass (every REAPER_INTERVAL seconds, in some worker) puts
# its jobs back at the front of the queue, their retries untouched. Worst
# case from a worker's death to its jobs being queued again:
# LEASE_TIMEOUT + REAPER_INTERVAL.
LEASES_ENABLED = True
LEASE_TIMEOUT = 30.0
LEASE_HEARTBEAT = 5.0
REAPER_INTERVAL = 10.0
# A job whose worker died this many times is parked as failed rather than
# queued again: it is probably what kills them (a poison pill).
MAX_RECOVERIES = 3
# On Redis, a worker takes up to this many jobs per round trip when more are
# queued (never more than half of them) and runs them in turn. Jobs it has not
# started go back to the queue when it stops, or after a second behind a
# long job; 1 takes one job at a time.
WORKER_PREFETCH = 8

# Defaults of the kit's worker, `python -m <package>.worker` (its flags override them).
# Process workers, so that job timeouts are enforced; SIGTERM and SIGINT
# let running jobs finish for WORKER_SHUTDOWN_TIMEOUT seconds, then put
# back on the queue what is still running.
WORKER_TYPE = "process"
WORKERS = 2
WORKER_SHUTDOWN_TIMEOUT = 30.0

# /metrics (Prometheus). Closed until one of these is set: a bearer token
# (FLASK_METRICS_TOKEN), or the monitor's user (MONITOR_USERNAME and
# MONITOR_PASSWORD) over HTTP Basic.
METRICS_TOKEN = None
# Each process writes its counts to the queue's backend this often (seconds).
METRICS_FLUSH_INTERVAL = 1.0
# A worker whose last heartbeat is older than this (seconds) is not alive.
METRICS_WORKER_TTL = 15.0
# Upper bounds (seconds) of the job duration histogram's buckets. When a job's
# timeout (or JOB_TIMEOUT) is longer than the last one, that timeout is added
# as a bucket too, so the histogram tells a long run from one that timed out.
METRICS_DURATION_BUCKETS = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600,
]  # fmt: skip
# The first part of every series' name (<namespace>_jobs_completed_total), so
# that they do not collide with other exporters' jobs_* series. None means the
# app's package name (the project's slug); "" drops the prefix.
METRICS_NAMESPACE = None

# -- Job history (what /monitor and GET /jobs/<id> show) ---------------------
# Finished records are kept until they are older than MAX_AGE seconds or
# beyond the newest MAX_COUNT of their status, whichever comes first. Each
# new record removes up to two that are past a limit, so there is no sweeper
# to run. Failures are kept longer: they are what you come back for.
HISTORY_COMPLETED_MAX_AGE = 7 * 24 * 3600
HISTORY_COMPLETED_MAX_COUNT = 100_000
HISTORY_FAILED_MAX_AGE = 30 * 24 * 3600
HISTORY_FAILED_MAX_COUNT = 100_000
# Throughput counters per job name: per minute (the overview's chart) and
# per hour (its per-job table), kept this many seconds.
HISTORY_MINUTE_ROLLUPS_AGE = 2 * 24 * 3600
HISTORY_HOUR_ROLLUPS_AGE = 30 * 24 * 3600
# How much of a job's return value and of a traceback is stored (characters).
HISTORY_RESULT_PREVIEW_CHARS = 2000
HISTORY_TRACEBACK_CHARS = 10_000
# A worker writes its heartbeat this often (seconds); one silent for
# WORKER_DEAD_AFTER seconds shows as dead.
HISTORY_HEARTBEAT_SECONDS = 5.0
HISTORY_WORKER_DEAD_AFTER = 15.0
# A job still running after this many seconds is shown as running. Shorter
# jobs are written once, when they end: a start and an end in one write
# instead of two, which is most of what history costs a busy worker.
HISTORY_RUNNING_PUBLISH_DELAY = 0.25

# -- Job controls: progress, logs, cancel, pause, audit (controls/) ----------
# Running jobs' progress and log lines are written (and cancel requests read)
# at most this often, in seconds: one round trip per worker process.
JOB_PROGRESS_INTERVAL = 0.5
# A job's log lines are kept with its record (same retention): the newest
# ones within both limits. Records below JOB_LOGS_LEVEL are not kept.
JOB_LOGS_MAX_LINES = 500
JOB_LOGS_MAX_BYTES = 64 * 1024
JOB_LOGS_LEVEL = "INFO"
# Workers look up what is paused at most this often (seconds): a pause or a
# resume takes effect within about this long.
PAUSE_CHECK_INTERVAL = 1.0
# Operator actions kept in the audit log (the oldest go first).
AUDIT_MAX_ENTRIES = 10_000

# -- /monitor ----------------------------------------------------------------
# Let anyone in when no credentials are set, but only while the app runs in
# debug mode (flask run --debug): handy on a laptop, never in production.
MONITOR_OPEN_IN_DEBUG = False
# A login lasts this many hours. It also ends at logout (revoked in the queue's
# backend) and when MONITOR_USERNAME or MONITOR_PASSWORD change. The session
# cookie is Secure on HTTPS requests; Flask's SESSION_COOKIE_SECURE = True
# makes it Secure on every request.
MONITOR_SESSION_HOURS = 8
# An address that gets the credentials wrong this many times within the window
# (seconds), on the login form, over HTTP Basic, on /metrics or with an
# unknown jobs API key, is refused with 429 until the window has passed.
# Counted in the queue's backend, for all web processes together.
MONITOR_LOGIN_ATTEMPTS = 10
MONITOR_LOGIN_WINDOW = 600
# Payload and result keys shown as "[redacted]" (by the monitor, GET /jobs/<id>
# and `flask jobs status`). Compared after Unicode NFKC and casefolding, with
# "_", "-" and other separators dropped: a key is hidden when it contains one
# of these ("api_key", "X-Api-Key", full-width "PassWord"), or, for those under five
# characters, when it has it as a whole word ("userPin", not "shipping";
# "X-Auth", not "author"). See redaction.py.
MONITOR_REDACT_KEYS = [
    "password", "passwd", "pwd", "pass", "passphrase", "secret", "token", "apikey",
    "authorization", "auth", "bearer", "jwt", "otp", "pin", "credential", "signature",
    "cookie", "session", "accesskey", "privatekey", "dsn", "databaseurl",
    "connectionstring", "creditcard", "cardnumber", "cvv", "iban", "ssn",
]  # fmt: skip
# Live refresh: the default interval and the bounds any page request is held to.
MONITOR_REFRESH_SECONDS = 5
MONITOR_REFRESH_MIN = 1
MONITOR_REFRESH_MAX = 60
# Rows per list page (a page may ask for up to 200).
MONITOR_PAGE_SIZE = 50
# Searching failures by error text reads at most this many records per page.
MONITOR_SEARCH_SCAN_LIMIT = 10_000
# "Retry all matching" queues at most this many jobs per click.
MONITOR_BULK_LIMIT = 1000

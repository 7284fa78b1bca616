"""What the history store records, independent of where it is stored.

A job's life is a series of *changes*: each one may move the job to a new
status, set some fields on its record, append events to its timeline and
bump throughput counters. Both backends (Redis and SQLite) apply a
:class:`Change` in a single round trip, so the rules about *what* changes
live here, once, and the backends only decide *how* to write it.
"""

import functools
import json
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..backends import sentinel
from ..portability import after_fork_in_child

# Every status a record can have. A job is in exactly one at a time, and each
# status has its own time-sorted index, so listing any of them is O(page).
QUEUED = "queued"
SCHEDULED = "scheduled"  # waiting for its time (a delayed retry, an ETA)
RUNNING = "running"
RETRYING = "retrying"  # an attempt failed; Huey is about to queue the next one
COMPLETE = "complete"
FAILED = "failed"  # failed for good: out of retries, a PermanentError, a timeout...
RETRIED = "retried"  # failed, then re-run from the monitor as a new job
REVOKED = "revoked"
EXPIRED = "expired"
CANCELLED = "cancelled"

STATUSES = (
    QUEUED,
    SCHEDULED,
    RUNNING,
    RETRYING,
    COMPLETE,
    FAILED,
    RETRIED,
    REVOKED,
    EXPIRED,
    CANCELLED,
)
# Statuses a job can still leave on its own. The others are final, and only
# final records are ever pruned by retention.
ACTIVE = frozenset({QUEUED, SCHEDULED, RUNNING, RETRYING})
# Final statuses kept as long as failures (they are what operators dig into).
KEPT_LONGER = frozenset({FAILED, RETRIED})
# Oldest-first for the statuses that form a queue, newest-first otherwise.
ASCENDING = frozenset({QUEUED, SCHEDULED, RUNNING, RETRYING})
# Statuses that end an attempt: their duration can be derived from started_at.
FINISHING = frozenset({COMPLETE, FAILED, RETRYING})

# Upper bounds, in milliseconds, of the duration histogram's buckets (the
# last one is open-ended). Percentiles read from it are approximate: p95
# "<= 200 ms" means the 95th percentile fell in the 100-200 ms bucket.
DURATION_BUCKETS_MS = (
    1, 2, 5, 10, 20, 50, 100, 200, 500,
    1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 300_000, 900_000, 3_600_000,
)  # fmt: skip

# The fields of a job's record, as ``History.get`` returns them.
RECORD_FIELDS = (
    "id",
    "name",
    "queue",
    "status",
    "payload",
    "result",
    "error",
    "enqueued_at",
    "state_at",
    "started_at",
    "finished_at",
    "duration",
    "eta",
    "attempt",
    "worker",
    "retry_of",
    "retried_by",
    "recovered",
    "api_key_name",  # the HTTP API key that queued the job, by name
)

# Name used in the rollups for "all jobs together".
ALL_JOBS = "*"


@dataclass(frozen=True)
class Retention:
    """How long final records are kept: whichever limit is hit first."""

    max_age: float  # seconds
    max_count: int


@dataclass(frozen=True)
class Settings:
    """The store's knobs, read from the app config (defaults in ``settings.py``)."""

    completed: Retention = Retention(7 * 86400, 100_000)
    failed: Retention = Retention(30 * 86400, 100_000)
    minute_rollups_age: float = 2 * 86400
    hour_rollups_age: float = 30 * 86400
    result_preview_chars: int = 2000
    traceback_chars: int = 10_000
    events_max_bytes: int = 64 * 1024
    heartbeat_seconds: float = 5.0
    worker_dead_after: float = 15.0
    worker_forget_after: float = 3600.0
    running_publish_delay: float = 0.25
    # Redis only: replicas a new job must reach before a dispatch answers,
    # and how long to wait for them (REDIS_WAIT_REPLICAS, backends/sentinel.py).
    wait_replicas: int = 0
    wait_timeout_ms: int = 0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Settings":
        def get(key: str, default: Any) -> Any:
            value = config.get(key)
            return default if value is None else value

        d = cls()
        wait_replicas, wait_timeout_ms = sentinel.wait_settings(config)
        return cls(
            completed=Retention(
                float(get("HISTORY_COMPLETED_MAX_AGE", d.completed.max_age)),
                int(get("HISTORY_COMPLETED_MAX_COUNT", d.completed.max_count)),
            ),
            failed=Retention(
                float(get("HISTORY_FAILED_MAX_AGE", d.failed.max_age)),
                int(get("HISTORY_FAILED_MAX_COUNT", d.failed.max_count)),
            ),
            minute_rollups_age=float(get("HISTORY_MINUTE_ROLLUPS_AGE", d.minute_rollups_age)),
            hour_rollups_age=float(get("HISTORY_HOUR_ROLLUPS_AGE", d.hour_rollups_age)),
            result_preview_chars=int(get("HISTORY_RESULT_PREVIEW_CHARS", d.result_preview_chars)),
            traceback_chars=int(get("HISTORY_TRACEBACK_CHARS", d.traceback_chars)),
            events_max_bytes=int(get("HISTORY_EVENTS_MAX_BYTES", d.events_max_bytes)),
            heartbeat_seconds=float(get("HISTORY_HEARTBEAT_SECONDS", d.heartbeat_seconds)),
            worker_dead_after=float(get("HISTORY_WORKER_DEAD_AFTER", d.worker_dead_after)),
            running_publish_delay=float(
                get("HISTORY_RUNNING_PUBLISH_DELAY", d.running_publish_delay)
            ),
            wait_replicas=wait_replicas,
            wait_timeout_ms=wait_timeout_ms,
        )

    def retention(self, status: str) -> Retention | None:
        """The limits for records in ``status``; None for active statuses."""
        if status in ACTIVE:
            return None
        return self.failed if status in KEPT_LONGER else self.completed


@dataclass
class Change:
    """One step in a job's life, written atomically by a backend.

    ``fields`` are set on the record (None deletes the field); ``create``
    fields are set only when the record does not exist yet (a job queued by
    some path that bypassed the kit's enqueue, such as a Huey pipeline).
    """

    job_id: str
    name: str
    at: float
    status: str | None = None
    score: float | None = None  # position in the status index; defaults to ``at``
    fields: dict[str, Any] = field(default_factory=dict)
    create: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    # "always": this change starts a new attempt; "if_queued": only when the
    # record still says queued (a start that was never written down).
    new_attempt: str = ""
    # Apply only if the record is currently in one of these statuses.
    only_from: tuple[str, ...] = ()
    # Throughput counters, bumped in this minute's and this hour's buckets.
    counters: dict[str, int] = field(default_factory=dict)
    # Duration in ms for the per-name histogram (hour buckets), if known.
    duration_ms: float | None = None
    count_recovered: bool = False
    delete: bool = False  # remove the record instead

    @property
    def index_score(self) -> float:
        return self.at if self.score is None else self.score


def now() -> float:
    return time.time()


@functools.cache
def worker_id() -> str:
    """This process's identity in records and heartbeats: ``host:pid``.

    Asked for on every job's start: kept, and forgotten in a forked child.
    """
    return f"{socket.gethostname()}:{os.getpid()}"


after_fork_in_child(worker_id.cache_clear)


# Built once: json.dumps() with options builds a new encoder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


def _one_shot(encoder: json.JSONEncoder) -> Callable[[Any], str]:
    """``encoder.encode``, minus the C encoder that json builds anew on each call.

    Building it costs more than encoding a timeline line, and a worker
    encodes a few per job. The same C function json uses, with the same
    options, so the text is the same; without json's check for circular
    references (a record's values are trees: a cycle raises RecursionError).
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # not CPython's json: its own way
        return encoder.encode
    strings = json.encoder.encode_basestring
    if encoder.ensure_ascii:
        strings = json.encoder.encode_basestring_ascii
    c_encode = make(
        None,
        encoder.default,
        strings,
        None,
        encoder.key_separator,
        encoder.item_separator,
        False,
        False,
        True,
    )
    return lambda value: "".join(c_encode(value, 0))


_encode = _one_shot(_ENCODER)

# ASCII-only JSON (a non-ASCII character as a \u escape), compact: for text
# that must survive any byte handling, such as a script's arguments.
to_ascii_json = _one_shot(json.JSONEncoder(separators=(",", ":")))


def to_json(value: Any) -> str:
    return _encode(value)


def event(kind: str, at: float, **detail: Any) -> dict[str, Any]:
    """A timeline entry. Empty details are left out to keep records small."""
    entry = {"kind": kind, "at": round(at, 6)}
    entry.update({key: value for key, value in detail.items() if value not in (None, "")})
    return entry


def describe_error(exc: BaseException | None, kind: str, limit: int) -> dict[str, str]:
    """Type, message and traceback of a failure, for the record and timeline."""
    if exc is None:
        return {"type": kind, "message": MESSAGES.get(kind, kind), "traceback": ""}
    text = "".join(traceback.format_exception(exc))
    if len(text) > limit:
        # The end of a traceback says where it failed: keep that part.
        text = "... (traceback cut) ...\n" + text[-limit:]
    return {"type": type(exc).__name__, "message": str(exc)[:1000], "traceback": text}


MESSAGES = {
    "TaskTimeout": "the job ran past its timeout and was stopped",
    "Interrupted": "the worker shut down while the job was running",
    "TaskLocked": "the job's lock was held by another run",
    "RateLimited": "the job hit its rate limit",
    "Cancelled": "the job was cancelled",
}


def preview(value: Any, limit: int) -> str:
    """The JSON text of a job result, cut to ``limit`` characters."""
    text = to_json(value)
    if len(text) > limit:
        return to_json(text[:limit] + "...")  # still valid JSON: a string
    return text


def duration_bucket(ms: float) -> int:
    """Index of the histogram bucket holding a duration of ``ms`` milliseconds."""
    for index, upper in enumerate(DURATION_BUCKETS_MS):
        if ms <= upper:
            return index
    return len(DURATION_BUCKETS_MS)


def rollup_fields(change: Change) -> tuple[dict[str, int], dict[str, int]]:
    """The counters a change bumps in its minute bucket and hour bucket."""
    per_minute: dict[str, int] = {}
    for metric, amount in change.counters.items():
        per_minute[f"{change.name}|{metric}"] = amount
        per_minute[f"{ALL_JOBS}|{metric}"] = amount
    per_hour = dict(per_minute)
    if change.duration_ms is not None:
        per_hour[f"{change.name}|d{duration_bucket(change.duration_ms)}"] = 1
    return per_minute, per_hour


def percentile_ms(histogram: Mapping[int, int], fraction: float) -> float | None:
    """Upper bound of the bucket holding the ``fraction`` percentile, or None."""
    total = sum(histogram.values())
    if not total:
        return None
    wanted = fraction * total
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= wanted:
            if index < len(DURATION_BUCKETS_MS):
                return float(DURATION_BUCKETS_MS[index])
            return float("inf")
    return float("inf")


def event_lines(events: Iterable[Mapping[str, Any]]) -> str:
    """Timeline events as stored: one JSON line each (``parse_events`` reads them)."""
    return "".join(to_json(entry) + "\n" for entry in events)


def parse_events(text: str | None) -> list[dict[str, Any]]:
    """Timeline events are stored as JSON lines, oldest first."""
    if not text:
        return []
    return [json.loads(line) for line in text.splitlines() if line]


def api_key_name(events: Iterable[Mapping[str, Any]]) -> str | None:
    """The name of the HTTP API key that queued the job, if any."""
    return from_dispatch(events, "api_key_name")


def from_dispatch(events: Iterable[Mapping[str, Any]], detail: str) -> Any:
    """A detail of the job's dispatch, kept on its first event ("queued", or
    "scheduled" for a delayed job): the API key's name, the named queue."""
    for entry in events:
        if entry["kind"] in ("queued", "scheduled"):
            return entry.get(detail)
    return None


def attempts(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Group a timeline into attempts: each "started" event opens one."""
    found: list[dict[str, Any]] = []
    for entry in events:
        kind = entry["kind"]
        if kind == "started":
            found.append(
                {
                    "number": len(found) + 1,
                    "started_at": entry["at"],
                    "worker": entry.get("worker"),
                    "outcome": "running",
                    "finished_at": None,
                    "duration": None,
                    "error": None,
                }
            )
        elif found and found[-1]["outcome"] == "running" and kind in ATTEMPT_ENDINGS:
            found[-1].update(
                outcome=ATTEMPT_ENDINGS[kind],
                finished_at=entry["at"],
                duration=entry.get("duration"),
                error=entry.get("error"),
                message=entry.get("message"),
            )
    return found


# Timeline events that end an attempt, and the outcome they mean.
ATTEMPT_ENDINGS = {
    "completed": "complete",
    "failed": "failed",
    "worker_lost": "worker lost",
    "revoked": "revoked",
    "cancelled": "cancelled",
}

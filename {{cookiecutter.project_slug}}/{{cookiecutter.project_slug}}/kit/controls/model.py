"""Shapes and rules shared by both control stores (Redis and SQLite)."""

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# A pause of the whole queue; a job name's pause is "job:<name>", a named
# queue's "queue:<name>".
QUEUE = "queue"
QUEUE_PREFIX = "queue:"


def queue_target(queue: str) -> str:
    """The pause target of one named queue (see kit/queues.py)."""
    return QUEUE_PREFIX + queue


def job_target(name: str) -> str:
    return f"job:{name}"


@dataclass(frozen=True)
class LogLimits:
    """How much of a job's log is kept: the newest lines within both bounds."""

    lines: int = 500
    bytes: int = 64 * 1024
    line_chars: int = 4000  # longer messages (a huge repr) are cut


@dataclass
class Flush:
    """What one write sends for one job: its progress and new log lines.

    With neither, the write only reads the job's cancel request.
    """

    job_id: str
    progress: dict[str, Any] | None = None
    lines: list[str] = field(default_factory=list)
    # Older lines of this batch already dropped in memory (over the limits).
    cut: int = 0


def trim_logs(text: str, lines: int, limits: LogLimits) -> tuple[str, int, int]:
    """Drop the oldest lines of ``text`` beyond the limits.

    ``text`` holds ``lines`` newline-terminated lines. Returns the kept text,
    how many lines it holds and how many were dropped.
    """
    data = text.encode()
    start = cut = 0
    while lines - cut > limits.lines or len(data) - start > limits.bytes:
        newline = data.find(b"\n", start)
        if newline < 0:
            return "", 0, lines
        start = newline + 1
        cut += 1
    return data[start:].decode(), lines - cut, cut


def parse_lines(lines: list[str]) -> list[dict[str, Any]]:
    """Stored log lines, in the order the job wrote them.

    Each attempt runs in one process, which numbers its lines, so sorting by
    (attempt, number) undoes any reordering between two concurrent writers.
    """
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            continue
    parsed.sort(key=lambda entry: (entry.get("attempt") or 0, entry.get("seq") or 0))
    return parsed


def present_progress(progress: Mapping[str, Any] | None, at: float | None = None) -> dict | None:
    """Progress as the API and the monitor show it: with percent and ETA.

    ``eta`` is the estimated number of seconds left, counted from ``at``
    (now), from the rate the job last reported.
    """
    if not progress:
        return None
    at = time.time() if at is None else at
    done, total = progress.get("done"), progress.get("total")
    shown = {
        "done": done,
        "total": total,
        "message": progress.get("message"),
        "updated_at": progress.get("at"),
        "rate": progress.get("rate"),
        "percent": None,
        "eta": None,
    }
    if total:
        shown["percent"] = max(0.0, min(100.0, 100.0 * done / total))
        rate = progress.get("rate")
        if rate and rate > 0 and done < total:
            left = (total - done) / rate - max(0.0, at - (progress.get("at") or at))
            shown["eta"] = max(0.0, left)
        elif done >= total:
            shown["eta"] = 0.0
    return shown

"""Job history: what happened to each job, kept in the queue's own backend.

Huey keeps no record of a job once a worker has taken it, so the kit records
each job's life from Huey's signals: queued in the web process, then
running, complete or failed in the worker. ``GET /jobs/<id>`` reads it.
"""

import json
import os
import socket
import time
import traceback
from typing import Any

from huey import Huey
from huey import signals as S
from huey.api import Task
from huey.constants import EmptyData

# Huey signal → the status a user sees.
STATUS = {
    S.SIGNAL_EXECUTING: "running",
    S.SIGNAL_COMPLETE: "complete",
    S.SIGNAL_ERROR: "failed",
    S.SIGNAL_TIMEOUT: "failed",
    S.SIGNAL_RETRYING: "retrying",
    S.SIGNAL_SCHEDULED: "scheduled",
    S.SIGNAL_REVOKED: "revoked",
    S.SIGNAL_EXPIRED: "expired",
    S.SIGNAL_CANCELED: "cancelled",
    S.SIGNAL_INTERRUPTED: "interrupted",
    S.SIGNAL_LOCKED: "failed",
    S.SIGNAL_RATE_LIMITED: "scheduled",
}

RESULT_PREVIEW_CHARS = 2000


def now() -> float:
    return time.time()


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class History:
    """Stores one JSON record per job in Huey's key/value storage."""

    def __init__(self, huey: Huey):
        self.huey = huey

    def _key(self, job_id: str) -> str:
        return f"job:{job_id}"

    def get(self, job_id: str) -> dict | None:
        raw = self.huey.storage.peek_data(self._key(job_id))
        if raw is EmptyData:
            return None
        return json.loads(raw)

    def _put(self, record: dict) -> None:
        self.huey.storage.put_data(self._key(record["id"]), json.dumps(record).encode())

    def forget(self, job_id: str) -> None:
        self.huey.storage.pop_data(self._key(job_id))

    def job_enqueued(self, task: Task, payload: dict) -> None:
        self._put(
            {
                "id": task.id,
                "name": task.name,
                "status": "queued",
                "payload": payload,
                "enqueued_at": now(),
                "started_at": None,
                "finished_at": None,
                "attempt": 0,
                "worker": None,
                "result": None,
                "error": None,
            }
        )

    def on_signal(self, signal: str, task: Task, exc: BaseException | None = None) -> None:
        status = STATUS.get(signal)
        if status is None:
            return
        record = self.get(task.id) or {"id": task.id, "name": task.name, "attempt": 0}
        record["status"] = status
        if signal == S.SIGNAL_EXECUTING:
            record.update(
                started_at=now(),
                finished_at=None,
                worker=worker_id(),
                attempt=record.get("attempt", 0) + 1,
            )
        elif signal == S.SIGNAL_COMPLETE:
            record.update(finished_at=now(), result=getattr(task, "job_result", None), error=None)
        elif status == "failed":
            record.update(finished_at=now(), error=describe_error(signal, exc))
        self._put(record)


def describe_error(signal: str, exc: BaseException | None) -> dict[str, Any]:
    if signal == S.SIGNAL_TIMEOUT:
        return {"type": "TaskTimeout", "message": "the job ran past its timeout", "traceback": ""}
    if exc is None:
        return {"type": signal, "message": signal, "traceback": ""}
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }

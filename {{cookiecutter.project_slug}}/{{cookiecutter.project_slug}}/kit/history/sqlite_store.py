"""The history store on SQLite: tables in the queue's own database file.

Each write is one transaction on Huey's own connection (``SqliteQueue.db``),
so a job's record and its queue message can be committed together. Tables,
all keyed by the queue name like Huey's:

* ``history_job``: one row per job; ``events`` holds the timeline as JSON
  lines. Two indexes, (status, score) and (status, name, score), make every
  list page an index range read of one page.
* ``history_count``: the number of jobs per (status, job name), kept up to
  date by every write, so counts never scan.
* ``history_rollup``: throughput counters per minute and per hour, per job
  name, with the duration histogram in the hour rows.
* ``history_worker``: the latest heartbeat of each worker process.

In immediate mode (tests) Huey keeps its queue in memory, and so does this
store: the same tables in a private in-memory database.
"""

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ..huey_seam import SqliteQueue
from . import model
from .model import ASCENDING, FINISHING, Change, Settings, rollup_fields

SCHEMA = (
    """create table if not exists history_job (
        queue text not null, id text not null, name text not null,
        status text not null, score real not null, state_at real not null,
        payload text, enqueued_at real, started_at real, finished_at real,
        duration real, attempt integer not null default 0, worker text,
        result text, error text, eta real, retry_of text, retried_by text,
        recovered integer not null default 0, events text not null default '',
        primary key (queue, id))""",
    """create index if not exists history_job_status
        on history_job (queue, status, score, id)""",
    """create index if not exists history_job_status_name
        on history_job (queue, status, name, score, id)""",
    """create table if not exists history_count (
        queue text not null, status text not null, name text not null,
        n integer not null, primary key (queue, status, name))""",
    """create table if not exists history_rollup (
        queue text not null, period text not null, start integer not null,
        field text not null, n integer not null,
        primary key (queue, period, start, field))""",
    """create table if not exists history_worker (
        queue text not null, id text not null, beat_at real not null,
        data text not null, primary key (queue, id))""",
)

# Columns a change may set; anything else is a bug, not user input.
SETTABLE = frozenset(
    {
        "payload",
        "enqueued_at",
        "started_at",
        "finished_at",
        "duration",
        "worker",
        "result",
        "error",
        "eta",
        "retry_of",
        "retried_by",
    }
)
LIST_COLUMNS = (
    "id, name, status, enqueued_at, state_at, started_at, finished_at, duration, "
    "attempt, worker, error, eta, retry_of, retried_by, recovered"
)
ALL_COLUMNS = LIST_COLUMNS + ", payload, result, events, score"

Database = Callable[..., contextlib.AbstractContextManager[sqlite3.Cursor]]


class MemoryDatabase:
    """An in-memory SQLite database with the same ``db()`` as Huey's storage."""

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def db(self, commit: bool = False) -> Iterator[sqlite3.Cursor]:
        with self.lock:
            cursor = self.conn.cursor()
            if commit:
                cursor.execute("begin")
            try:
                yield cursor
            except BaseException:
                if commit:
                    self.conn.rollback()
                raise
            else:
                if commit:
                    self.conn.commit()
            finally:
                cursor.close()


class SqliteStore:
    backend = "sqlite"

    def __init__(self, queue: str, settings: Settings, tasks: SqliteQueue | None):
        self.settings = settings
        self.queue = queue
        # Huey's queue, in the same file; None in immediate mode, where the
        # queue is in memory and so are these tables.
        self.tasks = tasks
        self.memory = tasks is None
        self.db: Database = MemoryDatabase().db if tasks is None else tasks.db
        self._last_sweep = 0.0
        with self.db(commit=True) as cur:
            for statement in SCHEMA:
                cur.execute(statement)

    # -- writes ---------------------------------------------------------

    def apply(
        self,
        changes: list[Change],
        message: bytes | None = None,
        heartbeat: dict[str, Any] | None = None,
        priority: float = 0,
        extra: Callable[[sqlite3.Cursor], None] | None = None,
        guard: Callable[[sqlite3.Cursor], None] | None = None,
        queue: str = "default",
    ) -> bool:
        """Write changes (and a queue message, and a heartbeat) in one transaction.

        ``extra`` may run statements of its own inside the same transaction;
        so does ``guard``, first, which may raise to write nothing at all.
        """
        with self.db(commit=True) as cur:
            rows = [self._current(cur, change.job_id) for change in changes]
            for change, row in zip(changes, rows, strict=True):
                if change.only_from and (row is None or row[0] not in change.only_from):
                    return False
            if guard is not None:
                guard(cur)
            for change, row in zip(changes, rows, strict=True):
                self._apply(cur, change, row)
            if message is not None:
                if self.tasks is None:  # immediate mode runs jobs, it queues none
                    raise sqlite3.OperationalError("no queue table in immediate mode")
                # The row Huey's enqueue writes, inside our transaction: the
                # job is queued if and only if it is recorded.
                self.tasks.enqueue(cur, message, priority, queue=queue)
            if heartbeat:
                self._beat(cur, heartbeat)
            if extra is not None:
                extra(cur)
            if changes and changes[0].at - self._last_sweep > 60:
                self._sweep(cur, changes[0].at)
        return True

    def _current(self, cur: sqlite3.Cursor, job_id: str) -> tuple | None:
        cur.execute(
            "select status, name, length(events) from history_job where queue = ? and id = ?",
            (self.queue, job_id),
        )
        return cur.fetchone()

    def _apply(self, cur: sqlite3.Cursor, c: Change, row: tuple | None) -> None:
        key = (self.queue, c.job_id)
        if c.delete:
            if row is not None:
                cur.execute("delete from history_job where queue = ? and id = ?", key)
                self._count(cur, row[0], row[1], -1)
            return
        if row is None:
            if not c.status:
                return  # nothing to attach the change to
            cur.execute(
                "insert into history_job (queue, id, name, status, score, state_at) "
                "values (?, ?, ?, ?, ?, ?)",
                (*key, c.name, c.status, c.index_score, c.at),
            )
            self._count(cur, c.status, c.name, +1)
            self._set(cur, c.job_id, c.create)
            old, name, events_size = None, c.name, 0
        else:
            old, name, events_size = row
        self._set(cur, c.job_id, c.fields)
        if c.new_attempt == "always" or (c.new_attempt == "if_queued" and old == model.QUEUED):
            self._update(cur, c.job_id, "attempt = attempt + 1")
        if "duration" not in c.fields and c.status in FINISHING:
            self._update(cur, c.job_id, "duration = ? - started_at", c.at)
        if c.count_recovered:
            self._update(cur, c.job_id, "recovered = recovered + 1")
        if c.events:
            self._append_events(cur, c.job_id, c.events, events_size or 0)
        if c.status:
            self._update(
                cur, c.job_id, "status = ?, state_at = ?, score = ?", c.status, c.at, c.index_score
            )
            if old is not None and old != c.status:
                self._count(cur, old, name, -1)
                self._count(cur, c.status, name, +1)
            keep = self.settings.retention(c.status)
            if keep:
                self._prune(cur, c.status, c.at - keep.max_age, keep.max_count)
        self._rollup(cur, c)

    def _set(self, cur: sqlite3.Cursor, job_id: str, fields: dict[str, Any]) -> None:
        columns = [name for name in fields if name in SETTABLE]
        if columns:
            assignments = ", ".join(f"{name} = ?" for name in columns)
            self._update(cur, job_id, assignments, *(fields[name] for name in columns))

    def _update(self, cur: sqlite3.Cursor, job_id: str, assignments: str, *params: Any) -> None:
        cur.execute(
            f"update history_job set {assignments} where queue = ? and id = ?",
            (*params, self.queue, job_id),
        )

    def _append_events(
        self, cur: sqlite3.Cursor, job_id: str, events: list[dict], size: int
    ) -> None:
        lines = model.event_lines(events)
        limit = self.settings.events_max_bytes
        if size + len(lines) <= limit:
            self._update(cur, job_id, "events = events || ?", lines)
            return
        cur.execute(
            "select events from history_job where queue = ? and id = ?", (self.queue, job_id)
        )
        # Over the cap: keep the first line and as many of the newest as fit.
        text = cur.fetchone()[0] + lines
        first, _, rest = text.partition("\n")
        rest = rest[len(rest) - limit :]
        rest = rest[rest.find("\n") + 1 :]
        self._update(cur, job_id, "events = ?", f"{first}\n{rest}")

    def _count(self, cur: sqlite3.Cursor, status: str, name: str, delta: int) -> None:
        cur.execute(
            "insert into history_count (queue, status, name, n) values (?, ?, ?, ?) "
            "on conflict (queue, status, name) do update set n = n + excluded.n",
            (self.queue, status, name, delta),
        )

    def _prune(self, cur: sqlite3.Cursor, status: str, cutoff: float, max_count: int) -> None:
        """Drop up to two records past the age or count limit (see redis_scripts)."""
        cur.execute(
            "select id, name from history_job where queue = ? and status = ? and score < ? "
            "order by score limit 2",
            (self.queue, status, cutoff),
        )
        victims = cur.fetchall()
        excess = self._total(cur, status) - len(victims) - max_count
        if excess > 0 and len(victims) < 2:
            cur.execute(
                "select id, name from history_job where queue = ? and status = ? "
                "order by score limit ? offset ?",
                (self.queue, status, min(excess, 2 - len(victims)), len(victims)),
            )
            victims += cur.fetchall()
        for job_id, name in victims:
            cur.execute("delete from history_job where queue = ? and id = ?", (self.queue, job_id))
            self._count(cur, status, name, -1)

    def _total(self, cur: sqlite3.Cursor, status: str) -> int:
        cur.execute(
            "select coalesce(sum(n), 0) from history_count where queue = ? and status = ?",
            (self.queue, status),
        )
        return cur.fetchone()[0]

    def _rollup(self, cur: sqlite3.Cursor, c: Change) -> None:
        per_minute, per_hour = rollup_fields(c)
        for period, start, fields in (
            ("m", int(c.at // 60) * 60, per_minute),
            ("h", int(c.at // 3600) * 3600, per_hour),
        ):
            for field, amount in fields.items():
                cur.execute(
                    "insert into history_rollup (queue, period, start, field, n) "
                    "values (?, ?, ?, ?, ?) on conflict (queue, period, start, field) "
                    "do update set n = n + excluded.n",
                    (self.queue, period, start, field, amount),
                )

    def _sweep(self, cur: sqlite3.Cursor, at: float) -> None:
        """Once a minute: drop expired rollups (Redis uses TTLs for this)."""
        self._last_sweep = at
        s = self.settings
        for period, age in (("m", s.minute_rollups_age), ("h", s.hour_rollups_age)):
            cur.execute(
                "delete from history_rollup where queue = ? and period = ? and start < ?",
                (self.queue, period, at - age),
            )

    def _beat(self, cur: sqlite3.Cursor, beat: dict[str, Any]) -> None:
        cur.execute(
            "insert into history_worker (queue, id, beat_at, data) values (?, ?, ?, ?) "
            "on conflict (queue, id) do update set beat_at = excluded.beat_at, "
            "data = excluded.data",
            (self.queue, beat["id"], beat["beat_at"], json.dumps(beat)),
        )
        cur.execute(
            "delete from history_worker where queue = ? and beat_at < ?",
            (self.queue, beat["beat_at"] - beat["forget_after"]),
        )

    def remove_worker(self, worker_id: str) -> None:
        with self.db(commit=True) as cur:
            cur.execute(
                "delete from history_worker where queue = ? and id = ?", (self.queue, worker_id)
            )

    # -- reads ----------------------------------------------------------

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self.db() as cur:
            cur.execute(
                f"select {ALL_COLUMNS} from history_job where queue = ? and id = ?",
                (self.queue, job_id),
            )
            rows = to_dicts(cur)
        if not rows:
            return None
        rows[0].pop("score")
        return rows[0]

    def counts(self, name: str | None = None) -> dict[str, int]:
        sql = "select status, sum(n) from history_count where queue = ?"
        params: tuple = (self.queue,)
        if name:
            sql += " and name = ?"
            params += (name,)
        with self.db() as cur:
            cur.execute(sql + " group by status", params)
            found = dict(cur.fetchall())
        return {status: found.get(status, 0) for status in model.STATUSES}

    def page(
        self, status: str, name: str | None, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None, int]:
        """One page of a status list, the next page's cursor, and the total.

        Keyset pagination: the cursor is the (score, id) of the last row
        shown, so a deep page costs the same as the first one.
        """
        ascending = status in ASCENDING
        where = "queue = ? and status = ?"
        params: list[Any] = [self.queue, status]
        if name:
            where += " and name = ?"
            params.append(name)
        after = parse_cursor(cursor)
        if after:
            op = ">" if ascending else "<"
            where += f" and (score {op} ? or (score = ? and id {op} ?))"
            params += [after[0], after[0], after[1]]
        order = "asc" if ascending else "desc"
        with self.db() as cur:
            cur.execute(
                f"select {LIST_COLUMNS}, score from history_job where {where} "
                f"order by score {order}, id {order} limit ?",
                (*params, limit + 1),
            )
            rows = to_dicts(cur)
        total = self.counts(name)[status]
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = f"{rows[-1]['score']!r}|{rows[-1]['id']}"
        for row in rows:
            row.pop("score")
        return rows, next_cursor, total

    def search_failed(
        self, needle: str, name: str | None, cursor: str | None, limit: int, budget: int
    ) -> tuple[list[dict[str, Any]], str | None, int]:
        """Failures whose error contains ``needle``, reading at most ``budget`` rows."""
        start = int(cursor) if cursor and cursor.isdigit() else 0
        where = "queue = ? and status = ?"
        params: list[Any] = [self.queue, model.FAILED]
        if name:
            where += " and name = ?"
            params.append(name)
        with self.db() as cur:
            cur.execute(
                f"select {LIST_COLUMNS}, lower(coalesce(error, '')) as haystack "
                f"from history_job where {where} order by score desc, id desc limit ? offset ?",
                (*params, budget, start),
            )
            scanned = to_dicts(cur)
        rows, rank = [], start
        for row in scanned:
            rank += 1
            if needle.lower() in row.pop("haystack"):
                rows.append(row)
                if len(rows) >= limit:
                    break
        finished = len(scanned) < budget and len(rows) < limit
        return rows, None if finished else str(rank), len(scanned)

    def overview(self, at: float, minutes: int = 60, hours: int = 24) -> dict[str, Any]:
        this_minute = int(at // 60) * 60
        this_hour = int(at // 3600) * 3600
        first_minute = this_minute - 60 * (minutes - 1)
        first_hour = this_hour - 3600 * (hours - 1)
        with self.db() as cur:
            depth = scheduled = 0
            if self.tasks is not None:  # in immediate mode Huey's queue is not in SQLite
                # Huey keeps no counter for these: count(*) over its index.
                depth, scheduled = self.tasks.sizes(cur)
            cur.execute(
                "select min(score) from history_job where queue = ? and status = ?",
                (self.queue, model.QUEUED),
            )
            oldest = cur.fetchone()[0]
            cur.execute(
                "select start, field, n from history_rollup where queue = ? and period = 'm' "
                "and start >= ? and field in ('*|complete', '*|failed')",
                (self.queue, first_minute),
            )
            minute_rows = cur.fetchall()
            cur.execute(
                "select start, field, n from history_rollup "
                "where queue = ? and period = 'h' and start >= ?",
                (self.queue, first_hour),
            )
            hour_rows = cur.fetchall()
        per_minute = {start: {"start": start, "complete": 0, "failed": 0} for start in
                      range(first_minute, this_minute + 1, 60)}  # fmt: skip
        for start, field, n in minute_rows:
            if start in per_minute:
                per_minute[start][field.split("|")[1]] = n
        per_hour: dict[int, dict[str, int]] = {
            start: {} for start in range(first_hour, this_hour + 1, 3600)
        }
        for start, field, n in hour_rows:
            if start in per_hour:
                per_hour[start][field] = n
        return {
            "counts": self.counts(),
            "queue_depth": depth,
            "schedule_depth": scheduled,
            "oldest_queued_at": oldest,
            "per_minute": list(per_minute.values()),
            "per_hour": list(per_hour.values()),
        }

    def workers(self) -> list[dict[str, Any]]:
        with self.db() as cur:
            cur.execute(
                "select data from history_worker where queue = ? order by beat_at desc",
                (self.queue,),
            )
            return [json.loads(data) for (data,) in cur.fetchall()]

    def clear(self) -> None:
        with self.db(commit=True) as cur:
            for table in ("history_job", "history_count", "history_rollup", "history_worker"):
                cur.execute(f"delete from {table} where queue = ?", (self.queue,))


def to_dicts(cur: sqlite3.Cursor) -> list[dict[str, Any]]:
    """Rows as dicts, with the JSON columns decoded."""
    names = [column[0] for column in cur.description]
    rows = []
    for values in cur.fetchall():
        row = dict(zip(names, values, strict=True))
        for key in ("payload", "result", "error"):
            if row.get(key) is not None:
                row[key] = json.loads(row[key])
        rows.append(row)
    return rows


def parse_cursor(cursor: str | None) -> tuple[float, str] | None:
    if not cursor or "|" not in cursor:
        return None
    score, _, job_id = cursor.partition("|")
    try:
        return float(score), job_id
    except ValueError:
        return None

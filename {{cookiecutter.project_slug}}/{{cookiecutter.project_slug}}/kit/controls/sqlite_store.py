"""Job controls on SQLite: tables in the queue's own database file.

Every write is one transaction on Huey's connection, like the job history's
(so moving a message between Huey's ``task`` table and ``kit_held`` is
atomic). Tables, keyed by queue name:

* ``kit_job_extra``: a job's progress and captured logs. A trigger deletes
  the row with the job's history record, so it follows the same retention.
* ``kit_cancel``: cancel requests.
* ``kit_pause``: what is paused ("queue", or "job:<name>") and why.
* ``kit_held``: queued messages of a paused job name, kept until it resumes.
* ``kit_periodic``: the last run of each periodic job; ``kit_periodic_run``:
  schedulers' claims on periodic runs, so several workers queue each once.
* ``kit_audit``: operator actions, newest kept up to a cap.
"""

import contextlib
import datetime
import json
import sqlite3
from collections.abc import Callable
from typing import Any

from ..huey_seam import SqliteQueue
from .model import Flush, LogLimits, trim_logs

SCHEMA = (
    """create table if not exists kit_job_extra (
        queue text not null, id text not null, progress text, progress_at real,
        logs text not null default '', logs_lines integer not null default 0,
        logs_cut integer not null default 0, primary key (queue, id))""",
    """create trigger if not exists kit_job_extra_follows_history
        after delete on history_job begin
            delete from kit_job_extra where queue = old.queue and id = old.id;
        end""",
    """create table if not exists kit_cancel (
        queue text not null, id text not null, data text not null,
        primary key (queue, id))""",
    """create table if not exists kit_pause (
        queue text not null, target text not null, data text not null,
        primary key (queue, target))""",
    """create table if not exists kit_held (
        id integer not null primary key, queue text not null, name text not null,
        data blob not null, priority real not null default 0)""",
    "create index if not exists kit_held_name on kit_held (queue, name, id)",
    """create table if not exists kit_periodic (
        queue text not null, name text not null, data text not null,
        primary key (queue, name))""",
    """create table if not exists kit_periodic_run (
        queue text not null, name text not null, minute text not null,
        primary key (queue, name, minute))""",
    """create table if not exists kit_audit (
        id integer not null primary key autoincrement, queue text not null,
        data text not null)""",
    "create index if not exists kit_audit_queue on kit_audit (queue, id)",
)

# Add a job's progress and log lines, creating its row on first use, but
# only while its history record exists.
UPSERT = """
insert into kit_job_extra (queue, id, progress, progress_at, logs, logs_lines, logs_cut)
select ?, ?, ?, ?, ?, ?, ? where exists (select 1 from history_job where queue = ? and id = ?)
on conflict (queue, id) do update set
    progress = case when excluded.progress_at >= coalesce(kit_job_extra.progress_at, -1)
        then excluded.progress else kit_job_extra.progress end,
    progress_at = max(coalesce(excluded.progress_at, -1), coalesce(kit_job_extra.progress_at, -1)),
    logs = kit_job_extra.logs || excluded.logs,
    logs_lines = kit_job_extra.logs_lines + excluded.logs_lines,
    logs_cut = kit_job_extra.logs_cut + excluded.logs_cut
"""

Database = Callable[..., contextlib.AbstractContextManager[sqlite3.Cursor]]
ONE_DAY = datetime.timedelta(days=1)


class SqliteControlStore:
    backend = "sqlite"

    def __init__(self, db: Database, queue: str, limits: LogLimits, tasks: SqliteQueue | None):
        self.db = db
        self.queue = queue
        self.limits = limits
        # Huey's queue, in the same file; None in immediate mode, where it
        # is in memory, not in SQLite.
        self.tasks = tasks
        with self.db(commit=True) as cur:
            for statement in SCHEMA:
                cur.execute(statement)

    # -- progress, logs and cancel flags --------------------------------------

    def flush(self, items: list[Flush]) -> dict[str, dict | None]:
        """Write several jobs' progress and logs in one transaction.

        Returns each job's cancel request (None if there is none).
        """
        if not items:
            return {}
        with self.db(commit=any(item.progress or item.lines for item in items)) as cur:
            for item in items:
                if item.progress or item.lines:
                    self._write(cur, item)
            return {item.job_id: self._cancel_request(cur, item.job_id) for item in items}

    def add_final(self, cur: sqlite3.Cursor, item: Flush, clear_cancel: bool) -> None:
        """Write a job's last progress and log lines inside another transaction."""
        if item.progress or item.lines:
            self._write(cur, item)
        if clear_cancel:
            cur.execute(
                "delete from kit_cancel where queue = ? and id = ?", (self.queue, item.job_id)
            )

    def _write(self, cur: sqlite3.Cursor, item: Flush) -> None:
        """One upsert, if the job's history record exists; a trim when over the limits.

        Progress is replaced only by a newer report: the flusher and the
        final write may land in either order.
        """
        key = (self.queue, item.job_id)
        progress = json.dumps(item.progress) if item.progress else None
        at = item.progress["at"] if item.progress else None
        lines = "".join(line + "\n" for line in item.lines)
        cur.execute(UPSERT, (*key, progress, at, lines, len(item.lines), item.cut, *key))
        if not item.lines:
            return
        cur.execute(
            "select logs, logs_lines from kit_job_extra where queue = ? and id = ? "
            "and (logs_lines > ? or length(cast(logs as blob)) > ?)",
            (*key, self.limits.lines, self.limits.bytes),
        )
        row = cur.fetchone()
        if row is not None:
            text, kept, cut = trim_logs(row[0], row[1], self.limits)
            cur.execute(
                "update kit_job_extra set logs = ?, logs_lines = ?, logs_cut = logs_cut + ? "
                "where queue = ? and id = ?",
                (text, kept, cut, *key),
            )

    def _cancel_request(self, cur: sqlite3.Cursor, job_id: str) -> dict | None:
        cur.execute("select data from kit_cancel where queue = ? and id = ?", (self.queue, job_id))
        row = cur.fetchone()
        return json.loads(row[0]) if row else None

    def extras(self, job_ids: list[str]) -> dict[str, dict[str, Any]]:
        found = {job_id: {"progress": None, "log_lines": 0, "logs_cut": 0} for job_id in job_ids}
        if not job_ids:
            return found
        marks = ",".join("?" * len(job_ids))
        with self.db() as cur:
            cur.execute(
                "select id, progress, logs_lines, logs_cut from kit_job_extra "
                f"where queue = ? and id in ({marks})",
                (self.queue, *job_ids),
            )
            for job_id, progress, lines, cut in cur.fetchall():
                found[job_id] = {
                    "progress": json.loads(progress) if progress else None,
                    "log_lines": lines,
                    "logs_cut": cut,
                }
        return found

    def logs(self, job_id: str) -> tuple[list[str], int]:
        with self.db() as cur:
            cur.execute(
                "select logs, logs_cut from kit_job_extra where queue = ? and id = ?",
                (self.queue, job_id),
            )
            row = cur.fetchone()
        if row is None:
            return [], 0
        return row[0].splitlines(), row[1]

    def request_cancel(self, job_id: str, request: dict[str, Any], ttl: int) -> None:
        # No TTL here: the job's final write deletes the request.
        with self.db(commit=True) as cur:
            cur.execute(
                "insert into kit_cancel (queue, id, data) values (?, ?, ?) "
                "on conflict (queue, id) do update set data = excluded.data",
                (self.queue, job_id, json.dumps(request)),
            )

    def cancel_request(self, job_id: str) -> dict | None:
        with self.db() as cur:
            return self._cancel_request(cur, job_id)

    # -- pause and resume -----------------------------------------------------

    def pauses(self) -> dict[str, dict[str, Any]]:
        with self.db() as cur:
            cur.execute("select target, data from kit_pause where queue = ?", (self.queue,))
            return {target: json.loads(data) for target, data in cur.fetchall()}

    def pause(self, target: str, info: dict[str, Any]) -> bool:
        with self.db(commit=True) as cur:
            cur.execute(
                "insert into kit_pause (queue, target, data) values (?, ?, ?) "
                "on conflict (queue, target) do nothing",
                (self.queue, target, json.dumps(info)),
            )
            return cur.rowcount == 1

    def resume(self, target: str, name: str | None) -> tuple[bool, int]:
        """Lift a pause; a job name's held messages go back to the queue.

        They are queued behind what is queued now (SQLite gives them new
        row ids); on Redis they go back to the head of the queue.
        """
        with self.db(commit=True) as cur:
            cur.execute(
                "delete from kit_pause where queue = ? and target = ?", (self.queue, target)
            )
            existed = cur.rowcount == 1
            moved = 0
            if name is not None and self.tasks is not None:
                cur.execute(
                    "select data, priority from kit_held where queue = ? and name = ? order by id",
                    (self.queue, name),
                )
                moved = self.tasks.enqueue_all(cur, cur.fetchall())
                cur.execute("delete from kit_held where queue = ? and name = ?", (self.queue, name))
        return existed, moved

    def hold(self, target: str, name: str, message: bytes, priority: float) -> bool:
        """Keep a message aside while ``target`` is paused; False: it was queued again."""
        with self.db(commit=True) as cur:
            cur.execute(
                "select 1 from kit_pause where queue = ? and target = ?", (self.queue, target)
            )
            if cur.fetchone() is not None:
                cur.execute(
                    "insert into kit_held (queue, name, data, priority) values (?, ?, ?, ?)",
                    (self.queue, name, message, priority),
                )
                return True
            self._tasks().enqueue(cur, message, priority)
            return False

    def requeue(self, message: bytes, priority: float) -> None:
        """Put a message back on the queue (behind what is queued now)."""
        with self.db(commit=True) as cur:
            self._tasks().enqueue(cur, message, priority)

    def _tasks(self) -> SqliteQueue:
        if self.tasks is None:  # only workers put jobs back, never immediate mode
            raise sqlite3.OperationalError("no queue table in immediate mode")
        return self.tasks

    def held_counts(self, names: list[str]) -> dict[str, int]:
        with self.db() as cur:
            cur.execute(
                "select name, count(*) from kit_held where queue = ? group by name", (self.queue,)
            )
            return {name: n for name, n in cur.fetchall() if name in names}

    # -- periodic jobs ---------------------------------------------------------

    def set_last_run(self, name: str, run: dict[str, Any]) -> None:
        with self.db(commit=True) as cur:
            cur.execute(
                "insert into kit_periodic (queue, name, data) values (?, ?, ?) "
                "on conflict (queue, name) do update set data = excluded.data",
                (self.queue, name, json.dumps(run)),
            )

    def claim_run(self, name: str, minute: str) -> bool:
        """Claim a periodic run (job name, minute): True for the first scheduler only."""
        with self.db(commit=True) as cur:
            cur.execute(
                "insert into kit_periodic_run (queue, name, minute) values (?, ?, ?) "
                "on conflict do nothing",
                (self.queue, name, minute),
            )
            claimed = cur.rowcount == 1
            if claimed:  # forget claims older than a day ("YYYYmmddHHMM" sorts)
                day_before = datetime.datetime.strptime(minute, "%Y%m%d%H%M") - ONE_DAY
                cur.execute(
                    "delete from kit_periodic_run where queue = ? and name = ? and minute < ?",
                    (self.queue, name, day_before.strftime("%Y%m%d%H%M")),
                )
        return claimed

    def last_runs(self) -> dict[str, dict[str, Any]]:
        with self.db() as cur:
            cur.execute("select name, data from kit_periodic where queue = ?", (self.queue,))
            return {name: json.loads(data) for name, data in cur.fetchall()}

    # -- audit log -------------------------------------------------------------

    def audit_add(self, entry: dict[str, Any], keep: int) -> None:
        with self.db(commit=True) as cur:
            cur.execute(
                "insert into kit_audit (queue, data) values (?, ?)",
                (self.queue, json.dumps(entry)),
            )
            # Ids only grow, so the newest `keep` are those above this one.
            cur.execute(
                "delete from kit_audit where queue = ? and id <= ?",
                (self.queue, cur.lastrowid - keep),
            )

    def audit_page(
        self, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None, int]:
        """Newest first; the cursor is the id of the last entry shown."""
        before = int(cursor) if cursor and cursor.isdigit() else None
        with self.db() as cur:
            sql = "select id, data from kit_audit where queue = ?"
            params: list[Any] = [self.queue]
            if before is not None:
                sql += " and id < ?"
                params.append(before)
            cur.execute(sql + " order by id desc limit ?", (*params, limit + 1))
            rows = cur.fetchall()
            cur.execute("select count(*) from kit_audit where queue = ?", (self.queue,))
            total = cur.fetchone()[0]
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = str(rows[-1][0]) if more else None
        return [json.loads(data) for _, data in rows], next_cursor, total

    def clear(self) -> None:
        with self.db(commit=True) as cur:
            for table in ("kit_job_extra", "kit_cancel", "kit_pause", "kit_held"):
                cur.execute(f"delete from {table} where queue = ?", (self.queue,))
            for table in ("kit_periodic", "kit_periodic_run", "kit_audit"):
                cur.execute(f"delete from {table} where queue = ?", (self.queue,))

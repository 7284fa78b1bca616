"""The one seam between the kit and Huey's internals.

Huey's public API (tasks, signals, hooks, ``enqueue``, revokes, storage
classes) is used anywhere in the kit. Everything else the kit needs from
Huey lives here and only here: the methods it overrides, the private ones it
calls, the consumer's signal handling, storage attributes, and the layout of
Huey's SQLite tables and Redis keys. ``USES`` lists each one, with the shape
the kit expects; ``kit_tests/test_huey_seam.py`` checks the list against the
installed Huey, so an upgrade that moves one of them fails one clear test.

To upgrade Huey: run that test, fix what it names here (and only here), run
the kit's suite, then add the version to ``VERIFIED_WITH`` and widen the pin
in ``pyproject.toml``.

What is here:

* ``KitHuey``: the kit's one Huey class, for Redis and SQLite alike. The kit's
  parts plug into its ``hooks`` (leases, pauses, one scheduler per periodic
  run, consumer listeners) instead of patching methods onto an instance;
* ``KitConsumer``, ``KitWorker`` and ``KitProcessEnvironment``, in
  ``workers``: Huey's consumer, workers and process workers with their
  private steps reachable by name (``consumer.py`` sets the kit's policy on
  them); on SQLite a job queued on this host wakes sleeping workers up;
* ``KitRedisStorage``, ``KitSqliteStorage`` (Huey's storages, whose enqueue
  and take know the named queues) and storage handles (``RedisQueue``,
  ``SqliteQueue``), in ``storage``, and a few helpers.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import optparse
import threading
import time
from dataclasses import dataclass
from typing import Any

from huey import signals as S
from huey.api import Huey, Task
from huey.constants import EmptyData
from huey.consumer import Consumer, Environment, ProcessEnvironment, Scheduler, Worker
from huey.consumer_options import ConsumerConfig, OptionParserHandler
from huey.registry import Message
from huey.serializer import Serializer
from huey.storage import RedisStorage, SqliteStorage

# Huey's message types, for serializer.py.
from huey.utils import SKIPPED as SKIPPED
from huey.utils import Error as Error

from .. import queues, run_state
from ..huey_hooks import ConsumerStart, Hooks
from ..queues import Selection
from .storage import (
    DueMove,
    KitRedisStorage,
    KitSqliteStorage,
    RedisQueue,
    SqliteQueue,
    redis_queue,
    sqlite_queue,
)
from .workers import KitConsumer as KitConsumer
from .workers import KitProcessEnvironment as KitProcessEnvironment
from .workers import KitWorker as KitWorker
from .workers import wake_directory as wake_directory

log = logging.getLogger(__name__)

# The Huey releases this seam was checked against (the kit's suite and
# test_huey_seam.py); pyproject.toml pins the range they stand for.
VERIFIED_WITH = ("3.5.4",)

# Kinds of use. A method's shape is its parameter names, as
# inspect.signature() gives them: "override" and "call" must match exactly,
# "keywords" must include them. An attribute's shape says what it holds.
OVERRIDE = "override"  # the kit's subclass replaces it; Huey must still call it so
CALL = "call"  # the kit calls it
KEYWORDS = "keywords"  # the kit passes these keyword arguments
ATTRIBUTE = "attribute"  # the kit reads (or sets) it on an instance
TABLE = "table"  # a SQLite table of Huey's that the kit reads or writes
FORMAT = "format"  # a key or message layout the kit's scripts rely on


@dataclass(frozen=True)
class Use:
    """One thing the kit relies on that Huey does not document as public."""

    owner: type
    name: str
    kind: str
    shape: str
    why: str


USES: tuple[Use, ...] = (
    # The Huey subclass (KitHuey). Huey's consumer calls these; the kit's
    # versions add its hooks and then defer to Huey's.
    Use(Huey, "create_consumer", OVERRIDE, "self, **options", "tell listeners a consumer starts"),
    Use(Huey, "dequeue", OVERRIDE, "self", "take with a lease; pauses"),
    Use(Huey, "execute", OVERRIDE, "self, task, timestamp", "release the lease after the run"),
    Use(Huey, "is_revoked", OVERRIDE, "self, task, timestamp, peek", "flags read with the take"),
    Use(Huey, "delete", OVERRIDE, "self, key", "Huey deletes task.revoke_id after each run"),
    Use(Huey, "read_schedule", OVERRIDE, "self, timestamp", "move due jobs in one step; quiet"),
    Use(Scheduler, "loop", FORMAT, "enqueues what read_schedule returns", "the kit returns none"),
    Use(Huey, "enqueue", FORMAT, "resolve expires, send 'enqueued', store", "a due job's move too"),
    Use(Huey, "read_periodic", OVERRIDE, "self, timestamp", "one scheduler per periodic run"),
    Use(Huey, "_revoke_keys", CALL, "self, task", "which flags decide a task's revoke"),
    Use(Huey, "_check_revoked", CALL, "self, data, timestamp, peek", "judge a flag's raw value"),
    Use(Huey, "_emit", CALL, "self, signal, task, *args, **kwargs", "'enqueued' after our writes"),
    Use(Huey, "_get_timestamp", CALL, "self", "the scheduler's now, in Huey's timezone"),
    Use(Task, "revoke_id", FORMAT, "'r:' + task id", "the take script reads the flag"),
    Use(Huey, "_task_key", FORMAT, "'rt:' + task name", "the take script reads the type's flag"),
    Use(Message, "_fields", FORMAT, "id, name, ... retries", "scripts read fields 1 and 2"),
    # The consumer and its process workers (consumer.py's policy).
    Use(Consumer, "__init__", KEYWORDS, "self, huey, worker_type, graceful_signal", "built here"),
    Use(Consumer, "get_environment", OVERRIDE, "self, worker_type", "the kit's process workers"),
    Use(Consumer, "stop", OVERRIDE, "self, graceful", "ring its sleeping workers: stop now"),
    Use(Consumer, "worker_class", ATTRIBUTE, "built as Worker's keywords below", "KitWorker"),
    Use(Worker, "__init__", KEYWORDS, "self, huey, stop_flag, max_delay, backoff", "built so"),
    Use(Worker, "sleep", OVERRIDE, "self", "after an empty take: wait for a ring, or the delay"),
    Use(Worker, "shutdown", OVERRIDE, "self", "close the worker's wake-up socket"),
    Use(Worker, "delay", ATTRIBUTE, "seconds, times backoff per sleep", "Huey's backoff"),
    Use(Worker, "default_delay", ATTRIBUTE, "seconds; after a job", "Huey's backoff"),
    Use(Worker, "max_delay", ATTRIBUTE, "seconds", "Huey's backoff"),
    Use(Worker, "backoff", ATTRIBUTE, "a factor", "Huey's backoff"),
    Use(Worker, "task_count", ATTRIBUTE, "jobs taken so far", "did a wake-up find a job"),
    Use(Worker, "stop_flag", ATTRIBUTE, "an event: wait(seconds)", "sleep as Huey does"),
    Use(Consumer, "_handle_signal", OVERRIDE, "self, signum, frame", "stop at a second signal"),
    Use(Consumer, "_signal_actions", ATTRIBUTE, "{signum: (restart, graceful)}", "TERM graceful"),
    Use(Consumer, "_graceful", ATTRIBUTE, "bool, set by _handle_signal", "which stop it is"),
    Use(Consumer, "_restart", ATTRIBUTE, "bool, set by _handle_signal", "which stop it is"),
    Use(Consumer, "stop_flag", ATTRIBUTE, "an event: is_set()", "leases: take no new job"),
    Use(Environment, "__init__", CALL, "self, graceful, interrupt", "the worker's signals"),
    Use(ProcessEnvironment, "create_process", OVERRIDE, "self, runnable, name", "die with parent"),
    Use(ProcessEnvironment, "init_child", OVERRIDE, "self, process", "signals in the child"),
    Use(ProcessEnvironment, "timeout", OVERRIDE, "self, seconds", "one SIGALRM handler"),
    Use(OptionParserHandler, "get_option_parser", CALL, "self", "huey_consumer's flags"),
    Use(ConsumerConfig, "__new__", KEYWORDS, "cls, **kwargs", "the parsed flags"),
    Use(ConsumerConfig, "validate", CALL, "self", "as huey_consumer checks them"),
    Use(ConsumerConfig, "setup_logger", OVERRIDE, "self, logger", "JSON logs: level only"),
    Use(ConsumerConfig, "values", ATTRIBUTE, "dict of Consumer keywords", "create_consumer"),
    Use(ConsumerConfig, "loglevel", ATTRIBUTE, "a logging level", "JSON logs: level only"),
    # Storage.
    Use(RedisStorage, "conn", ATTRIBUTE, "redis.Redis", "the kit's keys share the connection"),
    Use(RedisStorage, "queue_key", ATTRIBUTE, "list: LPUSH in, pop right", "take, requeue"),
    Use(RedisStorage, "schedule_key", ATTRIBUTE, "sorted set: message -> eta", "move due jobs"),
    Use(RedisStorage, "convert_ts", CALL, "self, ts", "the schedule's scores, as Huey writes them"),
    Use(RedisStorage, "result_key", ATTRIBUTE, "hash key (str)", "revoke flags live there"),
    Use(RedisStorage, "blocking", ATTRIBUTE, "bool", "a blocking take waits like BRPOP"),
    Use(RedisStorage, "read_timeout", ATTRIBUTE, "seconds", "a blocking take waits like BRPOP"),
    Use(RedisStorage, "enqueue", OVERRIDE, "self, data, priority", "to the message's queue"),
    Use(RedisStorage, "dequeue", OVERRIDE, "self", "leases off: named queues by weight"),
    Use(SqliteStorage, "dequeue", OVERRIDE, "self", "leases off: named queues by weight"),
    Use(SqliteStorage, "enqueue", OVERRIDE, "self, data, priority", "to the message's queue"),
    Use(SqliteStorage, "db", OVERRIDE, "self, commit, close", "one transaction; reopen if stuck"),
    Use(SqliteStorage, "close", CALL, "self", "drop a connection an error stuck to"),
    Use(SqliteStorage, "sql", CALL, "self, query, params, commit, results", "one statement"),
    Use(SqliteStorage, "task", TABLE, "id, queue, data, priority", "the queue, next by priority"),
    Use(SqliteStorage, "schedule", TABLE, "id, queue, data, timestamp", "move due jobs"),
    Use(SqliteStorage, "kv", TABLE, "queue, key, value", "revoke flags live there"),
    # Serializer and message types.
    Use(Serializer, "_serialize", OVERRIDE, "self, data", "JSON instead of pickle"),
    Use(Serializer, "_deserialize", OVERRIDE, "self, data", "JSON instead of pickle"),
)


# How Huey names a task's two revoke flags (Task.revoke_id, and
# Huey._task_key for its task type): the lease take script reads them.
REVOKE_PREFIX = "r:"
TYPE_REVOKE_PREFIX = "rt:"


# -- the kit's Huey ----------------------------------------------------------


# The task each worker thread is running, for KitHuey.delete.
_running = threading.local()


STORAGE = {"redis": KitRedisStorage, "sqlite": KitSqliteStorage}

# Due messages moved per step (one script call, or one transaction).
MOVE_BATCH = 500


class KitHuey(Huey):
    """The kit's Huey, for both backends: Huey's behaviour plus the kit's hooks.

    With no hook set it behaves as Huey does (immediate mode, tests).
    """

    def __init__(self, name: str, backend: str, **options: Any):
        # ``backend`` only picks Huey's storage class; which backend the kit's
        # stores use is decided once, from the storage, by backends/.
        super().__init__(name, storage_class=STORAGE[backend], **options)
        self.hooks = Hooks()
        # The named queues this process's workers take from (kit/queues.py),
        # by the lease manager's take or, leases off, by Huey's own.
        self.queues = Selection()
        self.storage.picks = lambda: self.queues.next_pick()
        self._schedule: RedisQueue | SqliteQueue | None = None

    def create_consumer(self, **options: Any) -> Consumer:
        """What ``huey_consumer`` calls: Huey's consumer, woken up on SQLite."""
        return self.build_consumer(KitConsumer, **options)

    def build_consumer(self, consumer_class: type[Consumer], **options: Any) -> Consumer:
        """A consumer of ``consumer_class``; listeners learn its options and stop flag."""
        consumer = consumer_class(self, **options)
        start = ConsumerStart(
            worker_type=options.get("worker_type") or "thread",
            workers=options.get("workers") or 1,
            # Forked worker processes inherit the flag.
            stopping=consumer.stop_flag.is_set,
        )
        for listener in self.hooks.consumer_listeners:
            listener(start)
        return consumer

    def dequeue(self) -> Task | None:
        gate, delivery = self.hooks.gate, self.hooks.delivery
        if gate is not None and not gate.is_open():
            if self.storage.blocking:
                # Huey's worker loop calls again at once for a blocking backend.
                time.sleep(gate.idle_wait)
            return None
        task = super().dequeue() if delivery is None else delivery.take()
        if task is None or gate is None:
            return task
        return gate.admit(task)

    def execute(self, task: Task, timestamp: datetime.datetime | None = None) -> Any:
        # Huey's lines about the run ("Executing", "executed in", a
        # traceback) are written inside the job's log context.
        job_context = self.hooks.job_context
        with contextlib.nullcontext() if job_context is None else job_context(task):
            return self._execute_leased(task, timestamp)

    def _execute_leased(self, task: Task, timestamp: datetime.datetime | None) -> Any:
        _running.task = task
        over = False
        try:
            result = super().execute(task, timestamp)
            over = True
            return result
        finally:
            _running.task = None
            # Whatever the run led to (a retry on the schedule, a result) is
            # written by now; only then may the lease go. An error that
            # escapes Huey's execute is one of its own steps failing (the
            # revoke check, writing a retry), say because Redis went away:
            # that run is not over, and its job goes back to the queue.
            if self.hooks.delivery is not None:
                self.hooks.delivery.finish(task, over)

    def is_revoked(self, task: Any, timestamp: Any = None, peek: bool = True) -> bool:
        """Huey's revoke check, from the flags the take read when it can.

        Huey checks once before each run (``peek=False``); the lease carries
        the flags as they were a moment ago, when the job was taken, which is
        what Huey's own read after its dequeue would see.
        """
        delivery = self.hooks.delivery
        flags = None if delivery is None or peek else delivery.taken_flags(task)
        if flags is None or list(flags) != self._revoke_keys(task):
            return super().is_revoked(task, timestamp, peek)
        for key, value in flags.items():
            stored = EmptyData if value is None else value
            revoked, restore = self._check_revoked(stored, timestamp, peek)
            if restore:
                self.delete(key)
            if revoked:
                return True
        return False

    def delete(self, key: str) -> bool:
        """Huey's delete, except for the running job's own revoke flag.

        After every run Huey deletes the job's revoke flag, in case the job
        was revoked while it ran: a round trip per job that almost never
        deletes anything. The kit clears it together with the release of
        the job's lease, which the run's last write carries anyway.
        """
        task = getattr(_running, "task", None)
        delivery = self.hooks.delivery
        if (
            task is not None
            and delivery is not None
            and key == task.revoke_id
            and delivery.clear_on_release(task, key)
        ):
            return True
        return super().delete(key)

    def read_schedule(self, timestamp: datetime.datetime | None = None) -> list[Task]:
        """The scheduler, once a second: due jobs go to the queue in one step.

        Huey's own takes the due messages off the schedule and returns them
        for its scheduler to queue one by one: a consumer killed in between
        loses them. With the kit's delivery the messages move inside the
        storage instead (``move_due``), and Huey's scheduler gets none.

        Quiet while the backend is down: Huey would log a traceback every
        second of an outage; the delivery's outage log says when it starts
        and when it ends.
        """
        delivery = self.hooks.delivery
        if delivery is None:
            return super().read_schedule(timestamp)
        if self.hooks.schedule_tick is not None:
            self.hooks.schedule_tick()
        self.move_due_quietly(timestamp)
        return []

    def move_due_quietly(self, timestamp: datetime.datetime | None = None) -> None:
        """``move_due`` now; an outage goes to the delivery's outage log."""
        delivery = self.hooks.delivery
        if delivery is None:
            return
        try:
            self.move_due(timestamp or self._get_timestamp())
        except delivery.errors as exc:
            delivery.outage.failed(exc)
            return
        delivery.outage.ok()

    def move_due(self, now: datetime.datetime) -> int:
        """Move the jobs due by ``now`` from the schedule to the queue; how many moved.

        Each job gets what Huey's enqueue gives it, in the same order: its
        expiry resolved anew, then the "enqueued" signal, and only then a
        place on the queue, so the job history says "queued" before any
        worker can say "running". One step per batch then moves the
        messages, each only if it is still on the schedule: another
        scheduler that read it too sent the signal in vain (the history
        knows, from ``run_state.from_schedule``) but cannot queue it twice.
        A message that cannot be read is moved as it is: the worker that
        takes it sets it aside, as any unreadable message, so it holds up
        no job due with it.
        """
        if self._schedule is None:
            self._schedule = redis_queue(self.storage) or sqlite_queue(self.storage)
        schedule = self._schedule
        if schedule is None:
            raise TypeError(f"no schedule handle for {type(self.storage).__name__}")
        moved = 0
        while True:
            due = schedule.due(now, MOVE_BATCH)
            done = sum(schedule.move_due([self._due(ref, raw) for ref, raw in due], now))
            moved += done
            # A batch that moved nothing was moved by another scheduler.
            if len(due) < MOVE_BATCH or not done:
                return moved

    def _due(self, ref: Any, raw: bytes) -> DueMove:
        """One due message: what Huey's enqueue would do with it, short of storing it."""
        try:
            task = self.deserialize_task(raw)
        except Exception:
            # As Huey logs it; a worker logs it again as it sets it aside.
            log.exception("an unreadable message is due; it goes to the queue as it is")
            return DueMove(ref, raw, raw)
        message = raw
        if task.expires:
            task.resolve_expires(self.utc)
            message = self.serialize_task(task)
        run_state.of(task).from_schedule = True
        self._emit(S.SIGNAL_ENQUEUED, task)
        return DueMove(ref, raw, message, task.priority or 0, queues.of_task(task))

    def read_periodic(self, timestamp: datetime.datetime | None) -> list[Task]:
        timestamp = timestamp or self._get_timestamp()
        due = super().read_periodic(timestamp)
        claim = self.hooks.periodic_claim
        return due if claim is None or not due else claim(due, timestamp)


def emit(huey: Huey, signal: str, task: Task) -> None:
    """Send one of Huey's signals to its receivers, as Huey does."""
    huey._emit(signal, task)


# -- the consumer ------------------------------------------------------------


@dataclass(frozen=True)
class ConsumerOptions:
    values: dict[str, Any]  # keyword arguments for the consumer
    worker_type: str


def consumer_option_parser() -> optparse.OptionParser:
    """``huey_consumer``'s command-line flags."""
    return OptionParserHandler().get_option_parser()


def consumer_options(parsed: dict[str, Any]) -> ConsumerOptions:
    """Check parsed flags and set up the "huey" logger, as ``huey_consumer`` does."""
    config = ConsumerConfig(**parsed)
    config.validate()
    config.setup_logger(logging.getLogger("huey"))
    return ConsumerOptions(config.values, config.worker_type)


def consumer_logs_level_only() -> None:
    """Make ``huey_consumer`` set its logger's level, and add no handler of its own.

    It sets up logging itself, after importing the app, with no hook in
    between: the one class attribute patched in the kit (JSON logs only).
    """

    def level_only(self: ConsumerConfig, logger: logging.Logger | None = None) -> None:
        (logger or logging.getLogger()).setLevel(self.loglevel)

    ConsumerConfig.setup_logger = level_only


# -- messages ----------------------------------------------------------------


class MessageSerializer(Serializer):
    """Huey's serializer, with its two override points given public names."""

    def dumps(self, data: Any) -> bytes:
        raise NotImplementedError

    def loads(self, data: bytes | memoryview | str) -> Any:
        raise NotImplementedError

    def _serialize(self, data: Any) -> bytes:
        return self.dumps(data)

    def _deserialize(self, data: Any) -> Any:
        return self.loads(data)

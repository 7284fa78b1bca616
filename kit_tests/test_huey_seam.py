"""The kit's seam to Huey still fits the installed Huey.

``huey_seam.USES`` lists every method, attribute, table and key layout of
Huey's that the kit relies on without Huey documenting it as public. Each
entry is checked here against the installed Huey, so an upgrade that moves
one of them fails here, by name, before anything subtler breaks. The last
tests check the behaviour the seam's overrides rely on: that Huey still calls
them where the kit expects, and still keeps its queues in the same order.
"""

import contextlib
import datetime
import inspect
import signal
import sqlite3
import threading
from importlib.metadata import version

import pytest
from huey.consumer import Consumer, Scheduler, Worker
from huey.consumer_options import ConsumerConfig
from huey.storage import RedisStorage, SqliteStorage

from acme_jobs.kit import huey_seam
from acme_jobs.kit.huey_seam import (
    ATTRIBUTE,
    CALL,
    FORMAT,
    KEYWORDS,
    OVERRIDE,
    REVOKE_PREFIX,
    TABLE,
    TYPE_REVOKE_PREFIX,
    USES,
    KitConsumer,
    KitHuey,
    Message,
    SqliteQueue,
    Use,
)
from acme_jobs.kit.serializer import JSONSerializer
from support import unique_queue_name


def parameters(function) -> list[str]:
    """A function's parameter names, with ``*`` and ``**`` as in its signature."""
    marks = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    return [
        marks.get(parameter.kind, "") + name
        for name, parameter in inspect.signature(function).parameters.items()
    ]


def expected(use: Use) -> list[str]:
    return [name.strip() for name in use.shape.split(",")]


def use_id(use: Use) -> str:
    return f"{use.owner.__name__}.{use.name}"


@pytest.fixture
def huey(tmp_path) -> KitHuey:
    """A KitHuey on SQLite, as the kit builds it."""
    path = str(tmp_path / "q.db")
    return KitHuey(unique_queue_name(), "sqlite", filename=path, serializer=JSONSerializer())


@pytest.fixture
def seam_task(huey):
    """A task registered on ``huey``."""

    @huey.task(name="seamTask")
    def seam_task(n):
        return n

    return seam_task


def instance_of(owner: type, huey: KitHuey):
    """An instance to read attributes from: what the kit reads them on."""
    if owner is Consumer:
        return huey.create_consumer(workers=1)
    if owner is Worker:
        return huey.create_consumer(workers=1).worker_threads[0][0]
    if owner is ConsumerConfig:
        return ConsumerConfig()
    if owner is RedisStorage:
        return RedisStorage(unique_queue_name())  # connects lazily: no server needed
    raise AssertionError(f"no instance for {owner.__name__}: add one to instance_of()")


@pytest.mark.parametrize("use", [u for u in USES if u.kind in (OVERRIDE, CALL)], ids=use_id)
def test_each_method_the_kit_overrides_or_calls_has_the_same_parameters(use):
    assert parameters(getattr(use.owner, use.name)) == expected(use), use.why


@pytest.mark.parametrize("use", [u for u in USES if u.kind == KEYWORDS], ids=use_id)
def test_each_keyword_the_kit_passes_is_still_taken(use):
    assert set(expected(use)) <= set(parameters(getattr(use.owner, use.name))), use.why


@pytest.mark.parametrize("use", [u for u in USES if u.kind == ATTRIBUTE], ids=use_id)
def test_each_attribute_the_kit_reads_is_still_there(use, huey):
    assert hasattr(instance_of(use.owner, huey), use.name), use.why


@pytest.mark.parametrize("use", [u for u in USES if u.kind == TABLE], ids=use_id)
def test_each_sqlite_table_the_kit_uses_has_the_same_columns(use, tmp_path):
    storage = SqliteStorage(unique_queue_name(), filename=str(tmp_path / "q.db"))
    with contextlib.closing(sqlite3.connect(storage.filename)) as db:
        columns = [row[1] for row in db.execute(f"pragma table_info({use.name})")]

    assert columns == expected(use), use.why


def test_every_use_is_of_a_kind_checked_here():
    kinds = {OVERRIDE, CALL, KEYWORDS, ATTRIBUTE, TABLE, FORMAT}

    assert [use_id(u) for u in USES if u.kind not in kinds] == []


def test_revoke_flags_are_named_as_the_lease_take_script_reads_them(huey, seam_task):
    task = seam_task.s(1)
    # The script reads the id and task name from the message's first two
    # fields, as the kit's JSON serializer writes them.
    message = huey.serializer.serialize(huey_seam.Message(task.id, "x"))
    fields = huey.serializer.deserialize(huey.serialize_task(task))

    assert message.startswith(b'{"__huey__":"message","fields":[')
    assert Message._fields[:2] == ("id", "name") and "retries" in Message._fields
    assert task.revoke_id == REVOKE_PREFIX + task.id
    assert huey._revoke_keys(task) == [
        REVOKE_PREFIX + task.id,
        TYPE_REVOKE_PREFIX + fields.name,
    ]


def test_the_installed_huey_is_one_the_seam_was_verified_with():
    installed = version("huey")

    assert installed in huey_seam.VERIFIED_WITH, (
        f"huey {installed} is installed; the seam was verified with "
        f"{', '.join(huey_seam.VERIFIED_WITH)}. If the other tests here and the "
        "kit's suite pass, add it to VERIFIED_WITH (and widen the pin if needed)."
    )


# -- the behaviour the overrides rely on ----------------------------------------


class RecordingDelivery:
    """A stand-in for the lease manager: records what KitHuey asks of it."""

    errors = (OSError,)
    outage = None

    def __init__(self, huey):
        self.huey = huey
        self.calls = []

    def take(self):
        self.calls.append("take")
        return self.huey.deserialize_task(self.huey.storage.dequeue())

    def finish(self, task, over=True):
        self.calls.append("finish")

    def taken_flags(self, task):
        self.calls.append("taken_flags")
        return None

    def clear_on_release(self, task, key):
        self.calls.append(("clear_on_release", key == task.revoke_id))
        return False


def test_huey_runs_a_job_through_the_kits_hooks_where_the_kit_expects(huey, seam_task):
    delivery = huey.hooks.delivery = RecordingDelivery(huey)
    seam_task(2)

    task = huey.dequeue()
    huey.execute(task)

    # Taken, checked for a revoke before the run (not a peek), its revoke
    # flag deleted after the run, and finished last.
    assert delivery.calls == ["take", "taken_flags", ("clear_on_release", True), "finish"]


def test_a_consumer_tells_its_listeners_it_started_and_when_it_stops(huey):
    started = []
    huey.hooks.consumer_listeners.append(started.append)

    consumer = huey.create_consumer(workers=3, worker_type="thread")
    consumer.stop_flag.set()

    [start] = started
    assert (start.worker_type, start.workers, start.stopping()) == ("thread", 3, True)


def test_a_signal_made_graceful_stops_the_consumer_gracefully(huey):
    handled = []

    class Recording(KitConsumer):
        def signal_handled(self, graceful, restart):
            handled.append((graceful, restart))

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        consumer = huey.build_consumer(Recording, workers=1, graceful_signal="INT")
        consumer.make_graceful(signal.SIGTERM)
        consumer._handle_signal(signal.SIGTERM, None)
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)

    assert handled == [(True, False)]


def test_huey_takes_sqlite_jobs_by_priority_then_row_id_as_the_kit_does(tmp_path):
    storage = SqliteStorage(unique_queue_name(), filename=str(tmp_path / "q.db"))
    tasks = SqliteQueue(storage)
    storage.enqueue(b"low", 0)
    storage.enqueue(b"high", 5)
    with storage.db(commit=True) as curs:
        tasks.enqueue(curs, b"front", 0, front=True)
        tasks.enqueue(curs, b"back", 0)

    order = []
    while True:
        with storage.db() as curs:
            peeked = tasks.next_queued(curs)
        taken = storage.dequeue()
        if taken is None:
            break
        assert peeked[1] == bytes(taken)  # the kit's "next" is Huey's
        order.append(bytes(taken))

    assert order == [b"high", b"front", b"low", b"back"]


def test_huey_queues_on_redis_at_the_left_and_takes_from_the_right(redis_url):
    storage = RedisStorage(unique_queue_name(), url=redis_url, blocking=False)
    queue = huey_seam.redis_queue(storage)
    try:
        storage.enqueue(b"first")
        storage.enqueue(b"second")
        queue.conn.rpush(queue.queue_key, b"in front")  # how the kit puts a job back first

        assert queue.conn.lindex(queue.queue_key, -1) == b"in front"
        assert [storage.dequeue() for _ in range(3)] == [b"in front", b"first", b"second"]
        assert queue.flags_key == storage.result_key
    finally:
        storage.flush_queue()


def test_a_sqlite_connection_that_refuses_writes_is_replaced_at_the_next_use(huey, open_read_only):
    open_read_only(huey.storage)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        huey.storage.enqueue(b"refused")

    huey.storage.enqueue(b"taken")

    assert huey.storage.enqueued_items() == [b"taken"]


def test_a_sqlite_connection_is_kept_after_an_error_of_one_statement(huey):
    connection = huey.storage.conn
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        huey.storage.sql("select * from no_such_table")

    assert huey.storage.conn is connection


@pytest.fixture(params=["sqlite", "redis"])
def storage(request, tmp_path):
    """Huey's own storage, SQLite then Redis, with nothing on it yet."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        storage = RedisStorage(unique_queue_name(), url=url, blocking=False)
    else:
        storage = SqliteStorage(unique_queue_name(), filename=str(tmp_path / "q.db"))
    yield storage
    storage.flush_schedule()
    storage.flush_queue()


def test_the_kit_reads_the_due_messages_huey_would_read_in_its_order(storage):
    schedule = huey_seam.redis_queue(storage) or huey_seam.sqlite_queue(storage)
    now = datetime.datetime(2030, 1, 2, 3, 4, 5, 600000)
    for seconds, raw in [(5, b"later"), (0, b"now"), (-3, b"first"), (-1, b"second")]:
        storage.add_to_schedule(raw, now + datetime.timedelta(seconds=seconds))

    due = [raw for _, raw in schedule.due(now, 10)]

    assert due == [bytes(raw) for raw in storage.read_schedule(now)]
    assert due == [b"first", b"second", b"now"]


def test_hueys_scheduler_queues_what_read_schedule_returns_and_nothing_more(huey, seam_task):
    queued = []
    huey.read_schedule = lambda timestamp=None: [seam_task.s(1)]
    huey.enqueue = queued.append
    stop = threading.Event()
    stop.set()  # no wait for the next tick

    Scheduler(huey, stop, interval=1, periodic=False).loop()
    huey.read_schedule = lambda timestamp=None: []
    Scheduler(huey, stop, interval=1, periodic=False).loop()

    assert [task.args for task in queued] == [(1,)]

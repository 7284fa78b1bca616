"""The job history store, on every backend: what it records and what it costs.

Each test builds a bare Huey with a couple of tasks and a History on it, then
plays the worker's part in-process (``run_next`` dequeues and executes, as
``huey_consumer`` does), so every signal fires exactly as in production.
"""

import datetime
import itertools
import sqlite3
import threading
import uuid

import pytest
import redis
from huey import RedisHuey, SqliteHuey

from acme_jobs.kit.backends import open_backend
from acme_jobs.kit.history import History, model
from acme_jobs.kit.serializer import JSONSerializer
from support import unique_queue_name


class Boom(Exception):
    pass


def build(backend, request, tmp_path, **config):
    """A Huey on ``backend`` with three tasks, and a History recording it."""
    options = {"serializer": JSONSerializer(), "results": False, "utc": True}
    name = unique_queue_name()
    if backend == "redis":
        huey = RedisHuey(name, url=request.getfixturevalue("redis_url"), **options)
    else:
        huey = SqliteHuey(name, filename=str(tmp_path / f"{name}.sqlite3"), **options)
        huey.immediate = backend == "memory"
    history = History(huey, config, open_backend(huey))
    huey.signal()(history.on_signal)

    @huey.task(name="greet")
    def greet(payload):
        return {"greeting": f"Hello, {payload['name']}!"}

    @huey.task(name="explode", retries=2)
    def explode(payload):
        raise Boom(payload.get("why", "it broke"))

    @huey.task(name="later", retries=1, retry_delay=60)
    def later(payload):
        raise Boom("try again in a minute")

    history.tasks = {"greet": greet, "explode": explode, "later": later}
    request.addfinalizer(history.store.clear)
    request.addfinalizer(huey.flush)
    return history


@pytest.fixture(params=["sqlite", "memory", "redis"])
def make(request, tmp_path):
    """Build a History on each backend, immediate mode ("memory") included."""
    return lambda **config: build(request.param, request, tmp_path, **config)


@pytest.fixture(params=["sqlite", "redis"])
def make_queued(request, tmp_path):
    """Real queues only: jobs wait until ``run_next`` runs them."""
    return lambda **config: build(request.param, request, tmp_path, **config)


@pytest.fixture
def history(make):
    return make()


@pytest.fixture
def queued(make_queued):
    return make_queued()


def dispatch(history, task_name, payload, retry_of=None):
    task = history.tasks[task_name].s(payload, id=str(uuid.uuid4()))
    assert history.enqueue(task, payload, retry_of=retry_of)
    return task.id


def run_next(history):
    """Do what a worker does with the next queued message."""
    huey = history.huey
    if huey.immediate:
        return  # already ran inside enqueue()
    task = huey.dequeue()
    assert task is not None, "the queue is empty"
    huey.execute(task)


def fail_for_good(history, why="it broke"):
    """Dispatch "explode" and run it until it has no retry left."""
    job_id = dispatch(history, "explode", {"why": why})
    for _ in range(3):  # the first run and two retries
        run_next(history)
    return job_id


def kinds(history, job_id):
    return [e["kind"] for e in history.detail(job_id)["events"]]


# -- recording a job's life ------------------------------------------------------


def test_a_dispatched_job_is_recorded_as_queued_with_its_payload(queued):
    job_id = dispatch(queued, "greet", {"name": "Ana"})

    record = queued.get(job_id)
    assert record["status"] == "queued"
    assert record["payload"] == {"name": "Ana"}
    assert record["name"] == "greet"
    assert record["enqueued_at"] > 0
    assert queued.huey.pending_count() == 1
    assert queued.counts()["queued"] == 1


def test_a_completed_job_has_its_result_times_worker_and_one_attempt(history):
    job_id = dispatch(history, "greet", {"name": "Ana"})
    run_next(history)

    record = history.get(job_id)
    assert record["status"] == "complete"
    assert record["result"] == {"greeting": "Hello, Ana!"}
    assert record["attempt"] == 1
    assert record["worker"] == model.worker_id()
    assert record["enqueued_at"] <= record["started_at"] <= record["finished_at"]
    assert record["duration"] >= 0
    assert kinds(history, job_id) == ["queued", "started", "completed"]


def test_counts_follow_the_job_from_queued_to_complete(history):
    dispatch(history, "greet", {"name": "Ana"})
    run_next(history)

    counts = history.counts()
    assert (counts["complete"], counts["queued"], counts["running"]) == (1, 0, 0)


def test_every_failed_attempt_is_kept_with_its_traceback(history):
    job_id = fail_for_good(history, "disk full")

    detail = history.detail(job_id)
    assert detail["status"] == "failed"
    assert detail["attempt"] == 3
    assert [a["outcome"] for a in detail["attempts"]] == ["failed"] * 3
    for attempt in detail["attempts"]:
        assert attempt["error"]["type"] == "Boom"
        assert "disk full" in attempt["error"]["traceback"]
    assert history.counts()["failed"] == 1


def test_the_api_record_of_a_failure_carries_the_last_traceback(history):
    job_id = fail_for_good(history, "disk full")

    error = history.get(job_id)["error"]
    assert (error["type"], error["message"]) == ("Boom", "disk full")
    assert "Traceback" in error["traceback"]


def test_a_retry_with_a_delay_is_scheduled_at_its_eta_then_queued_when_due(queued):
    job_id = dispatch(queued, "later", {})
    run_next(queued)

    record = queued.get(job_id)
    assert record["status"] == "scheduled"
    assert record["eta"] == pytest.approx(model.now() + 60, abs=5)

    # What the consumer's scheduler does once the ETA has passed:
    huey = queued.huey
    for task in huey.read_schedule(huey._get_timestamp() + datetime.timedelta(seconds=120)):
        huey.enqueue(task)
    assert queued.get(job_id)["status"] == "queued"


def test_a_job_queued_by_huey_itself_is_recorded_too(history):
    # A message that did not go through History.enqueue (a Huey pipeline,
    # a periodic task) still gets a record when Huey queues it.
    task = history.tasks["greet"].s({"name": "Bo"})
    history.huey.enqueue(task)
    run_next(history)

    record = history.get(task.id)
    assert record["status"] == "complete"
    assert record["payload"] == {"name": "Bo"}


def test_a_revoked_job_is_recorded_as_revoked_when_a_worker_reaches_it(queued):
    job_id = dispatch(queued, "greet", {"name": "Ana"})

    assert queued.revoke(job_id)
    run_next(queued)

    assert queued.get(job_id)["status"] == "revoked"
    assert kinds(queued, job_id) == ["queued", "revoke_requested", "revoked"]


def test_only_queued_or_scheduled_jobs_can_be_revoked(history):
    job_id = dispatch(history, "greet", {"name": "Ana"})
    run_next(history)

    assert not history.revoke(job_id)


# -- atomic enqueue and the cost of each write -----------------------------------


def test_an_enqueue_that_fails_leaves_no_record_on_sqlite(tmp_path, request):
    history = build("sqlite", request, tmp_path)
    with history.huey.storage.db(commit=True) as cur:
        cur.execute("drop table task")  # the queue insert will fail
    task = history.tasks["greet"].s({"name": "Ana"})

    with pytest.raises(sqlite3.OperationalError):
        history.enqueue(task, {"name": "Ana"})

    assert history.get(task.id) is None
    history.huey.storage.initialize_schema()  # for the fixture's cleanup


def test_an_enqueue_that_fails_leaves_no_record_on_redis(tmp_path, request):
    history = build("redis", request, tmp_path)
    storage = history.huey.storage
    storage.conn.set(storage.queue_key, "not a list")  # the push will fail
    task = history.tasks["greet"].s({"name": "Ana"})

    with pytest.raises(redis.ResponseError):
        history.enqueue(task, {"name": "Ana"})

    assert history.get(task.id) is None


def test_a_dispatch_writes_the_same_record_as_the_general_write_on_redis(tmp_path, request):
    # A plain dispatch takes a short script (QUEUE_NEW_LUA); any other write
    # goes through the general one. Both must leave the same record behind.
    history = build("redis", request, tmp_path)
    conn = history.store.conn
    quick = history.tasks["greet"].s({"name": "Ana"})
    general = history.tasks["greet"].s({"name": "Ana"})
    at = model.now()

    history.store.apply(
        [history._queued(quick, {"name": "Ana"}, at)],
        message=history.huey.serialize_task(quick),
    )
    history.store.apply(
        [history._queued(general, {"name": "Ana"}, at)],
        message=history.huey.serialize_task(general),
        extra=lambda commands: None,  # anything extra needs the general script
    )

    prefix = history.store.prefix
    assert conn.hgetall(f"{prefix}:job:{quick.id}") == conn.hgetall(f"{prefix}:job:{general.id}")
    for index in (f"{prefix}:state:queued", f"{prefix}:state:queued:greet"):
        assert conn.zscore(index, quick.id) == conn.zscore(index, general.id) == at
    assert history.huey.pending_count() == 2


def test_dispatching_an_id_that_has_a_record_updates_it_and_queues_once(tmp_path, request):
    history = build("redis", request, tmp_path)
    task = history.tasks["greet"].s({"name": "Ana"})
    history.job_enqueued(task, {"name": "Ana"})  # a record, but no message

    assert history.enqueue(task, {"name": "Ana"})

    assert history.huey.pending_count() == 1
    assert history.get(task.id)["status"] == "queued"
    assert kinds(history, task.id) == ["queued", "queued"]


def test_dispatch_is_one_round_trip_on_redis(tmp_path, request, round_trips):
    history = build("redis", request, tmp_path)
    dispatch(history, "greet", {"name": "warm-up"})  # connect, load the script
    task = history.tasks["greet"].s({"name": "Ana"})

    with round_trips() as count:
        history.enqueue(task, {"name": "Ana"})

    assert count() == 1


def test_a_short_job_costs_its_worker_no_round_trip_to_the_history(tmp_path, request, round_trips):
    history = build("redis", request, tmp_path)
    huey = history.huey
    history.tracker.worker_started()  # as in a worker process
    try:
        ids = [dispatch(history, "greet", {"name": name}) for name in ("warm-up", "Ana", "Bo")]
        huey.execute(huey.dequeue())  # connect, load the script
        with round_trips() as with_history:
            huey.execute(huey.dequeue())
        huey.disconnect_signal(history.on_signal)
        with round_trips() as bare:
            huey.execute(huey.dequeue())
    finally:
        history.tracker.worker_stopped()

    assert with_history() == bare()  # the end is written by the tracker's thread
    assert history.get(ids[1])["status"] == "complete"


def run_in_one_batch(history, ids):
    """Run the queued jobs ``ids`` as a worker does, their ends in one write.

    The tracker's thread is held in its first write (the first job's end)
    while the other jobs run, so their ends wait for its next write together.
    Returns the sizes of the writes it made.
    """
    tracker = history.tracker
    batches, writing, go_on = [], threading.Event(), threading.Event()
    write = tracker.write

    def first_write_takes_a_while(items):
        batches.append(len(items))
        if len(batches) == 1:
            writing.set()
            go_on.wait(10)
        write(items)

    tracker.write = first_write_takes_a_while
    tracker.worker_started()
    try:
        run_next(history)
        assert writing.wait(10)
        for _ in ids[1:]:
            run_next(history)
        go_on.set()
    finally:
        tracker.worker_stopped()  # writes what is still pending
        tracker.write = write
    return batches


def test_a_worker_writes_the_ends_of_many_jobs_in_one_round_trip(queued):
    ids = [dispatch(queued, "greet", {"name": f"n{i}"}) for i in range(20)]

    assert run_in_one_batch(queued, ids) == [1, 19]

    assert [queued.get(job_id)["status"] for job_id in ids] == ["complete"] * 20


def test_write_hooks_ride_on_the_signal_writes(history):
    seen = []
    history.write_hooks.append(lambda signal, task, handle: seen.append(signal))

    dispatch(history, "greet", {"name": "Ana"})
    run_next(history)

    assert seen == ["executing", "complete"]


# -- retrying, deleting, recovering ----------------------------------------------


def test_retrying_a_failed_job_links_the_new_job_to_the_original(history):
    failed_id = fail_for_good(history)

    new_id = dispatch(history, "greet", {"name": "again"}, retry_of=failed_id)

    original = history.get(failed_id)
    assert original["status"] == "retried"
    assert original["retried_by"] == new_id
    assert history.get(new_id)["retry_of"] == failed_id
    assert history.counts()["failed"] == 0


def test_a_failed_job_can_only_be_retried_once(queued):
    failed_id = fail_for_good(queued)
    dispatch(queued, "greet", {"name": "again"}, retry_of=failed_id)
    depth = queued.huey.pending_count()

    second = queued.tasks["greet"].s({"name": "twice"})
    assert not queued.enqueue(second, {"name": "twice"}, retry_of=failed_id)

    assert queued.get(second.id) is None
    assert queued.huey.pending_count() == depth


def test_finished_records_can_be_deleted_but_active_ones_cannot(queued):
    done = dispatch(queued, "greet", {"name": "Ana"})
    run_next(queued)
    waiting = dispatch(queued, "greet", {"name": "Bo"})

    assert queued.delete(done)
    assert not queued.delete(waiting)

    assert queued.get(done) is None
    assert queued.counts()["complete"] == 0
    assert queued.get(waiting)["status"] == "queued"


def test_a_recovered_job_shows_worker_lost_as_an_attempt_not_a_failure(queued):
    job_id = dispatch(queued, "greet", {"name": "Ana"})
    queued.on_signal("executing", queued.huey.dequeue())  # then the worker dies

    assert queued.record_recovered(job_id, "worker host:1 stopped beating")

    record = queued.detail(job_id)
    assert record["status"] == "queued"
    assert record["recovered"] == 1
    lost = record["events"][-1]
    assert (lost["kind"], lost["message"]) == ("worker_lost", "worker host:1 stopped beating")
    assert record["attempts"][-1]["outcome"] == "worker lost"
    overview = queued.overview()
    assert (overview["recovered"], overview["failed"]) == (1, 0)


def test_a_parked_job_reports_its_lost_worker_not_an_earlier_failure(queued):
    job_id = dispatch(queued, "explode", {"why": "disk full"})
    run_next(queued)  # the first attempt fails and is queued again
    queued.on_signal("executing", queued.huey.dequeue())  # then the worker dies

    assert queued.record_parked(job_id, "worker host:1 stopped beating")

    error = queued.get(job_id)["error"]
    assert (error["type"], error["message"]) == ("WorkerLost", "worker host:1 stopped beating")


def test_a_job_that_already_finished_is_not_marked_recovered(history):
    job_id = dispatch(history, "greet", {"name": "Ana"})
    run_next(history)

    assert not history.record_recovered(job_id, "late reaper")
    assert history.get(job_id)["status"] == "complete"


def test_other_code_can_add_events_to_a_timeline(history):
    job_id = dispatch(history, "greet", {"name": "Ana"})

    assert history.record_event(job_id, "note", "checked by ops", by="alice")

    last = history.detail(job_id)["events"][-1]
    assert (last["kind"], last["message"], last["by"]) == ("note", "checked by ops", "alice")
    assert not history.record_event("no-such-job", "note")


# -- lists, search, counts -------------------------------------------------------


def test_lists_are_newest_first_and_pages_never_overlap(history):
    ids = []
    for i in range(7):
        ids.append(dispatch(history, "greet", {"name": str(i)}))
        run_next(history)

    seen, cursor = [], None
    for _ in range(4):
        rows, cursor, total = history.page("complete", cursor=cursor, limit=3)
        seen += [row["id"] for row in rows]
        if cursor is None:
            break

    assert total == 7
    assert seen == list(reversed(ids))


def test_queued_jobs_are_listed_oldest_first(queued):
    ids = [dispatch(queued, "greet", {"name": str(i)}) for i in range(3)]

    rows, _, _ = queued.page("queued")

    assert [row["id"] for row in rows] == ids


def test_a_list_can_be_filtered_by_job_name(history):
    dispatch(history, "greet", {"name": "Ana"})
    run_next(history)
    failed = fail_for_good(history)

    rows, _, total = history.page("failed", name="explode")

    assert [row["id"] for row in rows] == [failed]
    assert total == 1
    assert history.counts("greet")["complete"] == 1
    assert history.counts("greet")["failed"] == 0


def test_failures_can_be_searched_by_error_text(history):
    disk = fail_for_good(history, "Disk full on /var")
    fail_for_good(history, "network down")

    rows, cursor, examined = history.search_failed("disk FULL")

    assert [row["id"] for row in rows] == [disk]
    assert cursor is None
    assert examined == 2


def test_search_reads_at_most_its_budget_and_can_continue(history):
    for i in range(5):
        fail_for_good(history, f"error {i}")

    rows, cursor, examined = history.search_failed("error", budget=2)
    more, _, _ = history.search_failed("error", cursor=cursor, budget=10)

    assert examined == 2
    assert len(rows) == 2
    assert len(rows) + len(more) == 5


# -- retention and rollups -------------------------------------------------------


def test_completed_records_beyond_the_count_limit_are_pruned_oldest_first(make):
    history = make(HISTORY_COMPLETED_MAX_COUNT=3)
    ids = []
    for i in range(6):
        ids.append(dispatch(history, "greet", {"name": str(i)}))
        run_next(history)

    assert history.counts()["complete"] == 3
    assert [history.get(i) is None for i in ids] == [True] * 3 + [False] * 3


def test_jobs_ended_in_one_write_are_counted_and_pruned_like_jobs_ended_one_by_one(
    make_queued,
):
    history = make_queued(HISTORY_COMPLETED_MAX_COUNT=3)
    ids = [dispatch(history, "greet", {"name": str(i)}) for i in range(6)]

    assert run_in_one_batch(history, ids) == [1, 5]

    assert history.counts()["complete"] == 3
    assert [history.get(i) is None for i in ids] == [True] * 3 + [False] * 3
    last_two_minutes = history.overview()["per_minute"][-2:]
    assert sum(minute["complete"] for minute in last_two_minutes) == 6


def test_failed_records_are_kept_by_their_own_longer_limits(make):
    history = make(HISTORY_COMPLETED_MAX_COUNT=1, HISTORY_FAILED_MAX_COUNT=10)
    for _ in range(3):
        fail_for_good(history)
    for i in range(3):
        dispatch(history, "greet", {"name": str(i)})
        run_next(history)

    assert history.counts()["failed"] == 3
    assert history.counts()["complete"] == 1


def test_records_older_than_the_age_limit_are_pruned(make, monkeypatch):
    history = make(HISTORY_COMPLETED_MAX_AGE=3600)
    clock = itertools.count(1_700_000_000, 1800)  # each reading is 30 min later
    monkeypatch.setattr(model, "now", lambda: float(next(clock)))
    ids = []
    for i in range(4):
        ids.append(dispatch(history, "greet", {"name": str(i)}))
        run_next(history)

    survivors = [i for i in ids if history.get(i) is not None]
    assert 0 < len(survivors) < 4
    assert survivors == ids[-len(survivors) :]


def test_the_overview_counts_jobs_per_minute_and_per_job_name(history):
    for _ in range(3):
        dispatch(history, "greet", {"name": "Ana"})
        run_next(history)
    fail_for_good(history)

    overview = history.overview()

    assert len(overview["per_minute"]) == 60
    this_minute = overview["per_minute"][-1]
    assert (this_minute["complete"], this_minute["failed"]) == (3, 3)
    jobs = {job["name"]: job for job in overview["jobs"]}
    assert jobs["greet"]["complete"] == 3
    assert jobs["greet"]["failure_rate"] == 0
    assert jobs["explode"]["failure_rate"] == 1
    assert jobs["greet"]["p50_ms"] is not None


def test_the_overview_reports_how_long_the_oldest_queued_job_has_waited(queued):
    dispatch(queued, "greet", {"name": "Ana"})

    overview = queued.overview()

    assert overview["counts"]["queued"] == 1
    assert overview["queue_depth"] == 1
    assert 0 <= overview["latency"] < 5


def test_percentiles_come_from_the_duration_histogram():
    histogram = {
        model.duration_bucket(3): 90,  # 90 runs took 2-5 ms
        model.duration_bucket(150): 10,  # 10 took 100-200 ms
    }

    assert model.percentile_ms(histogram, 0.50) == 5
    assert model.percentile_ms(histogram, 0.95) == 200


def test_a_timeline_over_its_size_cap_keeps_its_first_and_newest_events(make):
    history = make(HISTORY_EVENTS_MAX_BYTES=600)
    job_id = dispatch(history, "greet", {"name": "Ana"})
    for i in range(30):
        history.record_event(job_id, "note", f"note number {i}")

    events = history.detail(job_id)["events"]
    assert events[0]["kind"] == "queued"
    assert events[-1]["message"] == "note number 29"
    assert len(events) < 30


# -- workers ---------------------------------------------------------------------


def test_a_worker_publishes_a_heartbeat_with_its_running_jobs(queued):
    tracker = queued.tracker
    tracker.worker_started()
    try:
        job_id = dispatch(queued, "greet", {"name": "Ana"})
        queued.on_signal("executing", queued.huey.dequeue())
        tracker.tick(model.now() + 1)

        (worker,) = queued.workers()
        assert worker["id"] == model.worker_id()
        assert worker["alive"]
        assert [job["id"] for job in worker["jobs"]] == [job_id]
    finally:
        tracker.worker_stopped()


def test_a_worker_whose_heartbeat_is_stale_shows_as_dead(history):
    history.tracker.worker_started()
    try:
        history.tracker.tick(model.now())
        later = model.now() + history.settings.worker_dead_after + 1

        (worker,) = history.workers(at=later)

        assert not worker["alive"]
    finally:
        history.tracker.worker_stopped()


def test_a_stopped_worker_leaves_the_workers_list(history):
    history.tracker.worker_started()
    history.tracker.tick(model.now())

    history._worker_stopped()

    assert history.workers() == []


def test_a_long_job_shows_as_running_once_the_publish_delay_has_passed(queued):
    tracker = queued.tracker
    tracker.worker_started()
    try:
        job_id = dispatch(queued, "greet", {"name": "Ana"})
        queued.on_signal("executing", queued.huey.dequeue())
        assert queued.get(job_id)["status"] == "queued"  # not written yet

        tracker.tick(model.now() + 1)

        record = queued.get(job_id)
        assert (record["status"], record["attempt"]) == ("running", 1)
    finally:
        tracker.worker_stopped()


def test_a_short_job_in_a_worker_is_written_once_with_its_start(queued):
    queued.tracker.worker_started()
    try:
        job_id = dispatch(queued, "greet", {"name": "Ana"})
        run_next(queued)  # finishes well within the publish delay
        queued.flush()

        record = queued.detail(job_id)
        assert (record["status"], record["attempt"]) == ("complete", 1)
        assert kinds(queued, job_id) == ["queued", "started", "completed"]
    finally:
        queued.tracker.worker_stopped()

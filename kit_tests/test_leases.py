"""Leases, the reaper and retry backoff, in-process, on SQLite and on Redis.

A "worker" here is a lease manager: the app's own, and a second one standing
in for another process. Killing a worker is making its registration lapse.
"""

import threading
import time

import pytest
from huey import signals as S
from huey.constants import EmptyData

from acme_jobs import create_app
from acme_jobs.kit import leases, registry, run_state
from acme_jobs.kit.leases import Lease, LeaseManager, LeaseSettings
from acme_jobs.kit.queue import enqueue
from kit_jobs.greet import Pessoa
from support import pending, unique_queue_name

PESSOA = {"nome": "Ana", "idade": 30}


@pytest.fixture(params=["sqlite", "redis"])
def app(request, tmp_path):
    config = {"TESTING": True, "QUEUE_NAME": unique_queue_name(), "MAX_RECOVERIES": 2}
    if request.param == "redis":
        config["REDIS_URL"] = request.getfixturevalue("redis_url")
    else:
        config.update(REDIS_URL=None, SQLITE_PATH=str(tmp_path / "queue.sqlite3"))
    return create_app(config)


@pytest.fixture
def manager(app) -> LeaseManager:
    return app.extensions["jobkit"].leases


def another_worker(manager: LeaseManager) -> LeaseManager:
    """A second worker process on the same queue (with its own id)."""
    other = LeaseManager(manager.huey, manager.store, manager.settings, manager.reaper.lost_policy)
    other.listeners = manager.listeners
    return other


def die(manager: LeaseManager) -> None:
    """What a SIGKILL looks like from outside: the registration lapses."""
    manager.store.register(manager.worker, time.time() - 1)


def queued_job(app, payload=PESSOA, name="testGreet") -> str:
    with app.app_context():
        return enqueue(name, payload)


def lease_of(task):
    """The lease the worker took with ``task`` (in the task's run state)."""
    return run_state.peek(task).lease


def record(app, job_id):
    return app.extensions["jobkit"].history.detail(job_id)


def test_taking_a_job_leases_it_in_the_same_step(app, manager):
    job_id = queued_job(app)

    task = manager.take()

    assert task.id == job_id
    assert pending(app) == 0
    assert [lease.raw for lease in manager.store.own(manager.worker)] == [lease_of(task).raw]


def test_finishing_a_run_releases_its_lease(app, manager):
    queued_job(app)
    task = manager.take()

    manager.finish(task)

    assert manager.store.own(manager.worker) == []
    manager.finish(task)  # twice is harmless


def test_the_history_write_carries_the_release(app, manager):
    queued_job(app)
    task = manager.take()

    app.extensions["jobkit"].huey.execute(task)  # complete: the history writes once

    assert manager.store.own(manager.worker) == []
    assert record(app, task.id)["status"] == "complete"


def revoke_each_job_as_it_starts(app):
    """Revoke a job while it runs: from Huey's "executing" signal, after its check."""
    huey = app.extensions["jobkit"].huey

    @huey.signal(S.SIGNAL_EXECUTING)
    def revoke(signal, task):
        huey.revoke_by_id(task.id)

    return revoke


def revoke_flag(app, job_id):
    return app.extensions["jobkit"].huey.storage.peek_data(f"r:{job_id}")


def test_a_job_revoked_before_a_worker_takes_it_is_not_run(app, manager):
    job_id = queued_job(app)
    app.extensions["jobkit"].huey.revoke_by_id(job_id, revoke_once=True)
    task = manager.take()

    app.extensions["jobkit"].huey.execute(task)

    assert record(app, job_id)["status"] == "revoked"
    assert manager.store.own(manager.worker) == []
    assert revoke_flag(app, job_id) is EmptyData  # revoked once: used up


def test_a_revoke_that_comes_while_the_job_runs_is_cleared_with_its_release(app, manager):
    revoke_each_job_as_it_starts(app)
    job_id = queued_job(app)
    task = manager.take()

    app.extensions["jobkit"].huey.execute(task)

    assert record(app, job_id)["status"] == "complete"
    assert manager.store.own(manager.worker) == []
    assert revoke_flag(app, job_id) is EmptyData


def test_the_retry_of_a_run_revoked_while_it_ran_is_not_skipped(app, manager):
    @registry.job("testFailsOnce", schema=Pessoa, retries=1)
    def fails_once(data):
        if data["idade"] == 0:
            raise ValueError("not this time")

    try:
        app = create_app(dict(app.config))
        manager, huey = app.extensions["jobkit"].leases, app.extensions["jobkit"].huey
        job_id = queued_job(app, {"nome": "Ana", "idade": 0}, name="testFailsOnce")
        revoking = revoke_each_job_as_it_starts(app)
        flag_when_queued = []
        huey.signal(S.SIGNAL_ENQUEUED)(
            lambda signal, task: flag_when_queued.append(revoke_flag(app, task.id))
        )
        huey.execute(manager.take())  # fails, and the retry is queued at once
        huey.disconnect_signal(revoking)
        huey.execute(manager.take())
    finally:
        del registry._registry["testFailsOnce"]

    # Any worker could have taken the retry as soon as it was queued.
    assert flag_when_queued == [EmptyData]
    assert record(app, job_id)["status"] == "failed"  # it ran again, and failed for good
    assert manager.store.own(manager.worker) == []


def taken_while_waiting(app):
    """Queue a job while a worker waits on the empty Redis queue; its id and what it took."""
    huey = app.extensions["jobkit"].huey
    taken = []

    def worker():
        deadline = time.monotonic() + 10
        while not taken and time.monotonic() < deadline:
            task = huey.dequeue()
            if task is not None:
                taken.append(task)

    waiting = threading.Thread(target=worker)
    waiting.start()
    deadline = time.monotonic() + 10
    while not any(c["cmd"] == "blmove" for c in huey.storage.conn.client_list()):
        assert time.monotonic() < deadline, "the worker never waited for a job"
        time.sleep(0.01)
    job_id = queued_job(app)
    waiting.join()
    return job_id, taken[0]


def test_a_worker_waiting_for_a_job_reads_its_revoke_flags_as_it_takes_it(redis_url):
    app = create_app({"TESTING": True, "QUEUE_NAME": unique_queue_name(), "REDIS_URL": redis_url})

    job_id, task = taken_while_waiting(app)

    assert task.id == job_id
    # Read in the take's round trip (None: Huey would read them itself): none set.
    assert list(lease_of(task).revocations.values()) == [None, None]


def test_a_job_a_waiting_worker_takes_is_not_run_when_its_type_is_revoked(redis_url):
    app = create_app({"TESTING": True, "QUEUE_NAME": unique_queue_name(), "REDIS_URL": redis_url})
    huey = app.extensions["jobkit"].huey
    app.extensions["jobkit"].tasks["testGreet"].revoke()

    job_id, task = taken_while_waiting(app)
    huey.execute(task)

    assert record(app, job_id)["status"] == "revoked"


def test_a_worker_starts_and_ends_a_job_in_one_round_trip_to_redis(redis_url, round_trips):
    app = create_app({"TESTING": True, "QUEUE_NAME": unique_queue_name(), "REDIS_URL": redis_url})
    huey, tracker = app.extensions["jobkit"].huey, app.extensions["jobkit"].history.tracker
    queued_job(app)
    second = queued_job(app)
    tracker.worker_started()  # as in a worker process: ends are written behind
    try:
        huey.execute(huey.dequeue())  # connect, load the scripts
        with round_trips() as count:
            huey.execute(huey.dequeue())  # take and revoke check, run, end
        tracker.drain()
    finally:
        tracker.worker_stopped()

    assert count() == 1  # bare Huey: BRPOP, HMGET, HDEL and its result
    assert record(app, second)["status"] == "complete"
    assert app.extensions["jobkit"].leases.store.own(app.extensions["jobkit"].leases.worker) == []


def test_the_reaper_requeues_the_job_of_a_dead_worker_with_its_retries_untouched(app, manager):
    job_id = queued_job(app)
    task = manager.take()
    die(manager)

    done = another_worker(manager).reap()

    assert [(r.job_id, r.requeued, r.recoveries) for r in done] == [(job_id, True, 1)]
    assert pending(app) == 1
    again = app.extensions["jobkit"].huey.dequeue()  # the message as it was
    assert (again.id, again.retries) == (job_id, task.retries)
    history = record(app, job_id)
    assert history["status"] == "queued"
    assert history["recovered"] == 1
    lost = history["events"][-1]
    assert lost["kind"] == "worker_lost"
    assert "queued again, retries untouched" in lost["message"]


def test_a_recovered_job_goes_to_the_front_of_the_queue(app, manager):
    lost = queued_job(app)
    manager.take()
    backlog = [queued_job(app) for _ in range(3)]
    die(manager)

    another_worker(manager).reap()

    huey = app.extensions["jobkit"].huey
    assert [huey.dequeue().id for _ in range(4)] == [lost, *backlog]


def test_a_live_worker_keeps_its_leases(app, manager):
    queued_job(app)
    manager.take()
    manager.beat()

    assert another_worker(manager).reap() == []
    assert pending(app) == 0


@pytest.fixture
def job_with(app):
    """An app with one more job, registered with the given options."""
    added = []

    def register(name, **options):
        registry.job(name, schema=Pessoa, **options)(lambda data: data)
        added.append(name)
        return create_app(dict(app.config))

    yield register
    for name in added:
        del registry._registry[name]


def test_a_job_with_the_default_retries_runs_again_when_its_worker_dies(job_with):
    app = job_with("testDefaults")
    manager = app.extensions["jobkit"].leases
    job_id = queued_job(app, name="testDefaults")
    manager.take()
    die(manager)

    [recovery] = another_worker(manager).reap()

    assert recovery.requeued
    assert app.extensions["jobkit"].huey.dequeue().id == job_id
    assert record(app, job_id)["status"] == "queued"


def test_a_job_that_must_not_run_twice_is_parked_when_its_worker_dies(job_with):
    app = job_with("testAtMostOnce", retries=3, on_worker_lost="fail")
    manager = app.extensions["jobkit"].leases
    job_id = queued_job(app, name="testAtMostOnce")
    manager.take()
    die(manager)

    [recovery] = another_worker(manager).reap()

    assert not recovery.requeued
    assert pending(app) == 0
    history = record(app, job_id)
    assert history["status"] == "failed"
    assert 'on_worker_lost="fail"' in history["events"][-1]["message"]


def test_a_job_lost_too_often_is_parked_as_a_poison_pill(app, manager):
    job_id = queued_job(app)  # testGreet: three retries; MAX_RECOVERIES is 2
    outcomes = []
    for _ in range(3):
        worker = another_worker(manager)
        worker.take()
        die(worker)
        outcomes += [(r.requeued, r.recoveries) for r in another_worker(manager).reap()]

    assert outcomes == [(True, 1), (True, 2), (False, 3)]
    assert pending(app) == 0
    history = record(app, job_id)
    assert history["status"] == "failed"
    assert "poison pill" in history["events"][-1]["message"]


def test_an_interrupted_job_goes_back_on_the_queue_unchanged(app, manager):
    job_id = queued_job(app)
    task = manager.take()

    assert manager.requeue(task)

    assert not manager.requeue(task)  # once
    assert manager.store.own(manager.worker) == []
    again = app.extensions["jobkit"].huey.dequeue()
    assert (again.id, again.retries) == (job_id, task.retries)


def test_a_worker_shutting_down_gives_back_the_job_it_takes(app, manager):
    first, second = queued_job(app), queued_job(app)
    manager.stopping = lambda: True

    assert manager.take() is None

    assert manager.store.own(manager.worker) == []
    assert pending(app) == 2
    manager.stopping = lambda: False
    assert manager.take().id == first  # still first in line on Redis and SQLite
    assert manager.take().id == second


def test_a_consumer_tells_its_workers_when_it_stops(app, manager):
    consumer = app.extensions["jobkit"].huey.create_consumer(workers=1)
    assert not manager.stopping()

    consumer.stop_flag.set()

    assert manager.stopping()


def unreachable(*args, **kwargs):
    raise ConnectionError("the store went away")


def store_unreachable(manager, monkeypatch, *methods):
    """Make the lease store's ``methods`` fail as an unreachable backend does."""
    monkeypatch.setattr(manager.store, "errors", (ConnectionError,))
    for method in methods:
        monkeypatch.setattr(manager.store, method, unreachable)


def test_a_lease_left_by_a_failed_release_is_dropped_by_the_heartbeat(app, manager, monkeypatch):
    queued_job(app)
    task = manager.take()
    with monkeypatch.context() as patch:
        store_unreachable(manager, patch, "release")
        manager.finish(task)  # the run ended, but its release never reached the store

    manager.beat()
    assert len(manager.store.own(manager.worker)) == 1  # one look: maybe just taken
    manager.beat()
    assert manager.store.own(manager.worker) == []
    assert pending(app) == 0  # done: not queued again


def test_a_lease_no_run_here_knows_of_goes_back_to_the_queue(app, manager):
    job_id = queued_job(app)
    task = manager.take()
    manager._untrack(lease_of(task))  # as if the reply to the take was lost

    manager.beat()
    manager.beat()

    assert manager.store.own(manager.worker) == []
    assert app.extensions["jobkit"].huey.dequeue().id == job_id


def test_a_run_whose_revoke_check_fails_gives_its_job_back(app, manager, monkeypatch):
    job_id = queued_job(app)
    huey = app.extensions["jobkit"].huey
    task = manager.take()

    with monkeypatch.context() as patch:
        patch.setattr(huey, "is_revoked", unreachable)
        with pytest.raises(ConnectionError):
            huey.execute(task)

    assert manager.store.own(manager.worker) == []
    assert huey.dequeue().id == job_id


def test_a_job_that_cannot_be_given_back_yet_is_kept_until_the_store_answers(
    app, manager, monkeypatch
):
    job_id = queued_job(app)
    huey = app.extensions["jobkit"].huey
    task = manager.take()
    with monkeypatch.context() as patch:
        store_unreachable(manager, patch, "requeue")
        patch.setattr(huey, "is_revoked", unreachable)
        with pytest.raises(ConnectionError):
            huey.execute(task)
        for _ in range(2):
            manager._check_own()
        assert len(manager.store.own(manager.worker)) == 1  # kept, in the store

    manager.beat()  # the store answers again

    assert manager.store.own(manager.worker) == []
    assert huey.dequeue().id == job_id


def test_the_job_being_run_is_never_dropped_by_the_heartbeat(app, manager):
    queued_job(app)
    manager.take()

    for _ in range(3):
        manager.beat()

    assert len(manager.store.own(manager.worker)) == 1


def test_one_reaper_at_a_time_on_redis(app, manager):
    if app.extensions["jobkit"].history.backend != "redis":
        pytest.skip("SQLite reapers take turns through its write lock")
    queued_job(app)
    manager.take()
    die(manager)
    assert manager.store.lock("someone-else", 10)

    assert another_worker(manager).reap() == []  # the lock is taken

    manager.store.unlock("someone-else")
    assert len(another_worker(manager).reap()) == 1


def test_a_reaper_that_died_halfway_is_finished_by_the_next(app, manager):
    job_id = queued_job(app)
    manager.take()
    die(manager)
    reaper = another_worker(manager)
    # It adopted the dead worker's lease, then died before settling it.
    [adopted] = list(reaper.store.adopt(manager.worker, reaper.worker))
    assert isinstance(adopted, Lease)
    die(reaper)

    done = another_worker(manager).reap()

    assert [r.job_id for r in done] == [job_id]
    assert pending(app) == 1


# -- taking jobs ahead (Redis) -------------------------------------------------


@pytest.fixture
def prefetching(redis_url):
    """A Redis app whose workers take up to four jobs per round trip."""
    config = {
        "TESTING": True,
        "QUEUE_NAME": unique_queue_name(),
        "REDIS_URL": redis_url,
        "WORKER_PREFETCH": 4,
    }
    return create_app(config)


def test_a_worker_takes_several_jobs_in_one_round_trip_from_a_deep_queue(prefetching, round_trips):
    ids = [queued_job(prefetching) for _ in range(10)]
    manager = prefetching.extensions["jobkit"].leases

    # This thread's requests only: the history's thread may write meanwhile.
    with round_trips() as count:
        taken = [manager.take().id for _ in range(4)]

    assert taken == ids[:4]
    assert count() == 1
    assert pending(prefetching) == 6


def test_a_worker_takes_one_job_at_a_time_from_a_short_queue(prefetching):
    queued_job(prefetching)
    queued_job(prefetching)
    queued_job(prefetching)
    queued_job(prefetching)  # three left after the first: not more than WORKER_PREFETCH

    prefetching.extensions["jobkit"].leases.take()

    assert pending(prefetching) == 3


def test_a_job_recovered_before_is_never_taken_with_others(prefetching):
    ids = [queued_job(prefetching) for _ in range(10)]
    manager = prefetching.extensions["jobkit"].leases
    recoveries = manager.store.recoveries_key
    manager.store.conn.hset(recoveries, mapping={ids[0]: 1, ids[3]: 1})

    assert manager.take().id == ids[0]
    assert pending(prefetching) == 9  # nothing taken behind it
    assert manager.take().id == ids[1]
    assert pending(prefetching) == 7  # ids[2] taken ahead; the batch stops at ids[3]


def test_a_recovery_count_written_while_a_job_of_a_batch_ran_outlives_its_end(prefetching):
    ids = [queued_job(prefetching) for _ in range(10)]
    manager = prefetching.extensions["jobkit"].leases
    huey = prefetching.extensions["jobkit"].huey
    task = manager.take()  # with jobs behind it: none of them had a count
    conn, recoveries = manager.store.conn, manager.store.recoveries_key
    # A reaper that took this worker for dead counted the job as lost; that
    # count is the reaper's, and the job's end here leaves it alone.
    conn.hset(recoveries, task.id, 1)

    huey.execute(task)

    assert task.id == ids[0]
    assert conn.hget(recoveries, task.id) == b"1"


def test_jobs_taken_ahead_go_back_to_the_front_of_the_queue_after_a_while(prefetching):
    ids = [queued_job(prefetching) for _ in range(10)]
    manager = prefetching.extensions["jobkit"].leases
    running = manager.take()

    assert manager.give_back_ahead(older_than=60) == 0  # not waiting that long yet
    assert manager.give_back_ahead(older_than=0) == 3

    assert pending(prefetching) == 9
    assert [lease.raw for lease in manager.store.own(manager.worker)] == [lease_of(running).raw]
    assert manager.take().id == ids[1]


def test_a_worker_stopping_gives_back_the_jobs_it_took_ahead(prefetching):
    ids = [queued_job(prefetching) for _ in range(10)]
    manager = prefetching.extensions["jobkit"].leases
    manager.take()
    manager.stopping = lambda: True

    assert manager.take() is None

    assert pending(prefetching) == 9
    manager.stopping = lambda: False
    assert manager.take().id == ids[1]


def test_jobs_a_dead_worker_took_ahead_run_again_without_costing_an_attempt(prefetching):
    ids = [queued_job(prefetching) for _ in range(10)]
    manager = prefetching.extensions["jobkit"].leases
    manager.take()
    die(manager)

    done = {r.job_id: r for r in another_worker(manager).reap()}

    assert pending(prefetching) == 10
    running = done[ids[0]]
    assert (running.counted, running.recoveries, running.retries_left) == (True, 1, 3)
    assert record(prefetching, ids[0])["attempt"] == 1
    for job_id in ids[1:4]:
        ahead = done[job_id]
        assert (ahead.counted, ahead.recoveries, ahead.retries_left) == (False, 0, 3)
        history = record(prefetching, job_id)
        assert (history["status"], history["attempt"]) == ("queued", 0)
        assert history["events"][-1]["kind"] == "worker_lost"
        # From now on it is taken alone, never in a batch.
        assert manager.store.conn.hexists(manager.store.recoveries_key, job_id)


def test_the_job_a_dead_worker_ran_after_its_first_counts_as_an_attempt(prefetching):
    ids = [queued_job(prefetching) for _ in range(10)]
    manager = prefetching.extensions["jobkit"].leases
    huey = prefetching.extensions["jobkit"].huey
    huey.execute(manager.take())  # the first job of the batch ran, and its lease is gone
    manager.take()  # the second, taken ahead, is running when the worker dies
    die(manager)

    done = {r.job_id: r for r in another_worker(manager).reap()}

    assert done[ids[1]].counted
    assert record(prefetching, ids[1])["attempt"] == 1
    assert not any(done[job_id].counted for job_id in ids[2:4])


def test_a_revoke_reaches_a_job_taken_ahead_whose_flags_are_old(prefetching, monkeypatch):
    ids = [queued_job(prefetching) for _ in range(10)]
    manager = prefetching.extensions["jobkit"].leases
    huey = prefetching.extensions["jobkit"].huey
    manager.take()
    huey.revoke_by_id(ids[1])  # after the take read its flags
    monkeypatch.setattr(leases.ahead, "PREFETCH_FRESH", 0)

    huey.execute(manager.take())

    assert record(prefetching, ids[1])["status"] == "revoked"


def test_a_message_no_worker_can_read_is_set_aside_alone(prefetching):
    ids = [queued_job(prefetching) for _ in range(10)]
    manager = prefetching.extensions["jobkit"].leases
    queue_key = prefetching.extensions["jobkit"].huey.storage.queue_key
    manager.store.conn.rpush(queue_key, b"not a job")  # first in line

    with pytest.raises(ValueError):
        manager.take()

    assert manager.store.conn.lrange(manager.store.dead_key, 0, -1) == [b"not a job"]
    assert manager.store.own(manager.worker) == []
    assert pending(prefetching) == 10  # nothing was taken with it
    assert manager.take().id == ids[0]


def test_sqlite_workers_take_one_job_at_a_time(tmp_path):
    config = {"TESTING": True, "REDIS_URL": None, "WORKER_PREFETCH": 4}
    app = create_app({**config, "SQLITE_PATH": str(tmp_path / "queue.sqlite3")})
    for _ in range(10):
        queued_job(app)

    app.extensions["jobkit"].leases.take()

    assert pending(app) == 9


def test_lease_timings_are_checked():
    with pytest.raises(ValueError, match="at least twice"):
        LeaseSettings.from_config({"LEASE_TIMEOUT": 5, "LEASE_HEARTBEAT": 5})
    settings = LeaseSettings.from_config({"LEASE_TIMEOUT": None})
    assert settings.recovery_bound == 40  # the default: within a minute
    with pytest.raises(ValueError, match="WORKER_PREFETCH"):
        LeaseSettings.from_config({"WORKER_PREFETCH": 0})


def test_retry_delays_grow_exponentially_with_jitter_and_a_cap():
    job = registry.Job("x", Pessoa, lambda d: d, retries=9, retry_delay=2,
                   retry_max_delay=30)  # fmt: skip

    longest = [job.next_retry_delay(n, rand=lambda: 0.0) for n in range(1, 7)]
    shortest = [job.next_retry_delay(n, rand=lambda: 1.0) for n in range(1, 7)]

    assert longest == [2, 4, 8, 16, 30, 30]
    assert shortest == [1, 2, 4, 8, 15, 15]  # equal jitter: at least half


def test_job_options_are_checked():
    with pytest.raises(ValueError, match="go together"):
        registry.job("testBad", schema=Pessoa, unique_for=10)
    with pytest.raises(ValueError, match="retry_backoff"):
        registry.job("testBad", schema=Pessoa, retry_backoff=0.5)

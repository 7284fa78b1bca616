"""Due jobs move from Huey's schedule to its queue in one step, on both backends.

Huey's scheduler takes due jobs off the schedule, then queues them one by
one: a consumer killed in between loses them. The kit's ``read_schedule``
moves them inside the storage instead, after sending the "enqueued" signal
that the job history records. Each test plays the scheduler
(``huey.read_schedule``) and a worker (``leases.take`` and ``huey.execute``)
in-process; test_reliability.py kills a real consumer while it moves them.
"""

import datetime
import uuid

import pytest
from huey import signals as S

from acme_jobs import create_app
from acme_jobs.kit import huey_seam, registry, run_state
from acme_jobs.kit.queue import enqueue
from kit_jobs.greet import Pessoa

PESSOA = {"nome": "Ana", "idade": 30}


def kit(app):
    return app.extensions["jobkit"]


def later(app, minutes: float = 10) -> datetime.datetime:
    """The scheduler's "now", that far ahead: every job on the schedule is due."""
    return kit(app).huey._get_timestamp() + datetime.timedelta(minutes=minutes)


def schedule_jobs(app, count: int) -> list[str]:
    """Put testGreet jobs on Huey's schedule, as a worker does with a job not due yet.

    They go on latest first; the ids come back in eta order.
    """
    huey, greet = kit(app).huey, kit(app).tasks["testGreet"]
    start = huey._get_timestamp() + datetime.timedelta(minutes=1)
    tasks = [
        greet.s(PESSOA, id=str(uuid.uuid4()), eta=start + datetime.timedelta(seconds=i))
        for i in range(count)
    ]
    for task in reversed(tasks):
        huey.add_schedule(task)
    return [task.id for task in tasks]


def schedule_handle(app):
    storage = kit(app).huey.storage
    return huey_seam.redis_queue(storage) or huey_seam.sqlite_queue(storage)


def sizes(app) -> tuple[int, int]:
    """How many jobs are on the schedule, and how many on the queue."""
    huey = kit(app).huey
    return huey.scheduled_count(), huey.pending_count()


def status(app, job_id: str) -> str:
    return kit(app).history.get(job_id)["status"]


def kinds(app, job_id: str) -> list[str]:
    return [e["kind"] for e in kit(app).history.detail(job_id)["events"]]


def after_the_history(app, signal: str, receiver) -> None:
    """Call ``receiver(task)`` on ``signal``, after the history has written it.

    Huey calls the receivers of a named signal first, then those of every
    signal (the history's) in the order they were connected.
    """
    kit(app).huey.signal()(lambda sent, task, *args: sent == signal and receiver(task))


def take_all(app) -> list[str]:
    """The ids of the queued jobs, in the order a worker takes them."""
    taken = []
    while (task := kit(app).leases.take()) is not None:
        taken.append(task.id)
    return taken


@pytest.fixture
def flaky_app(leased_app):
    """The app with one more job, testFlaky: its first run fails, with a retry in a minute."""
    runs = []

    @registry.job("testFlaky", schema=Pessoa, retries=1, retry_delay=60)
    def flaky(data):
        runs.append(data)
        if len(runs) == 1:
            raise RuntimeError("not this time")

    try:
        yield create_app(dict(leased_app.config))
    finally:
        del registry._registry["testFlaky"]


def test_due_jobs_go_behind_the_queue_in_eta_order_and_huey_is_given_none(leased_app):
    ids = schedule_jobs(leased_app, 3)
    with leased_app.app_context():
        first = enqueue("testGreet", PESSOA)

    assert kit(leased_app).huey.read_schedule(later(leased_app)) == []

    assert sizes(leased_app) == (0, 4)
    assert take_all(leased_app) == [first, *ids]


def test_due_jobs_are_recorded_as_queued_then_all_move_in_one_step(leased_app):
    ids = schedule_jobs(leased_app, 3)
    seen = []
    after_the_history(
        leased_app,
        S.SIGNAL_ENQUEUED,
        lambda task: seen.append((task.id, status(leased_app, task.id), sizes(leased_app))),
    )

    kit(leased_app).huey.read_schedule(later(leased_app))

    # Each job was recorded as queued while every job was still on the
    # schedule: none went to the queue before its record said so.
    assert seen == [(job_id, "queued", (3, 0)) for job_id in ids]
    assert sizes(leased_app) == (0, 3)
    assert [kinds(leased_app, job_id) for job_id in ids] == [["scheduled", "queued"]] * 3


def test_a_scheduler_stopped_before_its_move_leaves_every_due_job_on_the_schedule(
    leased_app, monkeypatch
):
    ids = schedule_jobs(leased_app, 3)
    handle = type(schedule_handle(leased_app))

    def stopped(self, moves, now):
        raise OSError("the scheduler stopped here")

    with monkeypatch.context() as patched:
        patched.setattr(handle, "move_due", stopped)
        kit(leased_app).huey.read_schedule(later(leased_app))
    assert sizes(leased_app) == (3, 0)

    kit(leased_app).huey.read_schedule(later(leased_app))

    assert sizes(leased_app) == (0, 3)
    # Recorded as queued once, though its signal went out twice.
    assert [kinds(leased_app, job_id) for job_id in ids] == [["scheduled", "queued"]] * 3


def test_a_job_another_scheduler_moved_first_is_not_queued_twice(leased_app):
    schedule_jobs(leased_app, 2)
    handle = schedule_handle(leased_app)
    now = later(leased_app)
    read_by_the_other = handle.due(now, 10)

    kit(leased_app).huey.read_schedule(now)
    moves = [huey_seam.DueMove(ref, raw, raw) for ref, raw in read_by_the_other]

    assert handle.move_due(moves, now) == [False, False]
    assert sizes(leased_app) == (0, 2)


def test_a_late_signal_from_another_scheduler_does_not_undo_a_finished_run(leased_app):
    [job_id] = schedule_jobs(leased_app, 1)
    huey = kit(leased_app).huey
    [(_, raw)] = schedule_handle(leased_app).due(later(leased_app), 10)
    huey.read_schedule(later(leased_app))
    huey.execute(kit(leased_app).leases.take(), later(leased_app))
    assert status(leased_app, job_id) == "complete"

    # Another scheduler read the job before this one moved it, and says so now.
    late = huey.deserialize_task(raw)
    run_state.of(late).from_schedule = True
    huey_seam.emit(huey, S.SIGNAL_ENQUEUED, late)

    assert status(leased_app, job_id) == "complete"
    assert kinds(leased_app, job_id) == ["scheduled", "queued", "started", "completed"]


def test_an_unreadable_message_on_the_schedule_does_not_hold_up_the_jobs_due_with_it(
    leased_app,
):
    huey = kit(leased_app).huey
    huey.storage.add_to_schedule(b"not a message", huey._get_timestamp())
    [job_id] = schedule_jobs(leased_app, 1)

    huey.read_schedule(later(leased_app))

    assert sizes(leased_app) == (0, 2)
    assert status(leased_app, job_id) == "queued"
    # The worker that takes it sets it aside, as any unreadable message.
    with pytest.raises(ValueError):
        kit(leased_app).leases.take()
    assert take_all(leased_app) == [job_id]


def test_a_due_job_with_an_expiry_gets_it_resolved_anew_as_huey_would_queue_it(leased_app):
    huey = kit(leased_app).huey
    now = huey._get_timestamp()
    task = kit(leased_app).tasks["testGreet"].s(PESSOA, eta=now, expires=60)
    task.expires_resolved = now - datetime.timedelta(hours=1)  # resolved when first queued
    huey.add_schedule(task)

    huey.read_schedule(later(leased_app, minutes=0))

    queued = kit(leased_app).leases.take()
    assert queued.expires_resolved >= now + datetime.timedelta(seconds=60)


def test_a_retry_waiting_on_the_schedule_shows_as_scheduled_then_queued_then_running(
    flaky_app,
):
    huey, leases = kit(flaky_app).huey, kit(flaky_app).leases
    with flaky_app.app_context():
        job_id = enqueue("testFlaky", PESSOA)
    running = []
    after_the_history(
        flaky_app, S.SIGNAL_EXECUTING, lambda task: running.append(status(flaky_app, task.id))
    )
    huey.execute(leases.take())  # fails: the retry waits on the schedule
    assert (status(flaky_app, job_id), sizes(flaky_app)) == ("scheduled", (1, 0))

    huey.read_schedule(later(flaky_app))
    assert (status(flaky_app, job_id), sizes(flaky_app)) == ("queued", (0, 1))
    huey.execute(leases.take(), later(flaky_app))  # a worker's "now" is past the eta too

    assert running == ["running", "running"]
    assert status(flaky_app, job_id) == "complete"
    assert kinds(flaky_app, job_id) == [
        "queued", "started", "failed", "scheduled", "queued", "started", "completed",
    ]  # fmt: skip

"""Named queues with weights, on SQLite and on Redis, in-process.

A "worker" is the app's lease manager (``leases.take`` and ``huey.execute``),
serving the queues of the app's ``WORKER_QUEUES``; test_delays.py covers
delayed dispatch, and a real consumer started with ``--queues``.
"""

import collections
import time

import pytest

from acme_jobs import create_app
from acme_jobs.kit import consumer, queues, registry
from acme_jobs.kit.leases import LeaseManager
from acme_jobs.kit.queue import enqueue
from kit_jobs.greet import Pessoa
from support import unique_queue_name
from test_metrics import TOKEN, scrape, value

PESSOA = {"nome": "Ana", "idade": 30}
WEIGHTS = {"critical": 6, "default": 3, "low": 1}
# A job per queue, registered for these tests only.
JOBS = {"critical": "testCritical", "default": "testDefault", "low": "testLow"}
failures: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def queued_jobs():
    """testCritical, testDefault and testLow: no-ops in their named queues.

    testLow may also be sent to "default"; testCritical fails once per
    name in ``failures`` (its retry waits for nothing).
    """

    def critical(data):
        if data["nome"] in failures:
            failures.remove(data["nome"])
            raise RuntimeError("not this time")

    registry.job("testCritical", schema=Pessoa, queue="critical", retries=1)(critical)
    registry.job("testDefault", schema=Pessoa)(lambda data: None)
    registry.job("testLow", schema=Pessoa, queue="low", queues=["default"])(lambda data: None)
    yield
    for name in JOBS.values():
        del registry._registry[name]


def make_app(request, tmp_path, **settings):
    config = {"TESTING": True, "QUEUE_NAME": unique_queue_name(), "WORKER_QUEUES": WEIGHTS}
    if request.param == "redis":
        config["REDIS_URL"] = request.getfixturevalue("redis_url")
    else:
        config.update(REDIS_URL=None, SQLITE_PATH=str(tmp_path / "queue.sqlite3"))
    return create_app({**config, **settings})


@pytest.fixture(params=["sqlite", "redis"])
def app(request, tmp_path):
    return make_app(request, tmp_path)


@pytest.fixture(params=["sqlite", "redis"])
def strict_app(request, tmp_path):
    return make_app(request, tmp_path, STRICT_PRIORITY=True)


def kit(app):
    return app.extensions["jobkit"]


def manager(app) -> LeaseManager:
    return kit(app).leases


def dispatch(app, home: str, count: int = 1, **options) -> list[str]:
    """Queue ``count`` jobs of the test job whose own queue is ``home``."""
    with app.app_context():
        return [enqueue(JOBS[home], PESSOA, **options) for _ in range(count)]


def drain(app, limit: int | None = None) -> list[str]:
    """Run queued jobs as one worker does; the queue of each, in the order taken."""
    taken = []
    while limit is None or len(taken) < limit:
        task = kit(app).huey.dequeue()  # with the pauses, as a worker takes
        if task is None:
            break
        taken.append(queues.of_task(task))
        kit(app).huey.execute(task)
    return taken


def depth(app, queue: str) -> int:
    """How many jobs wait in one named queue, read from the backend itself."""
    huey = kit(app).huey
    storage = huey.storage
    if kit(app).backend.name == "redis":
        return storage.conn.llen(queues.redis_key(storage.queue_key, queue))
    name = queues.sqlite_name(storage.name, queue)
    return storage.sql("select count(*) from task where queue = ?", (name,), results=True)[0][0]


def serve(app, weights, strict=False) -> None:
    """What ``--queues`` does in a worker process."""
    kit(app).huey.queues.serve(weights, strict)


def test_a_job_waits_in_the_queue_it_declares(app):
    dispatch(app, "critical", 2)
    dispatch(app, "low")

    assert [depth(app, q) for q in ("critical", "default", "low")] == [2, 0, 1]


def test_a_dispatch_may_send_a_job_to_another_queue_it_allows(app):
    dispatch(app, "low", queue="default")

    assert (depth(app, "default"), depth(app, "low")) == (1, 0)
    with pytest.raises(ValueError, match="may go to these queues only: low, default"):
        dispatch(app, "low", queue="critical")
    assert depth(app, "critical") == 0


@pytest.fixture(params=["sqlite", "redis"])
def open_app(request, tmp_path):
    return make_app(request, tmp_path, JOBS_API_OPEN=True)


def test_over_http_a_dispatch_may_send_a_job_to_another_queue_it_allows(open_app):
    client = open_app.test_client()

    sent = client.post(f"/jobs/{JOBS['low']}?queue=default", json=PESSOA)
    refused = client.post(f"/jobs/{JOBS['low']}?queue=critical", json=PESSOA)

    assert sent.status_code == 202
    assert (refused.status_code, refused.json["error"]) == (422, "invalid_queue")
    assert [depth(open_app, name) for name in ("default", "low", "critical")] == [1, 0, 0]
    assert kit(open_app).history.get(sent.json["id"])["queue"] == "default"


def test_a_worker_takes_only_from_the_queues_it_serves(app):
    dispatch(app, "critical")
    dispatch(app, "default")
    serve(app, {"critical": 1})

    assert drain(app) == ["critical"]
    assert depth(app, "default") == 1


def test_weighted_takes_share_the_first_thousand_by_weight(app):
    """3,000 jobs, 1,000 per queue: the first 1,000 taken follow the weights."""
    with app.app_context():
        for i in range(3000):
            enqueue(JOBS[("critical", "default", "low")[i % 3]], PESSOA)

    taken = drain(app, limit=1000)

    counts = collections.Counter(taken)
    shares = {queue: 100 * counts[queue] / len(taken) for queue in WEIGHTS}
    total = sum(WEIGHTS.values())
    print(f"\nweight shares, {kit(app).backend.name}: {shares}")
    for queue, weight in WEIGHTS.items():
        assert abs(shares[queue] - 100 * weight / total) <= 5, shares


def test_with_strict_priority_no_lower_job_starts_while_a_higher_one_waits(strict_app):
    for queue in ("low", "default", "critical"):
        dispatch(strict_app, queue, 20)

    taken = drain(strict_app)

    assert taken == ["critical"] * 20 + ["default"] * 20 + ["low"] * 20


def test_with_strict_priority_a_job_queued_after_a_take_still_starts_first(strict_app):
    dispatch(strict_app, "low", 20)
    first = drain(strict_app, limit=1)  # a worker that took some ahead would run them next

    dispatch(strict_app, "critical")

    assert first + drain(strict_app) == ["low", "critical"] + ["low"] * 19


def test_a_paused_queue_is_skipped_until_it_resumes(app):
    dispatch(app, "critical")
    dispatch(app, "low")
    controls = kit(app).controls

    controls.pause(None, "alice", "maintenance", queue="critical")
    assert drain(app) == ["low"]
    controls.resume(None, "alice", queue="critical")
    assert drain(app) == ["critical"]


def test_a_retry_goes_back_to_its_own_queue(app):
    failures.append("Bia")
    with app.app_context():
        enqueue("testCritical", {"nome": "Bia", "idade": 20})
    serve(app, {"critical": 1})

    assert drain(app, limit=1) == ["critical"]
    assert depth(app, "critical") == 1  # Huey queued the retry: in "critical"
    assert drain(app) == ["critical"]


def test_a_job_given_back_goes_back_to_its_own_queue(app):
    dispatch(app, "low")
    task = manager(app).take()

    assert manager(app).requeue(task)

    assert (depth(app, "low"), depth(app, "default")) == (1, 0)


def test_the_reaper_puts_a_dead_workers_job_back_in_its_own_queue(app):
    dispatch(app, "critical")
    manager(app).take()
    manager(app).store.register(manager(app).worker, time.time() - 1)  # it died
    other = LeaseManager(
        manager(app).huey, manager(app).store, manager(app).settings, lambda name: "retry"
    )

    assert [r.requeued for r in other.reap()] == [True]
    assert (depth(app, "critical"), depth(app, "default")) == (1, 0)


def test_a_held_job_of_a_paused_name_resumes_into_its_own_queue(app):
    controls = kit(app).controls
    controls.pause("testLow", "alice", "later")
    dispatch(app, "low")

    assert drain(app) == []  # set aside
    controls.resume("testLow", "alice")

    assert (depth(app, "low"), depth(app, "default")) == (1, 0)


@pytest.fixture(params=["sqlite", "redis"])
def metrics_app(request, tmp_path):
    return make_app(request, tmp_path, METRICS_TOKEN=TOKEN)


def test_metrics_give_each_named_queues_depth_and_oldest_age(metrics_app):
    dispatch(metrics_app, "critical", 2)
    time.sleep(0.2)

    samples = scrape(metrics_app)

    assert value(samples, "jobs_queue_depth", queue="critical") == 2
    assert value(samples, "jobs_queue_depth", queue="low") == 0
    assert 0.2 <= value(samples, "jobs_oldest_queued_age_seconds", queue="critical") < 30
    assert value(samples, "jobs_oldest_queued_age_seconds", queue="low") == 0


@pytest.fixture(params=["sqlite", "redis"])
def leaseless_app(request, tmp_path):
    return make_app(request, tmp_path, LEASES_ENABLED=False, STRICT_PRIORITY=True)


def test_with_leases_off_hueys_own_take_serves_the_named_queues(leaseless_app):
    dispatch(leaseless_app, "low")
    dispatch(leaseless_app, "critical")

    assert drain(leaseless_app) == ["critical", "low"]


@pytest.mark.parametrize("flag", ["critical=0", "critical=x", "crit ical=1", ""])
def test_the_worker_refuses_a_bad_queues_flag(app, flag, capsys):
    with pytest.raises(SystemExit) as refused:
        consumer.main(kit(app).huey, app.config, ["--queues", flag])

    assert refused.value.code == 2
    assert "--queues" in capsys.readouterr().err

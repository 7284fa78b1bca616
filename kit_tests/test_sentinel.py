"""Redis Sentinel: the kit finds the master through the sentinels and follows a failover.

The failover runs are real processes (failover_harness.py): a primary, a
replica and three sentinels, a web server and a worker, with the primary
SIGKILLed while jobs are dispatched over HTTP. They print what they saw
(run pytest with -s): jobs lost, and how long the web refused dispatches.
KIT_FAILOVER_JOBS sets how many jobs each run dispatches (300; the issue's
full size is 1000, also ``python kit_tests/failover_harness.py --jobs 1000``).
"""

import os
import shutil

import pytest
import redis

import failover_harness
from acme_jobs import create_app
from acme_jobs.kit.backends import sentinel
from support import PrivateRedis, free_port, unique_queue_name, wait_for

JOBS = int(os.environ.get("KIT_FAILOVER_JOBS", "300"))

needs_redis_server = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="no redis-server binary (Sentinel runs on it)"
)


def test_sentinels_are_read_as_host_port_pairs():
    assert sentinel.parse_sentinels("a:26379, b:26380,[::1]:26381") == [
        ("a", 26379),
        ("b", 26380),
        ("::1", 26381),
    ]
    assert sentinel.parse_sentinels(["a:1"]) == [("a", 1)]


@pytest.mark.parametrize("value", ["a", "a:", ":1", "a:b", ""])
def test_a_sentinel_without_host_and_port_is_refused(value):
    with pytest.raises(ValueError, match="REDIS_SENTINELS"):
        sentinel.parse_sentinels(value)


def test_a_wait_as_long_as_the_socket_timeout_is_refused():
    config = {"REDIS_WAIT_REPLICAS": 1, "REDIS_WAIT_TIMEOUT_MS": 1000, "REDIS_SOCKET_TIMEOUT": 1.0}
    with pytest.raises(ValueError, match="REDIS_WAIT_TIMEOUT_MS"):
        sentinel.wait_settings(config)


def test_a_tls_master_url_with_sentinels_is_refused_rather_than_sent_in_clear():
    settings = {"REDIS_SENTINELS": "127.0.0.1:26379", "REDIS_URL": "rediss://:pw@cache/0"}

    with pytest.raises(ValueError, match="TLS"):
        create_app({"TESTING": True, **settings})


def test_an_app_with_sentinels_queues_on_the_master_they_name(tmp_path):
    # No sentinel runs: the pool is built, and asks only when first used.
    app = create_app({"TESTING": True, "REDIS_SENTINELS": "127.0.0.1:1", "REDIS_URL": None})
    pool = app.extensions["jobkit"].huey.storage.pool
    assert pool.service_name == "mymaster"
    assert pool.connection_kwargs["socket_timeout"] == 1.0


def test_sentinel_and_master_credentials_go_where_they_belong(tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "REDIS_SENTINELS": "127.0.0.1:1",
            "REDIS_SENTINEL_MASTER": "jobs",
            "REDIS_SENTINEL_USERNAME": "watcher",
            "REDIS_SENTINEL_PASSWORD": "sentinel-secret",
            # The master's password and database; its host is the sentinels' to say.
            "REDIS_URL": "redis://:master-secret@ignored:6379/3",
        }
    )
    pool = app.extensions["jobkit"].huey.storage.pool
    sentinel_kwargs = pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs

    assert pool.service_name == "jobs"
    assert (pool.connection_kwargs["password"], pool.connection_kwargs["db"]) == (
        "master-secret",
        3,
    )
    assert "host" not in pool.connection_kwargs or pool.connection_kwargs["host"] != "ignored"
    assert (sentinel_kwargs["username"], sentinel_kwargs["password"]) == (
        "watcher",
        "sentinel-secret",
    )


PERSON = {"nome": "Ana", "idade": 30}


@pytest.fixture
def waiting_app(tmp_path):
    """An app whose dispatches wait for one replica, on a private Redis that has none."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server binary for a Redis without replicas")
    server = PrivateRedis(binary, free_port(), tmp_path)
    server.start()
    config = {"TESTING": True, "REDIS_URL": server.url, "QUEUE_NAME": unique_queue_name()}
    yield create_app({**config, "REDIS_WAIT_REPLICAS": 1, "REDIS_WAIT_TIMEOUT_MS": 100})
    server.stop()


@pytest.fixture
def replicated_url(tmp_path):
    """A private Redis with one replica in sync."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server binary to start a replica with")
    primary = PrivateRedis(binary, free_port(), tmp_path)
    primary.start()
    replica_dir = tmp_path / "replica"
    replica_dir.mkdir()
    replica = PrivateRedis(binary, free_port(), replica_dir)
    replica.start()
    # Sync at once, not after Redis' default 5 s wait for more replicas.
    redis.Redis(port=primary.port).config_set("repl-diskless-sync-delay", 0)
    follower = redis.Redis(port=replica.port)
    follower.replicaof("127.0.0.1", primary.port)
    wait_for(lambda: follower.info("replication")["master_link_status"] == "up", "no sync")
    leader = redis.Redis(port=primary.port)
    wait_for(lambda: "online" in str(leader.info("replication").get("slave0")), "not online")
    yield primary.url
    replica.stop()
    primary.stop()


def test_without_the_replicas_a_dispatch_answers_503_not_replicated(waiting_app):
    client = waiting_app.test_client()

    response = client.post("/jobs/testGreet", json=PERSON, headers={"Idempotency-Key": "k1"})

    assert response.status_code == 503
    assert response.get_json()["error"] == "not_replicated"
    assert response.headers["Retry-After"] == "1"


def test_a_job_not_replicated_is_queued_and_its_retry_finds_it(waiting_app):
    client = waiting_app.test_client()
    client.post("/jobs/testGreet", json=PERSON, headers={"Idempotency-Key": "k2"})
    huey = waiting_app.extensions["jobkit"].huey

    # Still no replica: the retry is refused too, and queues nothing more.
    again = client.post("/jobs/testGreet", json=PERSON, headers={"Idempotency-Key": "k2"})

    assert again.get_json()["error"] == "not_replicated"
    assert huey.pending_count() == 1


def test_with_a_replica_in_sync_a_waiting_dispatch_is_accepted(replicated_url):
    # The longest wait the socket timeout allows: a busy machine's replica may be slow.
    settings = {"REDIS_WAIT_REPLICAS": 1, "REDIS_WAIT_TIMEOUT_MS": 900}
    app = create_app({"TESTING": True, "REDIS_URL": replicated_url, **settings})
    conn = redis.Redis.from_url(replicated_url)

    response = app.test_client().post("/jobs/testGreet", json=PERSON)

    assert response.status_code == 202
    assert conn.info("commandstats")["cmdstat_wait"]["calls"] >= 1  # it did wait


def test_a_master_turned_replica_answering_readonly_sends_the_app_to_the_new_one(
    replicated_url, monkeypatch
):
    # The sentinels first name the replica (a master demoted, as the app's
    # pooled connection last knew it), then the real master.
    master = redis.Redis.from_url(replicated_url)
    replica_port = master.info("replication")["slave0"]["port"]
    app = create_app({"TESTING": True, "REDIS_URL": None, "REDIS_SENTINELS": "127.0.0.1:1"})
    pool = app.extensions["jobkit"].huey.storage.pool
    named = iter([("127.0.0.1", replica_port)])
    master_port = master.connection_pool.connection_kwargs["port"]
    monkeypatch.setattr(
        pool.sentinel_manager,
        "discover_master",
        lambda name: next(named, ("127.0.0.1", master_port)),
    )

    response = app.test_client().post("/jobs/testGreet", json=PERSON)

    # READONLY from the replica, the connection dropped, and the one retry
    # asked the sentinels again: the job is on the master.
    assert response.status_code == 202
    replica = redis.Redis(port=replica_port)
    assert replica.info("errorstats")["errorstat_READONLY"]["count"] >= 1
    assert app.extensions["jobkit"].huey.pending_count() == 1


@pytest.mark.slow
@needs_redis_server
def test_with_wait_every_accepted_job_runs_through_a_failover(tmp_path):
    report = failover_harness.run(tmp_path, JOBS, wait_replicas=1)
    print(report.summary())
    # 503 (with Retry-After) while the master is gone, never a 500 or no answer.
    assert set(report.answers) <= {200, 202, 503}, report.summary()
    assert report.answers[503] > 0, "the kill went unnoticed: " + report.summary()
    assert report.no_retry_after == 0
    assert report.unaccepted == 0, report.summary()
    # The worker followed the failover: the jobs accepted after it ran too.
    assert not report.lost, report.summary()


@pytest.mark.slow
@needs_redis_server
def test_without_wait_the_web_and_worker_follow_a_failover(tmp_path):
    report = failover_harness.run(tmp_path, JOBS, wait_replicas=0)
    # Jobs accepted by the primary just before it died may be lost: reported, not asserted.
    print(report.summary())
    assert set(report.answers) <= {200, 202, 503}, report.summary()
    assert report.no_retry_after == 0
    assert report.unaccepted == 0, report.summary()
    assert len(report.ran) >= JOBS - len(report.lost), report.summary()


@pytest.mark.slow
@needs_redis_server
def test_after_a_graceful_failover_the_app_writes_to_the_new_master(tmp_path):
    cluster = failover_harness.SentinelCluster(tmp_path)
    cluster.start()
    try:
        app = create_app(
            {
                "TESTING": True,
                "REDIS_URL": None,
                "REDIS_SENTINELS": cluster.sentinels,
                "QUEUE_NAME": unique_queue_name(),
            }
        )
        client = app.test_client()
        assert client.post("/jobs/testGreet", json=PERSON).status_code == 202
        old = cluster.primary_port
        # A graceful failover: the old master lives on as a replica (and the
        # sentinels close its clients' connections).
        redis.Redis(port=cluster.sentinel_ports[0]).execute_command("SENTINEL FAILOVER", "mymaster")
        demoted = redis.Redis(port=old)
        wait_for(lambda: demoted.info("replication")["role"] == "slave", "no failover", 30)
        wait_for(lambda: cluster.master_port() != old, "the sentinels kept the old master", 30)

        answers = []
        while not answers or answers[-1] != 202:
            answers.append(client.post("/jobs/testGreet", json=PERSON).status_code)
            assert len(answers) < 50, answers

        assert set(answers) <= {202, 503}
        assert app.extensions["jobkit"].huey.pending_count() == 2  # both on the new master
    finally:
        cluster.stop()

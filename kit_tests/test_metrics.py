"""/metrics: Prometheus series for jobs, shared by every process, behind credentials."""

import base64
import json
import time
import urllib.request

import pytest
from huey import signals as S
from prometheus_client.parser import text_string_to_metric_families

from acme_jobs import create_app
from acme_jobs.kit import registry
from acme_jobs.kit.leases import Recovery
from acme_jobs.kit.queue import enqueue
from kit_jobs.greet import Pessoa
from support import unique_queue_name, wait_for

TOKEN = "s3cret-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
PESSOA = {"nome": "Ana", "idade": 30}
COUNTERS = ("enqueued", "completed", "failed", "retried", "recovered", "timed_out")
# METRICS_NAMESPACE defaults to the project's slug.
PREFIX = "acme_jobs_"


def make_app(tmp_path, **config):
    settings = {
        "TESTING": True,
        "REDIS_URL": None,
        "SQLITE_PATH": str(tmp_path / "queue.sqlite3"),
        "METRICS_TOKEN": TOKEN,
    }
    settings.update(config)
    return create_app(settings)


def parse(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample as {(name, sorted labels): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(app) -> dict[tuple[str, tuple], float]:
    response = app.test_client().get("/metrics", headers=BEARER)
    assert response.status_code == 200, response.get_data(as_text=True)
    return parse(response.get_data(as_text=True))


def value(samples, name: str, **labels) -> float | None:
    """The sample ``PREFIX + name`` whose labels include ``labels``, if any."""
    wanted = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == PREFIX + name and wanted <= set(ls)]
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples"
    return found[0] if found else None


# -- access ------------------------------------------------------------


def test_metrics_are_closed_when_no_credentials_are_configured(tmp_path):
    client = make_app(tmp_path, METRICS_TOKEN=None).test_client()

    response = client.get("/metrics")

    assert response.status_code == 403
    assert "FLASK_METRICS_TOKEN" in response.get_data(as_text=True)
    assert "jobs_" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer wrong-token",
        "Bearer",
        "Basic " + base64.b64encode(b"admin:wrong").decode(),
        "Basic not base64!",
        "Token " + TOKEN,
    ],
)
def test_missing_or_wrong_credentials_get_a_401(tmp_path, header):
    app = make_app(tmp_path, MONITOR_USERNAME="admin", MONITOR_PASSWORD="pw")
    headers = {"Authorization": header} if header else {}

    response = app.test_client().get("/metrics", headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert "jobs_" not in response.get_data(as_text=True)


def test_a_bearer_token_opens_the_metrics(tmp_path):
    response = make_app(tmp_path).test_client().get("/metrics", headers=BEARER)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")


def test_the_monitor_user_opens_the_metrics_with_http_basic(tmp_path):
    app = make_app(tmp_path, METRICS_TOKEN=None, MONITOR_USERNAME="admin", MONITOR_PASSWORD="pw")
    basic = "Basic " + base64.b64encode(b"admin:pw").decode()

    response = app.test_client().get("/metrics", headers={"Authorization": basic})

    assert response.status_code == 200


def test_openmetrics_is_served_when_asked_for(tmp_path):
    headers = dict(BEARER, Accept="application/openmetrics-text; version=1.0.0")

    response = make_app(tmp_path).test_client().get("/metrics", headers=headers)

    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.get_data(as_text=True).endswith("# EOF\n")


# -- names and labels ---------------------------------------------------


def run_greet(app) -> None:
    """Queue testGreet once; in immediate mode it runs at once."""
    with app.app_context():
        enqueue("testGreet", PESSOA)


def families(app) -> dict[str, list]:
    response = app.test_client().get("/metrics", headers=BEARER)
    text = response.get_data(as_text=True)
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def test_series_names_start_with_the_project_slug_by_default(tmp_path):
    app = make_app(tmp_path, QUEUE_IMMEDIATE=True)
    run_greet(app)

    names = set(families(app))

    assert "acme_jobs_jobs_completed" in names  # the parser drops counters' _total
    assert "acme_jobs_jobs_queue_depth" in names
    assert all(name.startswith("acme_jobs_jobs_") for name in names)


@pytest.mark.parametrize(("namespace", "prefix"), [("shop", "shop_jobs_"), ("", "jobs_")])
def test_the_namespace_is_configurable(tmp_path, namespace, prefix):
    names = set(families(make_app(tmp_path, METRICS_NAMESPACE=namespace)))

    assert f"{prefix}queue_depth" in names
    assert all(name.startswith(prefix) for name in names)


@pytest.mark.parametrize("namespace", ["9lives", "my-app", "a b", "ns:sub"])
def test_a_namespace_prometheus_would_reject_stops_the_app(tmp_path, namespace):
    with pytest.raises(ValueError, match="METRICS_NAMESPACE"):
        make_app(tmp_path, METRICS_NAMESPACE=namespace)


def test_every_job_series_carries_its_named_queue_as_the_gauges_do(tmp_path):
    app = make_app(tmp_path, QUEUE_IMMEDIATE=True, QUEUE_NAME="billing")
    run_greet(app)

    samples = [sample for found in families(app).values() for sample in found]
    labelled = {sample.labels["queue"] for sample in samples if "queue" in sample.labels}

    assert labelled == {"default"}  # every test job waits in the default queue
    assert value(scrape(app), "jobs_completed_total", queue="default", job_name="testGreet") == 1
    assert value(scrape(app), "jobs_queue_depth", queue="default") == 0


def duration_bounds(app) -> list[float]:
    samples = families(app)["acme_jobs_jobs_duration_seconds"]
    return sorted(float(s.labels["le"]) for s in samples if s.name.endswith("_bucket"))


def test_duration_buckets_reach_the_longest_job_timeout(tmp_path):
    app = make_app(tmp_path, QUEUE_IMMEDIATE=True)
    run_greet(app)
    longest = max(
        app.config["JOB_TIMEOUT"] if job.timeout is None else job.timeout
        for job in registry.all_jobs().values()
    )

    bounds = duration_bounds(app)

    assert longest >= 3600  # importarPessoas
    assert longest in bounds  # a run that long is told apart from +Inf


def test_a_job_timeout_beyond_the_buckets_becomes_a_bucket(tmp_path):
    @registry.job("testVeryLong", schema=Pessoa, timeout=7200)
    def very_long(data):
        return data

    try:
        app = make_app(tmp_path, QUEUE_IMMEDIATE=True, METRICS_DURATION_BUCKETS=[1, 10])
        with app.app_context():
            enqueue("testVeryLong", PESSOA)
        bounds = duration_bounds(app)
    finally:
        del registry._registry["testVeryLong"]

    assert bounds == [1.0, 10.0, 7200.0, float("inf")]


# -- what is counted ----------------------------------------------------


@pytest.fixture
def flaky(tmp_path):
    """An immediate-mode app with a job that always fails and one that works."""

    @registry.job("testAlwaysFails", schema=Pessoa, retries=2)
    def always_fails(data):
        raise RuntimeError("nope")

    yield make_app(tmp_path, QUEUE_IMMEDIATE=True)
    del registry._registry["testAlwaysFails"]


def test_every_series_is_there_before_any_job_ran(tmp_path):
    samples = scrape(make_app(tmp_path))
    names = {name.removeprefix(PREFIX) for name, _ in samples}

    assert {"jobs_queue_depth", "jobs_scheduled", "jobs_workers_alive"} <= names
    assert value(samples, "jobs_queue_depth", queue="default") == 0
    assert value(samples, "jobs_oldest_queued_age_seconds", queue="default") == 0


def test_completed_failed_and_retried_jobs_are_counted_per_job_name(flaky):
    client = flaky.test_client()
    for _ in range(3):
        assert client.post("/jobs/testGreet", json=PESSOA).status_code == 202
    assert client.post("/jobs/testAlwaysFails", json=PESSOA).status_code == 202

    samples = scrape(flaky)

    assert value(samples, "jobs_enqueued_total", job_name="testGreet") == 3
    assert value(samples, "jobs_completed_total", job_name="testGreet") == 3
    assert value(samples, "jobs_failed_total", job_name="testGreet") == 0
    assert value(samples, "jobs_enqueued_total", job_name="testAlwaysFails") == 1
    # Three attempts: two retries, then it fails for good.
    assert value(samples, "jobs_retried_total", job_name="testAlwaysFails") == 2
    assert value(samples, "jobs_failed_total", job_name="testAlwaysFails") == 1
    assert value(samples, "jobs_completed_total", job_name="testAlwaysFails") == 0
    assert value(samples, "jobs_duration_seconds_count", job_name="testGreet") == 3
    assert value(samples, "jobs_duration_seconds_count", job_name="testAlwaysFails") == 3
    assert value(samples, "jobs_duration_seconds_bucket", job_name="testGreet", le="+Inf") == 3
    assert value(samples, "jobs_duration_seconds_sum", job_name="testGreet") < 3


def test_the_duration_histogram_is_cumulative(tmp_path):
    app = make_app(tmp_path, METRICS_DURATION_BUCKETS=[0.1, 1, 10])
    recorder = app.extensions["jobkit"].metrics
    for seconds in (0.05, 0.5, 0.7, 5, 50):
        recorder.observe("slowJob", seconds)

    samples = scrape(app)

    buckets = {
        le: value(samples, "jobs_duration_seconds_bucket", job_name="slowJob", le=le)
        for le in ("0.1", "1.0", "10.0", "+Inf")
    }
    assert buckets == {"0.1": 1, "1.0": 3, "10.0": 4, "+Inf": 5}
    assert value(samples, "jobs_duration_seconds_sum", job_name="slowJob") == pytest.approx(56.25)


def test_timeouts_are_counted_and_only_the_last_one_fails_the_job(tmp_path):
    app = make_app(tmp_path)
    huey = app.extensions["jobkit"].huey
    task = app.extensions["jobkit"].tasks["testGreet"].s(PESSOA)
    task.retries = 1
    huey._emit(S.SIGNAL_EXECUTING, task)
    huey._emit(S.SIGNAL_TIMEOUT, task)  # a retry is left: timed out, not failed
    task.retries = 0
    huey._emit(S.SIGNAL_TIMEOUT, task)  # the last attempt: failed too

    samples = scrape(app)

    assert value(samples, "jobs_timed_out_total", job_name="testGreet") == 2
    assert value(samples, "jobs_failed_total", job_name="testGreet") == 1
    assert value(samples, "jobs_duration_seconds_count", job_name="testGreet") == 2


def test_jobs_of_dead_workers_count_as_recovered_or_failed(tmp_path):
    app = make_app(tmp_path)
    leases = app.extensions["jobkit"].leases
    lost = {"job_name": "testGreet", "worker": "gone:1", "recoveries": 1, "reason": "lost"}
    for listener in leases.listeners:
        listener(Recovery(job_id="a", requeued=True, retries_left=2, **lost))
        listener(Recovery(job_id="b", requeued=False, retries_left=0, **lost))

    samples = scrape(app)

    assert value(samples, "jobs_recovered_total", job_name="testGreet") == 1
    assert value(samples, "jobs_failed_total", job_name="testGreet") == 1


def test_queue_depth_and_the_oldest_jobs_age(tmp_path):
    app = make_app(tmp_path)
    with app.app_context():
        for _ in range(3):
            enqueue("testGreet", PESSOA)
    time.sleep(0.3)

    samples = scrape(app)

    assert value(samples, "jobs_queue_depth", queue="default") == 3
    assert 0.3 <= value(samples, "jobs_oldest_queued_age_seconds", queue="default") < 30


def test_counts_from_other_processes_add_up(tmp_path):
    # Two apps on one queue stand for two processes: each has its own
    # in-memory batch, and the totals live in the shared backend.
    web_a, web_b = make_app(tmp_path), make_app(tmp_path)
    with web_a.app_context():
        enqueue("testGreet", PESSOA)
    with web_b.app_context():
        enqueue("testGreet", PESSOA)
    web_a.extensions["jobkit"].metrics.flush()

    samples = scrape(web_b)

    assert value(samples, "jobs_enqueued_total", job_name="testGreet") == 2


def test_workers_alive_counts_fresh_heartbeats_only(tmp_path):
    app = make_app(tmp_path, METRICS_WORKER_TTL=15)
    store = app.extensions["jobkit"].metrics.store
    now = time.time()
    store.add({}, ("host-a:1", 2, now))
    store.add({}, ("host-b:7", 4, now - 5))
    store.add({}, ("host-c:9", 4, now - 60))  # stopped heartbeating

    samples = scrape(app)

    assert value(samples, "jobs_workers_alive") == 6


def test_a_stopping_worker_removes_its_heartbeat(tmp_path):
    app = make_app(tmp_path)
    recorder = app.extensions["jobkit"].metrics
    recorder.worker_started()
    recorder.worker_started()
    assert value(scrape(app), "jobs_workers_alive") == 2

    recorder.worker_stopped()
    recorder.worker_stopped()

    assert value(scrape(app), "jobs_workers_alive") == 0


def test_counts_wait_in_memory_while_the_backend_is_down(tmp_path, redis_url):
    app = make_app(tmp_path, REDIS_URL=redis_url, QUEUE_NAME=unique_queue_name())
    recorder = app.extensions["jobkit"].metrics
    storage = app.extensions["jobkit"].huey.storage
    good_pool = storage.conn.connection_pool
    broken = type(storage.conn).from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    storage.conn = broken
    recorder.count("enqueued", "testGreet", 5)
    recorder.flush()  # fails, keeps the counts

    storage.conn = type(storage.conn)(connection_pool=good_pool)
    recorder.flush()

    assert value(scrape(app), "jobs_enqueued_total", job_name="testGreet") == 5


def test_the_store_answers_503_when_redis_is_unreachable(tmp_path):
    app = make_app(tmp_path, REDIS_URL="redis://127.0.0.1:1/0")

    response = app.test_client().get("/metrics", headers=BEARER)

    assert response.status_code == 503


# -- real processes -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_scraping_a_running_stack_shows_the_jobs_it_ran(backend, start_stack, monkeypatch, request):
    monkeypatch.setenv("FLASK_METRICS_TOKEN", json.dumps(TOKEN))
    monkeypatch.setenv("FLASK_METRICS_FLUSH_INTERVAL", "0.2")
    redis_url = request.getfixturevalue("redis_url") if backend == "redis" else None
    stack = start_stack(redis_url=redis_url)
    ids = [stack.request("POST", "/jobs/testGreet", PESSOA)[1]["id"] for _ in range(5)]
    for job_id in ids:
        stack.wait_for_status(job_id, {"complete"})

    def get_metrics() -> dict:
        req = urllib.request.Request(stack.base_url + "/metrics", headers=BEARER)
        with urllib.request.urlopen(req, timeout=5) as response:
            return parse(response.read().decode())

    # The worker writes its counts within METRICS_FLUSH_INTERVAL.
    def counted(samples: dict) -> list:
        return [value(samples, f"jobs_{c}_total", job_name="testGreet") for c in COUNTERS[:2]]

    wait_for(lambda: counted(get_metrics()) == [5, 5], "the workers' counts never arrived")
    samples = get_metrics()
    assert value(samples, "jobs_enqueued_total", job_name="testGreet") == 5
    for counter in ("failed", "retried", "recovered", "timed_out"):
        assert value(samples, f"jobs_{counter}_total", job_name="testGreet") == 0
    assert value(samples, "jobs_duration_seconds_count", job_name="testGreet") == 5
    assert value(samples, "jobs_queue_depth", queue="default") == 0
    assert value(samples, "jobs_oldest_queued_age_seconds", queue="default") == 0
    assert value(samples, "jobs_workers_alive") == 2  # --workers 2

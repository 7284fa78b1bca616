"""/healthz says the process is up; /readyz says the queue is reachable and writable."""

from acme_jobs import create_app
from support import free_port


def test_healthz_is_always_ok(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_readyz_is_ok_when_the_queue_answers(queue_client):
    response = queue_client.get("/readyz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "queue": "sqlite"}


def test_readyz_is_a_503_while_the_queue_file_refuses_writes(queue_app, open_read_only):
    open_read_only(queue_app.extensions["jobkit"].huey.storage)

    response = queue_app.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.get_json()["error"] == "attempt to write a readonly database"


def test_readyz_recovers_at_the_next_check_once_the_queue_file_takes_writes(
    queue_app, open_read_only
):
    open_read_only(queue_app.extensions["jobkit"].huey.storage)
    client = queue_app.test_client()

    codes = [client.get("/readyz").status_code, client.get("/readyz").status_code]

    assert codes == [503, 200]


def test_readyz_is_a_503_when_redis_is_unreachable():
    app = create_app({"TESTING": True, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})

    response = app.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.get_json()["status"] == "unavailable"


def test_readyz_is_ok_on_redis(redis_app):
    response = redis_app.test_client().get("/readyz")

    assert response.get_json() == {"status": "ready", "queue": "redis"}

"""/healthz says the process is up; /readyz says the queue is reachable."""

from acme_jobs import create_app
from support import free_port


def test_healthz_is_always_ok(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_readyz_is_ok_when_the_queue_answers(queue_client):
    response = queue_client.get("/readyz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "queue": "sqlite"}


def test_readyz_is_a_503_when_redis_is_unreachable():
    app = create_app({"TESTING": True, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})

    response = app.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.get_json()["status"] == "unavailable"


def test_readyz_is_ok_on_redis(redis_app):
    response = redis_app.test_client().get("/readyz")

    assert response.get_json() == {"status": "ready", "queue": "redis"}

"""The front door, GET /: the app's name and links, as a page or as JSON."""

from flask import Flask

from acme_jobs import create_app
from acme_jobs.kit import JobKit

LINKS = {
    "monitor": "/monitor/",
    "jobs": "/jobs",
    "openapi": "/jobs/openapi.json",
    "health": "/healthz",
}


def test_the_front_door_is_a_page_linking_to_the_monitor_the_api_and_health(client):
    response = client.get("/")

    assert response.status_code == 200
    assert response.content_type == "text/html; charset=utf-8"
    page = response.get_data(as_text=True)
    for href in LINKS.values():
        assert f'href="{href}"' in page


def test_it_answers_json_to_a_client_that_asks_for_json(app, client):
    response = client.get("/", headers={"Accept": "application/json"})

    assert response.get_json() == {"name": app.config["APP_NAME"], "links": LINKS}


def test_a_browsers_accept_header_gets_the_page(client):
    accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

    assert client.get("/", headers={"Accept": accept}).content_type.startswith("text/html")


def test_the_answer_varies_with_accept(client):
    assert "Accept" in client.get("/").headers["Vary"]


def test_the_page_allows_no_script(client):
    csp = client.get("/").headers["Content-Security-Policy"]

    assert "default-src 'none'" in csp
    assert "script-src" not in csp


def test_the_apps_name_is_escaped_in_the_page(tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "REDIS_URL": None,
            "SQLITE_PATH": str(tmp_path / "queue.sqlite3"),
            "APP_NAME": "<script>alert(1)</script>",
        }
    )

    page = app.test_client().get("/").get_data(as_text=True)

    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_without_an_app_name_the_page_shows_the_flask_apps_name(tmp_path):
    app = create_app(
        {"TESTING": True, "REDIS_URL": None, "SQLITE_PATH": str(tmp_path / "q.sqlite3")}
    )
    app.config["APP_NAME"] = None

    answer = app.test_client().get("/", headers={"Accept": "application/json"})

    assert answer.get_json()["name"] == "acme_jobs"


def test_a_root_view_of_the_app_registered_after_the_kit_wins(tmp_path):
    app = create_app(
        {"TESTING": True, "REDIS_URL": None, "SQLITE_PATH": str(tmp_path / "q.sqlite3")}
    )
    app.add_url_rule("/", "home", lambda: "my own home page")

    assert app.test_client().get("/").get_data(as_text=True) == "my own home page"


def test_a_root_view_of_the_app_registered_before_the_kit_wins(tmp_path):
    app = Flask("acme_jobs")
    app.config.update(
        TESTING=True,
        REDIS_URL=None,
        SQLITE_PATH=str(tmp_path / "q.sqlite3"),
        JOBS_PACKAGE="kit_jobs",  # the test-only jobs, as create_app has them
    )
    app.add_url_rule("/", "home", lambda: "my own home page")
    JobKit(app)

    assert app.test_client().get("/").get_data(as_text=True) == "my own home page"


def test_only_the_root_is_the_front_door(client):
    assert client.get("/index.html").status_code == 404

"""Hostile URLs: a ``next`` that points elsewhere, a query string with odd keys.

After login, and after each action form, the monitor goes to ``next``. A
value that reads as a path here but as another host once the response is
written (Werkzeug drops tabs and newlines on the way) or once a browser reads
it (backslashes are slashes) must land on the monitor's index instead, and
never raise. Each value of the corpus is sent percent-encoded, as a link
would carry it.
"""

from urllib.parse import quote, urljoin, urlsplit

import pytest
from werkzeug.urls import iri_to_uri

from acme_jobs.kit.monitor.security import safe_next

from .monitor_helpers import PASSWORD, USERNAME, MonitorClient, dispatch, fail_next

HOSTILE_NEXT = [
    "//evil.example",
    "///evil.example",
    "////evil.example/x",
    "https://evil.example",
    "http:evil.example",
    "HTTPS://evil.example/monitor/",
    "javascript:alert(1)",
    "evil.example",
    "/\t/evil.example",
    "/\r/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    "/\x00/evil.example",
    "/\x0b/evil.example",
    "/\x7f/evil.example",
    "/\x85/evil.example",
    "\t//evil.example",
    " //evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "\\/evil.example",
    "//evil\u3002example",  # an ideographic full stop, which IDNA reads as "."
    "//\u0435vil.example",  # a Cyrillic small letter ie, which looks like "e"
    "//xn--vil-5cd.example",
    "//evil.example@localhost",
    "//localhost@evil.example",
    "/monitor/\r\nSet-Cookie: a=b",
    "/" + "a" * 5000,
]
# Percent-encoded paths stay paths: the browser asks this site for them.
ON_SITE_NEXT = [
    "/monitor/workers",
    "/monitor/jobs/failed?name=testGreet&q=printer on fire",
    "/monitor/job/abc#attempts",
    "/monitor/%2F/evil.example",
    "/%09/evil.example",
    "/monitor/caf\u00e9",
]


def lands_here(location: str) -> bool:
    """Whether a browser on the login page would stay on this site."""
    target = urlsplit(urljoin("http://localhost/monitor/login", location))
    return target.scheme == "http" and target.netloc == "localhost"


@pytest.mark.parametrize("target", HOSTILE_NEXT)
def test_a_hostile_next_falls_back_to_the_monitors_index(target):
    assert safe_next(target, "/monitor/") == "/monitor/"


@pytest.mark.parametrize("target", ON_SITE_NEXT)
def test_a_path_of_this_site_is_kept_as_the_response_will_write_it(target):
    kept = safe_next(target, "/monitor/")

    assert kept != "/monitor/"
    assert iri_to_uri(kept) == kept  # what was checked is what the header says
    assert lands_here(kept)


@pytest.fixture
def logged_in(sqlite_app) -> MonitorClient:
    client = MonitorClient(sqlite_app)
    client.log_in()
    return client


@pytest.mark.parametrize("target", HOSTILE_NEXT + ON_SITE_NEXT)
def test_the_login_page_of_a_logged_in_user_never_sends_them_off_site(logged_in, target):
    response = logged_in.get(f"/monitor/login?next={quote(target, safe='')}")

    assert response.status_code == 302
    assert lands_here(response.headers["Location"])


@pytest.mark.parametrize("target", HOSTILE_NEXT + ON_SITE_NEXT)
def test_logging_in_never_sends_the_browser_off_site(anonymous, target):
    token = anonymous.token_from(anonymous.get("/monitor/login"))
    form = {"username": USERNAME, "password": PASSWORD, "csrf_token": token}

    response = anonymous.client.post(f"/monitor/login?next={quote(target, safe='')}", data=form)

    assert response.status_code == 302
    assert lands_here(response.headers["Location"])


@pytest.mark.parametrize("target", HOSTILE_NEXT + ON_SITE_NEXT)
def test_an_action_forms_next_never_sends_the_browser_off_site(logged_in, target):
    response = logged_in.post("/monitor/resume", {"next": target})

    assert response.status_code == 302
    assert lands_here(response.headers["Location"])


@pytest.mark.parametrize(
    "query", ["next=/%0d/x", "next=/%0a/x", "next=/%00/x", "next=%2F%2Fevil.example", "next=%"]
)
def test_a_raw_encoded_next_gives_the_index_not_an_error(logged_in, query):
    response = logged_in.get(f"/monitor/login?{query}")

    assert response.status_code == 302
    assert response.headers["Location"] == "/monitor/"


# -- odd query strings -------------------------------------------------------------

# Names ``url_for`` reads itself, and keys no page knows.
ODD_QUERIES = [
    "endpoint=x",
    "_method=POST",
    "_external=1&_scheme=javascript",
    "_anchor=x",
    "values=1&status=nope&job_id=x",
    "partial=1&endpoint=x&_method=POST",
    "%00=1&%ff=2&a%5Bb%5D=3",
    "refresh=x&limit=-5&cursor=%00",
]


@pytest.fixture
def failed_job(monitor) -> str:
    dispatch(monitor.app)
    return fail_next(monitor.app)


@pytest.fixture
def monitor_pages(monitor, failed_job) -> list[str]:
    """Every GET page and API route of the monitor, filled with real values."""
    pages = []
    for rule in monitor.app.url_map.iter_rules():
        wanted = rule.endpoint.startswith("monitor.") and rule.endpoint != "monitor.static"
        if wanted and "GET" in rule.methods:
            path = rule.rule.replace("<status>", "failed").replace("<job_id>", failed_job)
            pages.append(path.replace("<name>", "testGreet"))
    return pages


@pytest.mark.parametrize("query", ODD_QUERIES)
def test_no_monitor_page_fails_on_odd_query_keys(monitor, monitor_pages, query):
    answers = {page: monitor.get(f"{page}?{query}").status_code for page in monitor_pages}

    assert len(answers) > 10
    assert all(code < 500 for code in answers.values()), answers


@pytest.mark.parametrize("query", ODD_QUERIES)
def test_logged_out_odd_query_keys_lead_to_the_login_page_not_an_error(anonymous, query):
    response = anonymous.get(f"/monitor/jobs/failed?{query}")

    assert response.status_code in (302, 401)


def test_a_pages_live_link_keeps_only_the_parameters_pages_read(monitor, failed_job):
    page = monitor.get("/monitor/jobs/failed?name=testGreet&endpoint=x&_anchor=y&refresh=10")

    assert page.status_code == 200
    live = page.text.split('data-live="', 1)[1].split('"', 1)[0]
    assert "endpoint" not in live and "_anchor" not in live
    assert "name=testGreet" in live and "refresh=10" in live


# -- the Origin check ------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin", ["https://localhost", "http://localhost:8080", "http://localhost.evil.example"]
)
def test_a_post_from_another_scheme_or_port_of_this_host_is_refused(logged_in, origin):
    response = logged_in.post("/monitor/resume", headers={"Origin": origin})

    assert response.status_code == 403
    assert "another site" in response.text


@pytest.mark.parametrize("origin", ["http://localhost", "http://LOCALHOST:80"])
def test_a_post_from_this_exact_origin_is_accepted(logged_in, origin):
    assert logged_in.post("/monitor/resume", headers={"Origin": origin}).status_code == 302


def test_behind_https_an_http_origin_is_refused(logged_in):
    headers = {"Origin": "http://localhost"}

    response = logged_in.post("/monitor/resume", headers=headers, base_url="https://localhost")

    assert response.status_code == 403

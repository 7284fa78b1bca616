"""A page of another site cannot make a visitor's browser dispatch a job.

The API reads the body as JSON whatever its Content-Type, so a plain HTML
form (``enctype="text/plain"``) on any site could queue a job. Browsers say
where a request comes from (``Sec-Fetch-Site``, ``Origin``); curl and
scripts say nothing, and keep working. The real browser's side of this is
tests/test_monitor_browser.py in the template's suite.
"""

import json

import pytest

from conftest import CI_SECRET
from support import bearer, pending

PESSOA = json.dumps({"nome": "João", "idade": 30})
# The test client's requests go to http://localhost/.
CI_KEY = bearer(CI_SECRET)


def dispatch(client, **headers):
    return client.post("/jobs/testGreet", data=PESSOA, headers=headers)


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_a_browser_request_from_another_site_is_refused(queue_client, queue_app, site):
    response = dispatch(queue_client, **{"Sec-Fetch-Site": site})

    assert response.status_code == 403
    assert response.json["error"] == "cross_site_request"
    assert pending(queue_app) == 0


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "null",  # a sandboxed frame or a data: page
        "https://localhost",  # another scheme
        "http://localhost:8080",  # another port
        "http://localhost.evil.example",
    ],
)
def test_an_origin_that_is_not_this_site_is_refused(queue_client, queue_app, origin):
    response = dispatch(queue_client, Origin=origin)

    assert response.status_code == 403
    assert response.json["error"] == "cross_site_request"
    assert pending(queue_app) == 0


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed by the user
        {"Origin": "http://localhost"},
        {"Origin": "http://LOCALHOST:80"},  # the default port, spelled out
        # The browser's word wins: right behind a TLS proxy with no ProxyFix.
        {"Sec-Fetch-Site": "same-origin", "Origin": "https://localhost"},
    ],
)
def test_this_sites_own_pages_may_dispatch(queue_client, headers):
    assert dispatch(queue_client, **headers).status_code == 202


def test_curl_without_a_content_type_still_dispatches(queue_client, queue_app):
    # What `curl -d '{...}'` sends: a form content type, no Origin, no Sec-Fetch-*.
    response = queue_client.post(
        "/jobs/testGreet", data=PESSOA, content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 202
    assert pending(queue_app) == 1


def test_reading_a_job_from_another_site_is_not_refused(queue_client):
    job_id = dispatch(queue_client).json["id"]

    response = queue_client.get(f"/jobs/{job_id}", headers={"Sec-Fetch-Site": "cross-site"})

    assert response.status_code == 200


def test_the_refusal_comes_before_the_key_is_checked(anonymous_client):
    response = anonymous_client.post(
        "/jobs/testGreet", data=PESSOA, headers={"Sec-Fetch-Site": "cross-site"}
    )

    assert response.status_code == 403
    assert response.json["error"] == "cross_site_request"


# -- trusted hosts ----------------------------------------------------------------


def test_an_untrusted_host_is_refused_when_trusted_hosts_are_set(api_app):
    app = api_app(TRUSTED_HOSTS=["jobs.example.com"])

    response = app.test_client().post(
        "/jobs/testGreet", data=PESSOA, base_url="http://evil.example", headers=CI_KEY
    )

    assert response.status_code == 400
    assert response.json["error"] == "untrusted_host"


def test_status_url_names_a_trusted_host(api_app):
    app = api_app(TRUSTED_HOSTS=["jobs.example.com"])

    response = app.test_client().post(
        "/jobs/testGreet", data=PESSOA, base_url="http://jobs.example.com", headers=CI_KEY
    )

    assert response.status_code == 202
    assert response.json["status_url"].startswith("http://jobs.example.com/jobs/")

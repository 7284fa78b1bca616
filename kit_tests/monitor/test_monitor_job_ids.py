"""The monitor's job pages, actions and JSON API answer 404 for anything that
is not a job id, before a storage key is built from it (see job_ids.py)."""

import pytest

from .monitor_helpers import dispatch

# What follows /monitor/job/<id> or /monitor/api/job/<id> for each route.
PAGES = ["/monitor/job/{}", "/monitor/api/job/{}", "/monitor/api/job/{}/logs"]
ACTIONS = ["/monitor/job/{}/retry", "/monitor/job/{}/cancel", "/monitor/job/{}/revoke"]
ACTIONS += ["/monitor/job/{}/delete"]


def hostile(job_id: str) -> list[str]:
    return [f"{job_id}:x", f"{job_id}*", "*", job_id.upper(), "a" * 5000]


@pytest.mark.parametrize("route", PAGES)
def test_pages_answer_404_for_what_is_not_a_job_id(monitor, route):
    job_id = dispatch(monitor.app)

    for value in hostile(job_id):
        response = monitor.get(route.format(value))
        assert response.status_code == 404, value
    assert monitor.get(route.format(job_id)).status_code == 200


def test_the_json_api_answers_404_in_json(monitor):
    job_id = dispatch(monitor.app)

    response = monitor.get(f"/monitor/api/job/{job_id}:x")

    assert response.get_json()["error"] == "not_found"


@pytest.mark.parametrize("route", ACTIONS)
def test_actions_answer_404_and_change_nothing(monitor, route):
    job_id = dispatch(monitor.app)

    for value in hostile(job_id):
        assert monitor.post(route.format(value)).status_code == 404, value
    assert monitor.history.get(job_id)["status"] == "queued"


def test_find_by_id_refuses_what_is_not_a_job_id(monitor):
    job_id = dispatch(monitor.app)

    response = monitor.get(f"/monitor/find?id={job_id}:x", follow_redirects=True)

    assert "No job has the id" in response.text
    assert f"/monitor/job/{job_id}:x" not in response.text

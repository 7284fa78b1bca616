"""Job ids from outside (URLs, the shell) are checked before any storage key
or row is built from them: anything but a job id's shape is an unknown id.

On Redis a job's record is the hash ``…:job:<id>`` and its progress and log
lines the hash ``…:job:<id>:x``: an unchecked ``<id>:x`` read the second.
"""

import uuid

import pytest

from acme_jobs.kit.job_ids import is_job_id
from conftest import CI_SECRET
from support import bearer

PESSOA = {"nome": "João", "idade": 30}
KEY = bearer(CI_SECRET)


def queued_job(client) -> str:
    response = client.post("/jobs/testGreet", json=PESSOA, headers=KEY)
    assert response.status_code == 202
    return response.json["id"]


def hostile_ids(job_id: str) -> list[str]:
    """Values a URL or a shell can carry that name storage, or nothing."""
    return [
        f"{job_id}:x",  # the job's side hash on Redis
        f"{job_id}*",
        "*",
        f"{job_id}:*",
        f"{job_id}%",  # a LIKE wildcard
        job_id.upper(),  # not the text the kit writes: another key
        f" {job_id}",
        job_id * 2,
        "a" * 5000,
    ]


def test_the_kits_own_ids_have_the_shape():
    assert is_job_id(str(uuid.uuid4()))
    assert not is_job_id(str(uuid.uuid4()) + "\n")
    assert not is_job_id(None)


def test_a_side_hash_is_not_readable_as_a_job(keyed):
    job_id = queued_job(keyed)

    response = keyed.get(f"/jobs/{job_id}:x", headers=KEY)

    assert response.status_code == 404
    assert response.json["error"] == "unknown_job_id"


@pytest.mark.parametrize("index", range(9))
def test_a_value_that_is_not_a_job_id_is_an_unknown_id(keyed, index):
    job_id = queued_job(keyed)

    response = keyed.get(f"/jobs/{hostile_ids(job_id)[index]}", headers=KEY)

    assert response.status_code == 404
    assert response.json["error"] == "unknown_job_id"


def test_a_slash_in_an_id_is_no_route(keyed):
    job_id = queued_job(keyed)

    for path in (f"/jobs/{job_id}/x", f"/jobs/{job_id}%2Fx"):
        response = keyed.get(path, headers=KEY)
        assert response.status_code == 404
        assert response.is_json


def test_the_real_id_still_answers(keyed):
    job_id = queued_job(keyed)

    assert keyed.get(f"/jobs/{job_id}", headers=KEY).json["status"] == "queued"


# -- the shell ------------------------------------------------------------------


def test_jobs_status_prints_the_job(keyed):
    job_id = queued_job(keyed)

    result = keyed.application.test_cli_runner().invoke(args=["jobs", "status", job_id])

    assert result.exit_code == 0, result.output
    assert f'"id": "{job_id}"' in result.output
    assert '"status": "queued"' in result.output


def test_jobs_status_refuses_what_is_not_a_job_id(keyed):
    job_id = queued_job(keyed)
    runner = keyed.application.test_cli_runner()

    for value in hostile_ids(job_id):
        result = runner.invoke(args=["jobs", "status", value])
        assert result.exit_code == 1
        assert "is not a job id" in result.output


def test_jobs_status_says_when_no_job_has_the_id(keyed):
    result = keyed.application.test_cli_runner().invoke(args=["jobs", "status", str(uuid.uuid4())])

    assert result.exit_code == 1
    assert "no job has the id" in result.output

"""Bodies that used to end in a 500: nesting deep enough to exhaust Python's
recursion, and lone surrogates, which are valid JSON escapes but not text.
Both are refused with a 400 and a stable ``error``, and nothing is queued, on
both backends, through HTTP and through ``flask jobs enqueue``."""

import json

import pytest

from acme_jobs.kit.payloads import MAX_DEPTH
from conftest import CI_SECRET
from support import bearer, pending

KEY = bearer(CI_SECRET)


def nested(depth: int) -> str:
    """testGreet's payload with ``nome`` inside ``depth - 1`` more arrays."""
    return '{"nome": ' + "[" * (depth - 1) + '"x"' + "]" * (depth - 1) + ', "idade": 30}'


# Each fits well under MAX_CONTENT_LENGTH (64 KiB).
DEEP = [nested(10_000), nested(MAX_DEPTH + 1), '{"a": ' + '{"a": ' * 5000 + "1" + "}" * 5001]
SURROGATES = [
    '{"nome": "\\ud800", "idade": 30}',  # the escape
    '{"nome": "a\\udfffb", "idade": 30}',
    '{"\\ud800": 1, "nome": "x", "idade": 30}',  # in a key
]


@pytest.mark.parametrize("body", DEEP, ids=["10000", "over-max", "objects"])
def test_deep_nesting_is_a_400(keyed, body):
    response = keyed.post("/jobs/testGreet", data=body, headers=KEY)

    assert response.status_code == 400
    assert response.json["error"] == "json_too_deep"
    assert pending(keyed.application) == 0


def test_nesting_up_to_the_limit_is_read(keyed):
    response = keyed.post("/jobs/testGreet", data=nested(MAX_DEPTH), headers=KEY)

    # Read, then refused by the job's schema: nome is a string.
    assert response.status_code == 422
    assert pending(keyed.application) == 0


@pytest.mark.parametrize("body", SURROGATES, ids=["value", "inside", "key"])
def test_a_lone_surrogate_is_a_400(keyed, body):
    response = keyed.post("/jobs/testGreet", data=body, headers=KEY)

    assert response.status_code == 400
    assert response.json["error"] == "invalid_unicode"
    assert pending(keyed.application) == 0


def test_a_surrogate_sent_as_raw_bytes_is_a_400(keyed):
    # json.loads decodes bytes with "surrogatepass": these three bytes pass.
    body = b'{"nome": "\xed\xa0\x80", "idade": 30}'

    response = keyed.post("/jobs/testGreet", data=body, headers=KEY)

    assert response.json["error"] == "invalid_unicode"
    assert pending(keyed.application) == 0


def test_a_surrogate_in_a_utf16_body_is_a_400(keyed):
    # json.loads also reads UTF-16, where neither an escape nor 0xED shows.
    body = '{"nome": "\ud800", "idade": 30}'.encode("utf-16-le", "surrogatepass")

    response = keyed.post("/jobs/testGreet", data=body, headers=KEY)

    assert response.json["error"] == "invalid_unicode"
    assert pending(keyed.application) == 0


def test_a_proper_surrogate_pair_is_text(keyed):
    body = json.dumps({"nome": "\U0001f600", "idade": 30})  # written as \ud83d\ude00

    assert keyed.post("/jobs/testGreet", data=body, headers=KEY).status_code == 202


# -- the shell ------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [nested(10_000), SURROGATES[0], '{"nome": "\udcff", "idade": 30}'],
    ids=["deep", "escape", "argv-bytes"],  # argv bytes that are not UTF-8 arrive as surrogates
)
def test_enqueue_refuses_hostile_payloads_and_queues_nothing(keyed, payload):
    runner = keyed.application.test_cli_runner()

    result = runner.invoke(args=["jobs", "enqueue", "testGreet", payload])

    assert result.exit_code == 1
    assert "PAYLOAD is refused" in result.output
    assert "Traceback" not in result.output
    assert pending(keyed.application) == 0

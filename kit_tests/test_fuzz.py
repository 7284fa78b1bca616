"""Fuzzing ``POST /jobs/<name>`` with Hypothesis: any JSON value, any string,
any size, any bytes. The endpoint must never answer 5xx, and must queue a job
only when it answers 202."""

import json
import string
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import pending

# Bounded, so the suite stays quick; raise it to hunt locally.
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and ±Infinity too: Python's json writes and reads them
    | st.text(max_size=300)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=25,
)
# Bodies close to the schema, so validation, not parsing, does the work.
pessoas = st.fixed_dictionaries(
    {"nome": json_values | st.text(max_size=400), "idade": json_values | st.integers(-500, 500)},
    optional={"extra": json_values},
)
bodies = (
    json_values.map(json.dumps)
    | pessoas.map(json.dumps)
    | st.binary(max_size=2048)
    # Around MAX_CONTENT_LENGTH (64 KiB): accepted below, 413 above.
    | st.integers(min_value=60_000, max_value=70_000).map(lambda n: json.dumps({"nome": "x" * n}))
)


@FUZZ
@given(body=bodies)
def test_dispatch_never_fails_and_queues_only_what_it_accepts(queue_client, queue_app, body):
    before = pending(queue_app)

    response = queue_client.post("/jobs/testGreet", data=body)

    assert response.status_code in (202, 400, 413, 422), response.get_data(as_text=True)[:500]
    assert response.is_json
    assert pending(queue_app) == before + (1 if response.status_code == 202 else 0)


@FUZZ
@given(name=st.text(alphabet=string.printable + "éçã/\\%", min_size=1, max_size=40), body=pessoas)
def test_any_job_name_is_answered_without_a_server_error(queue_client, queue_app, name, body):
    before = pending(queue_app)

    response = queue_client.post("/jobs/" + quote(name, safe=""), data=json.dumps(body))

    assert response.status_code < 500
    if response.status_code != 202:
        assert pending(queue_app) == before

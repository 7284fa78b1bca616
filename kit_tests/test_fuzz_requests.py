"""No request a stranger can send reaches a 500, with or without an API key.

Hypothesis builds whole requests: any method, a path under each part of the
app (the jobs API, the monitor, /metrics, health checks, the front door)
with arbitrary segments and query strings, arbitrary headers next to the
ones the kit reads (Origin, Sec-Fetch-Site, Host, Content-Type,
Idempotency-Key, Authorization, Cookie), and bodies from JSON (deeply
nested, lone surrogates) to raw bytes. A 500 would also be where a
``flask run --debug`` shows Werkzeug's debugger.
"""

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acme_jobs import create_app
from support import SECRET_KEY, without_key

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

PREFIXES = [
    "/jobs",
    "/jobs/",
    "/jobs/testGreet",
    "/jobs/openapi.json",
    "/monitor/",
    "/monitor/login",
    "/monitor/job/",
    "/monitor/api/job/",
    "/monitor/api/counts",
    "/monitor/find",
    "/metrics",
    "/healthz",
    "/readyz",
    "/",
]
texts = st.text(max_size=40)
# Percent-encoded text, and bytes that are not UTF-8 at all (%ED%A0%80...).
quoted = texts.map(lambda s: quote(s, safe="")) | st.binary(max_size=12).map(
    lambda b: quote(b, safe="")
)
segments = st.lists(quoted, max_size=3).map("/".join)
queries = st.lists(st.tuples(quoted, quoted), max_size=4).map(
    lambda pairs: "&".join(f"{key}={value}" for key, value in pairs)
)
paths = st.builds(
    lambda prefix, tail, query: prefix + tail + (f"?{query}" if query else ""),
    st.sampled_from(PREFIXES),
    segments,
    queries,
)

# Header values travel as Latin-1; no CR or LF (a client cannot send those).
header_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=60,
)
known_headers = st.fixed_dictionaries(
    {},
    optional={
        "Origin": st.sampled_from(["http://localhost", "http://evil.example", "null"])
        | header_values,
        "Sec-Fetch-Site": st.sampled_from(["same-origin", "same-site", "cross-site", "none"])
        | header_values,
        "Host": st.sampled_from(["localhost", "evil.example", "[::1]:80"]) | header_values,
        "Content-Type": st.sampled_from(["application/json", "text/plain"]) | header_values,
        "Idempotency-Key": header_values,
        "Authorization": header_values,
        "Cookie": header_values,
        "X-Forwarded-For": header_values,
    },
)
other_headers = st.dictionaries(
    st.from_regex(r"X-[A-Za-z0-9-]{1,20}", fullmatch=True), header_values, max_size=3
)

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=20,
)
bodies = (
    json_values.map(json.dumps)
    | st.fixed_dictionaries({"nome": json_values, "idade": json_values}).map(json.dumps)
    | st.sampled_from([40, 1000, 10_000]).map(lambda n: '{"nome": ' + "[" * n + "]" * n + "}")
    | st.sampled_from(['{"nome": "\\ud800", "idade": 1}', '{"\\udfff": 1}'])
    | st.binary(max_size=512)
)
methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
all_headers = st.builds(lambda a, b: {**b, **a}, known_headers, other_headers)
# Half the requests are plain dispatches, so hostile bodies reach the JSON reader.
dispatch_headers = st.fixed_dictionaries(
    {}, optional={"Content-Type": header_values, "Idempotency-Key": header_values}
)
requests = st.tuples(
    st.just("POST"), st.just("/jobs/testGreet"), dispatch_headers, bodies
) | st.tuples(methods, paths, all_headers, bodies)


@pytest.fixture
def fuzzed_app(tmp_path):
    """A real SQLite queue, no worker, the tests' API key and a monitor user."""
    return create_app(
        {
            "TESTING": True,
            "REDIS_URL": None,
            "SQLITE_PATH": str(tmp_path / "queue.sqlite3"),
            "SECRET_KEY": SECRET_KEY,
            "MONITOR_USERNAME": "admin",
            "MONITOR_PASSWORD": "correct horse battery staple",
        }
    )


@FUZZ
@given(request=requests, with_key=st.booleans())
def test_no_request_gets_a_server_error(fuzzed_app, request, with_key):
    method, path, headers, body = request
    client = fuzzed_app.test_client()
    if not with_key:
        without_key(client)

    response = client.open(path, method=method, headers=headers, data=body)

    assert response.status_code < 500, (response.status_code, response.get_data()[:300])

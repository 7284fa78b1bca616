"""The jobs API, checked by a tool we did not write: schemathesis.

A freshly generated project is served as in production (gunicorn and a
worker) on SQLite and on Redis. Schemathesis reads the served OpenAPI
document (``/jobs/openapi.json``) and runs its coverage, fuzzing and
stateful phases with every check it has, a fixed seed and a bounded number
of examples, with a valid API key: no server error, and every status code,
content type, header and body as the document says. Then again without a
key: every dispatch must be refused with 401.

Each valid ``Idempotency-Key`` is made unique per request
(``schemathesis_hooks.py``): a key drawn twice with two payloads is a 422 by
design, which schemathesis would take for a rejected valid request.

Two statuses are added to what schemathesis expects (``schemathesis.toml``
below): 413 for a body over the app's ``MAX_CONTENT_LENGTH``, which a
schema-valid payload can be (10,000 people to import), and which the
document states with the limit in bytes. 5xx is taken out: a server error
is never an answer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_monitor_browser as base

pytestmark = pytest.mark.generated

# The servers and the private Redis of the monitor's browser test, reused.
redis_url = base.redis_url

HERE = str(Path(__file__).parent)
SEED = 20240613
MAX_EXAMPLES = 30
API_KEY = f"fuzz-{uuid.uuid4().hex}"
SCHEMATHESIS = shutil.which(
    "schemathesis", path=str(Path(sys.executable).parent)
) or shutil.which("schemathesis")
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415",
                     "422", "428", "429"]

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "413", "429"]
"""


@pytest.fixture(params=["sqlite", "redis"])
def served(request, bake, tmp_path: Path) -> Iterator[base.Stack]:
    """The default project's web server and worker, with one API key for all jobs."""
    project = bake("default").path
    env = dict(
        os.environ,
        PYTHONPATH=str(project),
        FLASK_SKIP_DOTENV="1",
        FLASK_SECRET_KEY=uuid.uuid4().hex,
        FLASK_QUEUE_NAME=f"fuzz_{uuid.uuid4().hex[:8]}",
        FLASK_JOBS_API_KEYS=json.dumps({"fuzzer": {"key": API_KEY, "jobs": ["*"]}}),
    )
    env.pop("REDIS_URL", None)
    if request.param == "redis":
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
    else:
        env["FLASK_SQLITE_PATH"] = json.dumps(str(tmp_path / "queue.sqlite3"))
    stack = base.Stack(project, env, tmp_path)
    try:
        yield stack.up()
    finally:
        stack.down()


def keys_enforced(stack: base.Stack) -> bool:
    """Whether the served API refuses a dispatch that carries no key."""
    req = urllib.request.Request(
        f"{stack.base_url}/jobs/jobModelo",
        data=json.dumps({"nome": "Ana", "idade": 30}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status == 401
    except urllib.error.HTTPError as exc:
        return exc.code == 401


def schemathesis(
    stack: base.Stack, tmp_path: Path, name: str, *args: str, key: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``schemathesis run`` on the served document; print its summary.

    ``key`` is given to schemathesis for the document's bearer scheme, so
    that it knows which header carries it (and can leave it out on purpose).
    """
    if SCHEMATHESIS is None:
        pytest.fail("schemathesis is not installed (see requirements-dev.txt)")
    config = tmp_path / "schemathesis.toml"
    auth = f'\n[auth.openapi.bearerAuth]\nbearer = "{key}"\n' if key else ""
    config.write_text(CONFIG + auth, encoding="utf-8")
    result = subprocess.run(
        [
            SCHEMATHESIS,
            "--config-file",
            str(config),
            "--no-color",
            "run",
            f"{stack.base_url}/jobs/openapi.json",
            "--checks",
            "all",
            "--seed",
            str(SEED),
            "--max-examples",
            str(MAX_EXAMPLES),
            # Hypothesis' example database would make runs depend on earlier ones.
            "--generation-database",
            "none",
            "--report",
            "har",
            "--report-har-path",
            str(tmp_path / f"{name}.har"),
            *args,
        ],
        cwd=tmp_path,
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
            "FUZZ_WITHOUT_KEY": "" if key else "1",
            "PYTHONPATH": os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        check=False,
    )
    cases = re.search(r"^\s*(\d+ generated.*)$", result.stdout, re.MULTILINE)
    print(f"schemathesis, {stack.backend}, {name}: {cases.group(1) if cases else '?'}")
    return result


def fail_with(result: subprocess.CompletedProcess[str], stack: base.Stack) -> None:
    pytest.fail(
        f"schemathesis exited with {result.returncode}:\n{result.stdout[-15_000:]}\n"
        + stack.read_logs()[-5_000:],
        pytrace=False,
    )


def test_the_api_conforms_to_its_openapi_document_under_fuzzing(served, tmp_path):
    assert keys_enforced(served)
    args = ["--phases", "coverage,fuzzing,stateful"]

    result = schemathesis(served, tmp_path, "with-key", *args, key=API_KEY)

    if result.returncode != 0:
        fail_with(result, served)
    summary = r"^\s*\d+ generated, \d+ passed(, \d+ skipped)?$"
    assert re.search(summary, result.stdout, re.MULTILINE)


def test_without_a_key_every_dispatch_is_a_401(served, tmp_path):
    # No Authorization header at all (schemathesis_hooks.py): made-up keys
    # would be answered with 429 once there are enough of them.
    args = ["--phases", "coverage,fuzzing", "--include-method", "POST"]

    result = schemathesis(served, tmp_path, "without-key", *args)

    if result.returncode != 0:
        fail_with(result, served)
    har = json.loads((tmp_path / "without-key.har").read_text())
    dispatches = [e for e in har["log"]["entries"] if e["request"]["method"] == "POST"]
    assert dispatches
    assert {entry["response"]["status"] for entry in dispatches} == {401}

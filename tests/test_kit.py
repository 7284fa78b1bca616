"""The kit's own test suite (``kit_tests/``), run against a baked project.

The generated project's suite tests the user's app; everything generic
(delivery, history, controls, metrics, the monitor, the worker) is tested
here, once, on the default bake, on SQLite and on Redis (REQUIRE_REDIS=1
makes a missing Redis a failure). The kit's tests use test-only jobs.
"""

from __future__ import annotations

import pytest
from projects import assert_succeeded, run_in_project
from variants import ROOT

pytestmark = pytest.mark.generated

KIT_TESTS = ROOT / "kit_tests"


def test_the_kits_suite_passes_against_the_default_project(default_project):
    result = run_in_project(
        default_project.path,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-c",
        str(KIT_TESTS / "pytest.ini"),
        "--rootdir",
        str(KIT_TESTS),
        str(KIT_TESTS),
        env={"KIT_PROJECT_ROOT": str(default_project.path)},
    )

    assert_succeeded(result)
    # The kit suite's own closing line ("N passed, ..."), for the log.
    print(result.stdout.strip().splitlines()[-1])

"""Lint and test projects baked from the template, inside each project.

Baked projects are not installed: each command runs with this interpreter
(the shared .venv made by scripts/test.py holds every dependency), from the
project's root, with PYTHONPATH pointing there. REDIS_URL and REQUIRE_REDIS
pass through from the environment.

Only the variants marked ``full_suite`` run the whole generated test suite;
the others skip its tests marked ``slow``. Deselect this module with
``-m "not generated"``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from variants import VARIANTS

pytestmark = pytest.mark.generated

ALL_VARIANTS = list(VARIANTS)
TIMEOUT = 900  # seconds, for the slowest command: a full generated suite
OUTPUT_TAIL = 20_000  # characters of output shown when a command fails


def run_in_project(baked, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(baked.path), PYTHONUNBUFFERED="1")
    # Settings meant for this test session must not leak into the baked one.
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, *args],
        cwd=baked.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def assert_succeeded(result: subprocess.CompletedProcess[str]) -> None:
    if result.returncode != 0:
        pytest.fail(
            f"`{' '.join(result.args[1:])}` exited with {result.returncode}:\n"
            + result.stdout[-OUTPUT_TAIL:],
            pytrace=False,
        )


@pytest.mark.parametrize("name", ALL_VARIANTS)
def test_generated_project_passes_ruff_check(bake, name):
    assert_succeeded(run_in_project(bake(name), "-m", "ruff", "check", "."))


@pytest.mark.parametrize("name", ALL_VARIANTS)
def test_generated_project_is_ruff_formatted(bake, name):
    result = run_in_project(bake(name), "-m", "ruff", "format", "--check", ".")

    assert_succeeded(result)


@pytest.mark.parametrize("name", ALL_VARIANTS)
def test_generated_test_suite_passes(bake, name):
    baked = bake(name)
    selection = [] if baked.variant.full_suite else ["-m", "not slow"]

    result = run_in_project(
        baked, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selection
    )

    assert_succeeded(result)

"""Lint and test projects baked from the template, inside each project.

Every variant's own suite runs whole: it tests the user's app (the example
jobs, their HTTP contract, the CLI, one run through a real worker) and is
meant to stay well under a minute. Deselect this module with
``-m "not generated"``.
"""

from __future__ import annotations

import pytest
from projects import assert_succeeded, run_in_project
from variants import VARIANTS

pytestmark = pytest.mark.generated

ALL_VARIANTS = list(VARIANTS)


@pytest.mark.parametrize("name", ALL_VARIANTS)
def test_generated_project_passes_ruff_check(bake, name):
    assert_succeeded(run_in_project(bake(name).path, "-m", "ruff", "check", "."))


@pytest.mark.parametrize("name", ALL_VARIANTS)
def test_generated_project_is_ruff_formatted(bake, name):
    result = run_in_project(bake(name).path, "-m", "ruff", "format", "--check", ".")

    assert_succeeded(result)


@pytest.mark.parametrize("name", ALL_VARIANTS)
def test_generated_test_suite_passes(bake, name):
    result = run_in_project(
        bake(name).path, "-m", "pytest", "-q", "-p", "no:cacheprovider"
    )

    assert_succeeded(result)

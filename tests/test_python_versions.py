"""A clean install on every Python version the template offers.

The other tests run baked projects with the template's own .venv. Here each
``python_version`` in cookiecutter.json is baked, given a virtualenv of that
very Python and installed as its README says (``pip install -e '.[dev]'``,
from PyPI), then linted and tested with that venv's tools. A missing
interpreter is skipped, except in CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from cookiecutter.main import cookiecutter
from interpreters import find_python
from projects import assert_succeeded, run_in_project
from variants import ROOT, TEMPLATE_JSON

pytestmark = pytest.mark.generated

OFFERED_VERSIONS = TEMPLATE_JSON["python_version"]
PIP_ENV = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


@dataclass(frozen=True)
class Installed:
    """A project baked for one Python version, installed in its own venv."""

    version: str
    project: Path
    python: str


def skip_or_fail(reason: str) -> NoReturn:
    """Skip locally; in CI, where every offered version must be tested, fail."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module", params=OFFERED_VERSIONS)
def installed(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    isolated_cookiecutter_config: Path,
) -> Installed:
    """Bake, make a venv and install ``.[dev]``: once per offered version."""
    version = request.param
    interpreter = find_python(version)
    if interpreter is None:
        skip_or_fail(
            f"no usable python{version} (one that runs and can make a venv)"
            " on PATH or in pyenv's versions"
        )
    workdir = tmp_path_factory.mktemp(f"py{version}")
    project = Path(
        cookiecutter(
            str(ROOT),
            no_input=True,
            extra_context={"python_version": version},
            output_dir=str(workdir),
        )
    )
    venv = workdir / "venv"
    assert_succeeded(
        run_in_project(project, "-m", "venv", str(venv), python=str(interpreter))
    )
    python = str(venv / "bin" / "python")
    assert_succeeded(
        run_in_project(
            project, "-m", "pip", "install", "-e", ".[dev]", python=python, env=PIP_ENV
        )
    )
    return Installed(version, project, python)


def test_venv_runs_the_offered_version(installed):
    result = run_in_project(
        installed.project,
        "-c",
        "import sys; print('%d.%d' % sys.version_info[:2])",
        python=installed.python,
        pythonpath=False,
    )

    assert_succeeded(result)
    assert result.stdout.strip() == installed.version


def test_the_installed_package_ships_the_monitors_files(installed, tmp_path):
    # Run from elsewhere, so that only the installed package can be found.
    result = run_in_project(
        tmp_path,
        "-c",
        "import importlib.resources as r, acme_jobs.kit.monitor as m;"
        " print(r.files(m).joinpath('templates/monitor/base.html').is_file())",
        python=installed.python,
        pythonpath=False,
    )

    assert_succeeded(result)
    assert result.stdout.strip() == "True"


def test_installed_project_passes_its_test_suite(installed):
    result = run_in_project(
        installed.project,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        python=installed.python,
        pythonpath=False,
    )

    assert_succeeded(result)


def test_installed_project_passes_ruff_check(installed):
    result = run_in_project(
        installed.project,
        "-m",
        "ruff",
        "check",
        ".",
        python=installed.python,
        pythonpath=False,
    )

    assert_succeeded(result)


def test_installed_project_is_ruff_formatted(installed):
    result = run_in_project(
        installed.project,
        "-m",
        "ruff",
        "format",
        "--check",
        ".",
        python=installed.python,
        pythonpath=False,
    )

    assert_succeeded(result)

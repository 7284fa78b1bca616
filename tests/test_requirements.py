"""What gets installed: requirements-dev.txt (the template suite's one list),
and a baked project's pins, its requirements.txt lock and its lowest versions.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version

import linters
import pytest
import yaml
from packaging.requirements import Requirement
from projects import assert_succeeded, run_in_project
from variants import ROOT


def requirement_name(spec: str) -> str:
    """Normalised distribution name of a requirement such as 'huey>=3.5.4'."""
    name = re.split(r"[\s\[<>=!~;]", spec.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def test_requirements_cover_every_generated_project_dependency(default_project):
    project = tomllib.loads(default_project.read("pyproject.toml"))["project"]
    needed = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    listed = {
        requirement_name(line)
        for line in (ROOT / "requirements-dev.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }

    missing = sorted({requirement_name(spec) for spec in needed} - listed)

    assert not missing, f"add to requirements-dev.txt: {missing}"


def dev_requirements() -> dict[str, str]:
    """requirements-dev.txt as {normalised name: the whole line}."""
    lines = (ROOT / "requirements-dev.txt").read_text().splitlines()
    return {
        requirement_name(line): line.strip()
        for line in lines
        if line.strip() and not line.lstrip().startswith("#")
    }


def test_ruff_is_pinned_alike_in_the_dev_extra_pre_commit_and_the_template_suite(
    default_project,
):
    dev = tomllib.loads(default_project.read("pyproject.toml"))["project"][
        "optional-dependencies"
    ]["dev"]
    pre_commit = yaml.safe_load(default_project.read(".pre-commit-config.yaml"))

    pinned = [
        spec.split("#")[0].strip() for spec in dev if requirement_name(spec) == "ruff"
    ]
    rev = pre_commit["repos"][0]["rev"]

    assert pinned == [f"ruff=={version('ruff')}"]  # the ruff these tests lint with
    assert rev == f"v{version('ruff')}"
    assert dev_requirements()["ruff"] == pinned[0]


# -- the lock: requirements.txt ----------------------------------------------


def locked(baked) -> dict[str, str]:
    """requirements.txt as {normalised name: pinned version}."""
    pins = {}
    for line in baked.read("requirements.txt").splitlines():
        spec = line.split(";")[0].strip()
        if spec and not spec.startswith("#"):
            name, _, pinned = spec.partition("==")
            assert pinned, f"not pinned with ==: {line}"
            pins[requirement_name(name)] = pinned
    return pins


def test_the_lock_pins_every_runtime_dependency_within_its_range(default_project):
    pins = locked(default_project)
    project = tomllib.loads(default_project.read("pyproject.toml"))["project"]

    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = requirement_name(requirement.name)
        assert name in pins, f"{name} is not in requirements.txt"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]}"


def test_the_lock_is_what_uv_resolves_from_pyproject(default_project):
    # With the lock as constraints the answer does not move when new releases
    # come out: it changes only if pyproject.toml asks for something else.
    uv = linters.venv_tool("uv")
    compiled = subprocess.run(
        [uv, "pip", "compile", "--quiet", "--universal", "--no-annotate", "--no-header",
         "pyproject.toml", "--constraint", "requirements.txt"],
        cwd=default_project.path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip

    assert compiled.returncode == 0, compiled.stderr
    body = [
        line
        for line in default_project.read("requirements.txt").splitlines()
        if not line.startswith("#")
    ]
    assert compiled.stdout.splitlines() == body


def test_the_template_suite_runs_on_the_locked_versions(default_project):
    """scripts/test.py installs with the lock as constraints: these tests pass
    with the versions a baked project's image and CI install."""
    installed = {}
    for name in locked(default_project):
        try:
            installed[name] = version(name)
        except PackageNotFoundError:  # a marker leaves it out on this Python
            continue

    assert installed
    assert installed == {name: locked(default_project)[name] for name in installed}


# -- the lowest allowed versions ----------------------------------------------

KIT_TESTS = ROOT / "kit_tests"


@pytest.fixture(scope="module")
def lowest_python(bake, tmp_path_factory) -> str:
    """A venv with every direct dependency at the lowest version allowed.

    ``uv pip install --resolution lowest-direct`` of the project's runtime
    and dev dependencies; then hypothesis, which only the kit's tests use,
    at its newest.
    """
    uv = linters.venv_tool("uv")
    venv = tmp_path_factory.mktemp("lowest") / "venv"
    python = venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    hypothesis = dev_requirements()["hypothesis"]
    for command in (
        [uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
        [uv, "pip", "install", "--quiet", "--python", str(python),
         "--resolution", "lowest-direct", "-r", "pyproject.toml", "--extra", "dev"],
        [uv, "pip", "install", "--quiet", "--python", str(python), hypothesis],
    ):  # fmt: skip
        installed = subprocess.run(
            command,
            cwd=bake("default").path,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert installed.returncode == 0, installed.stderr
    return str(python)


@pytest.mark.generated
def test_the_lowest_allowed_versions_pass_the_projects_and_the_kits_tests(
    default_project, lowest_python
):
    """One run of the fast tests (no real worker processes) of both suites.

    A lower bound that is too low shows up as an import error or a failing
    test here: this is how openapi-spec-validator>=0.7.1 and apispec>=6.8.3
    were found.
    """
    project_tests = run_in_project(
        default_project.path,
        "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
        python=lowest_python,
    )  # fmt: skip
    assert_succeeded(project_tests)

    kit_tests = run_in_project(
        default_project.path,
        "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
        "-c", str(KIT_TESTS / "pytest.ini"), "--rootdir", str(KIT_TESTS),
        str(KIT_TESTS),
        python=lowest_python,
        env={"KIT_PROJECT_ROOT": str(default_project.path)},
    )  # fmt: skip
    assert_succeeded(kit_tests)
    # The closing lines ("N passed, ..."), for the log.
    print(project_tests.stdout.strip().splitlines()[-1])
    print(kit_tests.stdout.strip().splitlines()[-1])

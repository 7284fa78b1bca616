"""The generated package's two rooms: the user's app on top, the kit underneath.

What is the user's stays small and theirs to change: deleting or renaming an
example job breaks only that job's own tests.
"""

from __future__ import annotations

import re
import shutil

import pytest
from projects import run_in_project

pytestmark = pytest.mark.generated

USER_FILES = ["__init__.py", "config.py", "views.py", "worker.py", "jobs/__init__.py"]
# Example job module -> its test module (job modules are named after the job).
EXAMPLE_JOBS = {
    "job_modelo": "test_job_modelo.py",
    "importar_pessoas": "test_importar_pessoas.py",
    "relatorio_fila": "test_relatorio_fila.py",
}
USER_LINES_LIMIT = 600


def package(baked):
    return baked.path / baked.variant.slug


def test_the_package_holds_the_users_app_and_the_kit(default_project):
    root = package(default_project)

    for name in USER_FILES:
        assert (root / name).is_file(), name
    assert (root / "kit" / "__init__.py").is_file()
    assert "do not edit here" in (root / "kit" / "README.md").read_text().lower()


def test_the_users_app_outside_the_kit_is_small(default_project):
    root = package(default_project)
    lines = sum(
        len(path.read_text(encoding="utf-8").splitlines())
        for path in root.rglob("*.py")
        if "kit" not in path.relative_to(root).parts
    )

    assert lines < USER_LINES_LIMIT


def failed_test_files(output: str) -> set[str]:
    """The test modules named in pytest's ``FAILED``/``ERROR`` summary lines."""
    return set(re.findall(r"^(?:FAILED|ERROR) tests/(test_\w+\.py)", output, re.M))


def copy_of(baked, tmp_path):
    target = tmp_path / baked.path.name
    shutil.copytree(baked.path, target)
    return target


@pytest.mark.parametrize("module", EXAMPLE_JOBS)
def test_deleting_an_example_job_with_its_tests_leaves_the_suite_green(
    default_project, tmp_path, module
):
    project = copy_of(default_project, tmp_path)
    (project / default_project.variant.slug / "jobs" / f"{module}.py").unlink()
    (project / "tests" / EXAMPLE_JOBS[module]).unlink()

    result = run_in_project(project, "-m", "pytest", "-q", "-p", "no:cacheprovider")

    assert result.returncode == 0, result.stdout[-5000:]


@pytest.mark.parametrize("module", EXAMPLE_JOBS)
def test_renaming_an_example_job_breaks_only_its_own_tests(
    default_project, tmp_path, module
):
    project = copy_of(default_project, tmp_path)
    path = project / default_project.variant.slug / "jobs" / f"{module}.py"
    source = path.read_text(encoding="utf-8")
    name = re.search(r'^JOB_NAME = "(\w+)"$', source, re.M).group(1)
    path.write_text(source.replace(f'"{name}"', f'"{name}Renamed"'), encoding="utf-8")

    result = run_in_project(
        project, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow"
    )

    assert result.returncode != 0, "renaming the job broke none of its tests"
    assert failed_test_files(result.stdout) == {EXAMPLE_JOBS[module]}

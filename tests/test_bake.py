"""Baking the template: every variant renders cleanly, with the right files."""

from __future__ import annotations

import re
import tomllib

import pytest
from variants import PACKAGE_TEMPLATE, TEMPLATE_JSON, VARIANTS

ALL_VARIANTS = list(VARIANTS)
DOCKER_FILES = (
    "Dockerfile",
    "docker-compose.yml",
    "docker-compose.sentinel.yml",
    ".dockerignore",
)
GITHUB_FILES = (".github/workflows/ci.yml", ".github/dependabot.yml")
CORE_FILES = (
    "pyproject.toml",
    "requirements.txt",
    "README.md",
    ".flaskenv",
    ".env.example",
    "Procfile",
    ".gitignore",
    ".gitattributes",
    ".pre-commit-config.yaml",
    "gunicorn.conf.py",
)
WORKFLOW = ".github/workflows/ci.yml"

# Jinja left in the output: a variable tag not preceded by "$" (GitHub
# expressions are "${{ ... }}"), a block or comment tag, or a reference to an
# answer such as cookiecutter.project_slug.
LEFTOVER_PATTERNS = (
    re.compile(r"(?<!\$)\{\{"),
    re.compile(r"\{%"),
    re.compile(r"(?<!\$)\{#"),
    re.compile(
        r"cookiecutter\.(?:"
        + "|".join(re.escape(key) for key in TEMPLATE_JSON if not key.startswith("_"))
        + r")\b"
    ),
)


# The kit's Jinja templates and static files, copied as they are.
RAW_FOLDERS = ("kit/monitor/templates", "kit/monitor/static", "kit/templates")


def copied_raw(relative: str, slug: str) -> bool:
    """Whether ``relative`` lies in a folder that is copied unrendered."""
    return relative.startswith(tuple(f"{slug}/{folder}/" for folder in RAW_FOLDERS))


@pytest.mark.parametrize("name", ALL_VARIANTS)
def test_project_directory_is_named_after_the_slug(bake, name):
    baked = bake(name)

    assert baked.path.is_dir()
    assert baked.path.name == baked.variant.slug


@pytest.mark.parametrize("name", ALL_VARIANTS)
def test_package_directory_is_named_after_the_slug(bake, name):
    baked = bake(name)

    assert (baked.path / baked.variant.slug / "__init__.py").is_file()
    assert (baked.path / baked.variant.slug / "worker.py").is_file()


@pytest.mark.parametrize("name", ALL_VARIANTS)
def test_core_files_are_generated(bake, name):
    baked = bake(name)

    missing = [path for path in CORE_FILES if not baked.exists(path)]

    assert not missing
    assert (baked.path / "tests").is_dir()
    assert (baked.path / "docs").is_dir()


@pytest.mark.parametrize("name", ALL_VARIANTS)
def test_no_jinja_syntax_is_left_in_rendered_files(bake, name):
    baked = bake(name)
    leftovers = []
    for relative in baked.files:
        if copied_raw(relative, baked.variant.slug):
            continue
        try:
            text = baked.read(relative)
        except UnicodeDecodeError:
            continue  # binary file
        for number, line in enumerate(text.splitlines(), start=1):
            if any(pattern.search(line) for pattern in LEFTOVER_PATTERNS):
                leftovers.append(f"{relative}:{number}: {line.strip()}")

    assert not leftovers, "unrendered template syntax:\n" + "\n".join(leftovers)


@pytest.mark.parametrize("name", ALL_VARIANTS)
def test_docker_files_exist_only_when_docker_is_chosen(bake, name):
    baked = bake(name)

    present = {path: baked.exists(path) for path in DOCKER_FILES}

    assert present == dict.fromkeys(DOCKER_FILES, baked.variant.docker)


@pytest.mark.parametrize("name", ALL_VARIANTS)
def test_github_directory_exists_only_when_actions_are_chosen(bake, name):
    baked = bake(name)

    present = {path: baked.exists(path) for path in GITHUB_FILES}

    assert present == dict.fromkeys(GITHUB_FILES, baked.variant.github_actions)
    assert baked.exists(".github") == baked.variant.github_actions


@pytest.mark.parametrize("name", ALL_VARIANTS)
def test_license_file_matches_the_chosen_license(bake, name):
    baked = bake(name)
    license_name = baked.variant.license

    if license_name == "Proprietary":
        assert not baked.exists("LICENSE")
        return
    text = baked.read("LICENSE")
    expected_heading = {
        "MIT": "MIT License",
        "Apache-2.0": "Apache License\n                           Version 2.0",
        "BSD-3-Clause": "BSD 3-Clause License",
    }[license_name]
    assert expected_heading in text
    assert text.endswith("\n") and not text.endswith("\n\n")
    if license_name != "Apache-2.0":  # Apache's text carries no holder line
        assert baked.variant.answer("author_name") in text


def test_licenses_do_not_leak_into_each_other(bake):
    texts = {
        VARIANTS[name].license: bake(name).read("LICENSE")
        for name in ALL_VARIANTS
        if VARIANTS[name].license != "Proprietary"
    }

    assert "Apache License" not in texts["MIT"]
    assert "Neither the name" not in texts["MIT"]
    assert "MIT License" not in texts["Apache-2.0"]
    assert "Permission is hereby granted" not in texts["BSD-3-Clause"]


@pytest.mark.parametrize("name", ALL_VARIANTS)
def test_requires_python_matches_the_chosen_version(bake, name):
    baked = bake(name)

    pyproject = tomllib.loads(baked.read("pyproject.toml"))

    requires = pyproject["project"]["requires-python"].replace(" ", "")
    assert requires == f">={baked.variant.python_version}"


@pytest.mark.parametrize("name", ALL_VARIANTS)
def test_pyproject_carries_the_answers(bake, name):
    baked = bake(name)

    project = tomllib.loads(baked.read("pyproject.toml"))["project"]

    assert project["name"].replace("-", "_") == baked.variant.slug
    assert project["description"] == baked.variant.answer("description")


def test_package_templates_and_static_files_are_copied_unrendered(default_project):
    sources = [
        path
        for folder in RAW_FOLDERS
        if (PACKAGE_TEMPLATE / folder).is_dir()
        for path in (PACKAGE_TEMPLATE / folder).rglob("*")
        if path.is_file()
    ]
    if not sources:
        pytest.fail("the monitor's templates and static files are missing")
    slug_dir = default_project.path / default_project.variant.slug

    changed = [
        str(source.relative_to(PACKAGE_TEMPLATE))
        for source in sources
        if (slug_dir / source.relative_to(PACKAGE_TEMPLATE)).read_bytes()
        != source.read_bytes()
    ]

    assert not changed


def readme_section(baked, title: str) -> str:
    """The text of the generated README's section ``## title``."""
    text = baked.read("README.md")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_quickstart_sets_the_monitor_login_before_it_is_opened(default_project):
    quickstart = readme_section(default_project, "Quickstart")

    for step in (
        "FLASK_MONITOR_USERNAME",
        "FLASK_MONITOR_PASSWORD",
        "http://127.0.0.1:5000/monitor",
        "403",
    ):
        assert step in quickstart


def test_quickstart_says_what_to_do_when_port_5000_is_taken(default_project):
    quickstart = readme_section(default_project, "Quickstart")

    assert "flask run --port 5001" in quickstart
    assert "AirPlay" in quickstart

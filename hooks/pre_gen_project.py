"""Validate the answers before cookiecutter writes any file.

Cookiecutter renders this file with Jinja before running it, so the answers
arrive as JSON string literals. On the first problem found, one line starting
with ``ERROR: `` is printed and the hook exits with status 1, which makes
cookiecutter stop and remove the half-created project directory.
"""

from __future__ import annotations

import json
import keyword
import os
import re
import sys
import sysconfig

MIN_PYTHON = (3, 11)

# Top-level import names the generated project depends on or that commonly
# sit next to it; a package with one of these names would shadow it.
RESERVED_NAMES = frozenset(
    {
        "app",
        "application",
        "build",
        "celery",
        "click",
        "conftest",
        "cookiecutter",
        "dist",
        "docs",
        "dotenv",
        "flask",
        "gunicorn",
        "huey",
        "hypothesis",
        "itsdangerous",
        "jinja2",
        "markupsafe",
        "marshmallow",
        "pip",
        "pkg_resources",
        "prometheus_client",
        "pytest",
        "redis",
        "ruff",
        "scripts",
        "selenium",
        "setuptools",
        "site",
        "src",
        "test",
        "tests",
        "werkzeug",
        "wheel",
        "yaml",
    }
)

SLUG_PATTERN = re.compile(r"^[a-z_][a-z0-9_]*$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def stdlib_module_names() -> frozenset[str]:
    """Return the names of the standard library's top-level modules."""
    names = getattr(sys, "stdlib_module_names", None)
    if names is not None:
        return frozenset(names)
    # Python < 3.10: list the standard library directory instead.
    found = set(sys.builtin_module_names)
    stdlib_dir = sysconfig.get_paths()["stdlib"]
    for entry in os.listdir(stdlib_dir):
        name, _, ext = entry.partition(".")
        if ext in ("", "py") and name.isidentifier():
            found.add(name)
    return frozenset(found)


def check_slug(slug: str) -> str | None:
    """Return a problem description for ``slug``, or None when it is usable."""
    fix = "pass a different project_slug, e.g. project_slug=my_jobs"
    if not slug:
        return f"project_slug is empty; {fix}."
    if not slug.isidentifier() or not SLUG_PATTERN.match(slug):
        return (
            f"project_slug {slug!r} is not a valid Python package name: use only "
            "lowercase ASCII letters, digits and underscores, not starting with "
            f"a digit; {fix}."
        )
    if keyword.iskeyword(slug):
        return f"project_slug {slug!r} is a Python keyword; {fix}."
    if slug in stdlib_module_names():
        return (
            f"project_slug {slug!r} would shadow the standard library module "
            f"{slug!r}; {fix}."
        )
    if slug in RESERVED_NAMES:
        return (
            f"project_slug {slug!r} would shadow the {slug!r} package that the "
            f"generated project or its tooling imports; {fix}."
        )
    return None


def check_python_version(version: str) -> str | None:
    """Return a problem description for ``version``, or None when supported."""
    fix = "choose one of 3.11, 3.12 or 3.13"
    match = re.fullmatch(r"(\d+)\.(\d+)", version.strip())
    if match is None:
        return f"python_version {version!r} is not of the form X.Y; {fix}."
    if (int(match.group(1)), int(match.group(2))) < MIN_PYTHON:
        return (
            f"python_version {version} is older than the supported minimum "
            f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]}; {fix}."
        )
    return None


def check_email(email: str) -> str | None:
    """Return a problem description for ``email``, or None when it looks valid."""
    if not EMAIL_PATTERN.match(email.strip()):
        return (
            f"author_email {email!r} does not look like an e-mail address; "
            "pass one such as author_email=you@example.com."
        )
    return None


def main() -> int:
    # Jinja's tojson escapes quotes, so each answer is a safe JSON literal
    # inside a raw single-quoted string (kept as is by the formatter).
    slug = json.loads(r'''{{ cookiecutter.project_slug | tojson }}''')  # fmt: skip
    version = json.loads(r'''{{ cookiecutter.python_version | tojson }}''')  # fmt: skip
    email = json.loads(r'''{{ cookiecutter.author_email | tojson }}''')  # fmt: skip
    for problem in (
        check_slug(slug),
        check_python_version(version),
        check_email(email),
    ):
        if problem:
            print(f"ERROR: {problem}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

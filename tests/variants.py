"""The answer sets the template is baked with in the tests.

Not the full cartesian product: a covering set in which every value of every
choice variable appears at least once, plus a custom name and slug.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_JSON = json.loads((ROOT / "cookiecutter.json").read_text(encoding="utf-8"))
SLUG_DIR_NAME = "{{cookiecutter.project_slug}}"
PROJECT_TEMPLATE = ROOT / SLUG_DIR_NAME
PACKAGE_TEMPLATE = PROJECT_TEMPLATE / SLUG_DIR_NAME


def derive_slug(project_name: str) -> str:
    """The default project_slug, as cookiecutter.json derives it."""
    return project_name.lower().replace(" ", "_").replace("-", "_")


def worker_command(slug: str) -> str:
    """The recommended worker command line for a project."""
    return f"python -m {slug}.worker"


@dataclass(frozen=True)
class Variant:
    """One set of answers; unspecified ones take the template's defaults."""

    name: str
    overrides: dict[str, str] = field(default_factory=dict)

    def answer(self, key: str) -> str:
        if key in self.overrides:
            return self.overrides[key]
        if key == "project_slug":
            return derive_slug(self.answer("project_name"))
        default = TEMPLATE_JSON[key]
        return default[0] if isinstance(default, list) else default

    @property
    def slug(self) -> str:
        return self.answer("project_slug")

    @property
    def python_version(self) -> str:
        return self.answer("python_version")

    @property
    def docker(self) -> bool:
        return self.answer("use_docker") == "yes"

    @property
    def github_actions(self) -> bool:
        return self.answer("use_github_actions") == "yes"

    @property
    def license(self) -> str:
        return self.answer("license")


VARIANTS = {
    variant.name: variant
    for variant in (
        Variant("default"),
        Variant(
            "py312-apache-no-docker",
            {
                "python_version": "3.12",
                "use_docker": "no",
                "license": "Apache-2.0",
            },
        ),
        Variant(
            "py313-bsd-no-actions",
            {
                "python_version": "3.13",
                "use_github_actions": "no",
                "license": "BSD-3-Clause",
            },
        ),
        Variant(
            "proprietary-bare-custom-name",
            {
                "project_name": "Order Pipeline",
                "author_name": "Ada Lovelace",
                "author_email": "ada@example.org",
                "use_docker": "no",
                "use_github_actions": "no",
                "license": "Proprietary",
            },
        ),
        Variant(
            "py313-custom-slug-docker",
            {
                "project_name": "Billing Worker",
                "project_slug": "billing_jobs",
                "python_version": "3.13",
                "license": "MIT",
            },
        ),
    )
}

DOCKER_VARIANTS = [name for name, v in VARIANTS.items() if v.docker]
ACTIONS_VARIANTS = [name for name, v in VARIANTS.items() if v.github_actions]

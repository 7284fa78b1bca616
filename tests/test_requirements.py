"""requirements-dev.txt, the one list scripts/test.py installs."""

from __future__ import annotations

import re
import tomllib

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

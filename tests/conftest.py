"""Fixtures that bake the template.

Every variant in ``variants.VARIANTS`` is baked at most once per test session
(with cookiecutter's Python API) and shared by all the tests that use it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter
from variants import ROOT, VARIANTS, Variant


@dataclass(frozen=True)
class Baked:
    """A project baked from the template."""

    variant: Variant
    path: Path
    # Relative paths of the files as generated, before any test ran in it.
    files: tuple[str, ...]

    def read(self, relative: str) -> str:
        return (self.path / relative).read_text(encoding="utf-8")

    def exists(self, relative: str) -> bool:
        return (self.path / relative).exists()


@pytest.fixture(scope="session", autouse=True)
def isolated_cookiecutter_config(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Path]:
    """Keep cookiecutter away from the user's config, replay and clone dirs.

    Set through COOKIECUTTER_CONFIG, which the API and the CLI subprocesses
    started by the tests both read.
    """
    home = tmp_path_factory.mktemp("cookiecutter-home")
    config = home / "config.yaml"
    config.write_text(
        json.dumps(
            {
                "cookiecutters_dir": str(home / "cookiecutters"),
                "replay_dir": str(home / "replay"),
            }
        ),
        encoding="utf-8",
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COOKIECUTTER_CONFIG", str(config))
        yield config


@pytest.fixture(scope="session")
def bake(
    tmp_path_factory: pytest.TempPathFactory, isolated_cookiecutter_config: Path
) -> Callable[[str], Baked]:
    """Return ``bake(name)``, which bakes a variant once and caches it."""
    cache: dict[str, Baked] = {}

    def _bake(name: str) -> Baked:
        if name not in cache:
            variant = VARIANTS[name]
            output_dir = tmp_path_factory.mktemp(f"bake-{name}")
            project = Path(
                cookiecutter(
                    str(ROOT),
                    no_input=True,
                    extra_context=dict(variant.overrides),
                    output_dir=str(output_dir),
                )
            )
            files = tuple(
                sorted(
                    str(path.relative_to(project))
                    for path in project.rglob("*")
                    if path.is_file()
                )
            )
            cache[name] = Baked(variant, project, files)
        return cache[name]

    return _bake


@pytest.fixture
def default_project(bake: Callable[[str], Baked]) -> Baked:
    return bake("default")


def run_cookiecutter_cli(
    output_dir: Path, *answers: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m cookiecutter --no-input`` on the template.

    ``answers`` are ``key=value`` pairs; stdout and stderr are merged, since
    the hooks may print to either.
    """
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            "--no-input",
            "--output-dir",
            str(output_dir),
            str(ROOT),
            *answers,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONIOENCODING="utf-8"),
        timeout=120,
        check=False,
    )


@pytest.fixture
def cookiecutter_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``python -m cookiecutter --no-input -o DIR <template> key=value...``."""
    return run_cookiecutter_cli

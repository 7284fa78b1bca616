"""Run commands inside projects baked from the template.

By default a baked project is not installed: a command runs with this
interpreter (the shared .venv made by scripts/test.py holds every
dependency), from the project's root, with PYTHONPATH pointing there. A test
that installed the project in a venv of its own passes that venv's
``python`` and ``pythonpath=False``. REDIS_URL and REQUIRE_REDIS pass
through from the environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TIMEOUT = 1200  # seconds, for the slowest command: the kit's whole suite
OUTPUT_TAIL = 20_000  # characters of output shown when a command fails


def run_in_project(
    project: Path,
    *args: str,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
    pythonpath: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` in ``project``; stdout and stderr are merged."""
    environ = dict(os.environ, PYTHONUNBUFFERED="1")
    if pythonpath:
        environ["PYTHONPATH"] = str(project)
    else:
        environ.pop("PYTHONPATH", None)
    # Settings meant for this test session must not leak into the baked one.
    environ.pop("PYTEST_ADDOPTS", None)
    environ.update(env or {})
    return subprocess.run(
        [python, *args],
        cwd=project,
        env=environ,
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

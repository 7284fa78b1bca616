#!/usr/bin/env python3
"""Run the template's test suite: ``python3 scripts/test.py [pytest options]``.

Creates (or reuses) the virtualenv ``.venv`` at the repository root, installs
``requirements-dev.txt`` into it, at the versions of the generated project's
``requirements.txt`` lock, when either changed, then runs
``pytest tests`` with that venv's interpreter, passing any extra options
through (``python3 scripts/test.py -k hooks -x``). Exits with pytest's status.

Environment honoured by the tests: ``REDIS_URL`` (the Redis that baked
projects' Redis tests use) and ``REQUIRE_REDIS=1`` (fail instead of skipping
when that Redis is unreachable).
"""

from __future__ import annotations

import subprocess
import sys

from _bootstrap import ROOT, ensure_venv, pip_install, require_python

VENV = ROOT / ".venv"
REQUIREMENTS = ROOT / "requirements-dev.txt"
# The generated project's locked runtime versions: the suite tests those, the
# ones a baked project's Docker image and CI install.
LOCK = ROOT / "{{cookiecutter.project_slug}}" / "requirements.txt"


def main(argv: list[str]) -> int:
    require_python()
    python = ensure_venv(VENV)
    pip_install(
        VENV,
        ["--requirement", str(REQUIREMENTS), "--constraint", str(LOCK)],
        inputs=[REQUIREMENTS, LOCK],
        purpose="test",
    )
    cmd = [str(python), "-m", "pytest", "tests", *argv]
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

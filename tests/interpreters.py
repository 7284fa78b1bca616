"""Find a Python interpreter of a given version on this machine.

Looked for as ``python3.X`` on PATH first, then in pyenv's versions
(``$(pyenv root)/versions/3.X*/bin/python3.X``). A candidate counts only if it
runs, reports that version and can create virtualenvs: a pyenv shim for a
version that is installed but not selected is on PATH yet fails to run, and
Debian's interpreters need their ``-venv`` package for ``ensurepip``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

PROBE = "import ensurepip, sys, venv; print('%d.%d' % sys.version_info[:2])"


def find_python(version: str) -> Path | None:
    """Path of a working ``python<version>`` interpreter, or None."""
    for candidate in _candidates(version):
        if _is_usable(candidate, version):
            return candidate
    return None


def _candidates(version: str) -> list[Path]:
    name = f"python{version}"
    found = []
    on_path = shutil.which(name)
    if on_path:
        found.append(Path(on_path))
    root = _pyenv_root()
    if root:
        # Newest patch release first: 3.12.10 before 3.12.9.
        builds = sorted(
            (root / "versions").glob(f"{version}*/bin/{name}"),
            key=lambda path: [int(n) for n in re.findall(r"\d+", path.parts[-3])],
            reverse=True,
        )
        found.extend(builds)
    return found


def _pyenv_root() -> Path | None:
    pyenv = shutil.which("pyenv")
    if pyenv:
        result = subprocess.run(
            [pyenv, "root"], capture_output=True, text=True, timeout=30, check=False
        )
        if result.returncode == 0 and result.stdout.strip():
            return Path(result.stdout.strip())
    if os.environ.get("PYENV_ROOT"):
        return Path(os.environ["PYENV_ROOT"])
    return None


def _is_usable(python: Path, version: str) -> bool:
    try:
        result = subprocess.run(
            [str(python), "-c", PROBE],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except OSError:
        return False
    return result.returncode == 0 and result.stdout.strip() == version

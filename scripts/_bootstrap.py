"""Virtualenv helpers shared by scripts/test.py and scripts/demo.py.

Standard library only: these run before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

MIN_PYTHON = (3, 11)
ROOT = Path(__file__).resolve().parent.parent


def require_python() -> None:
    """Exit with a clear message when this interpreter is too old."""
    if sys.version_info < MIN_PYTHON:
        wanted = ".".join(map(str, MIN_PYTHON))
        found = ".".join(map(str, sys.version_info[:3]))
        sys.exit(f"ERROR: Python {wanted}+ is required, this is {found}.")


def venv_bin(venv: Path, name: str) -> Path:
    """Path of an executable installed in ``venv``."""
    if os.name == "nt":
        return venv / "Scripts" / f"{name}.exe"
    return venv / "bin" / name


def run(cmd: list[str], **kwargs) -> None:
    """Run ``cmd``, echoing it first; exit with its status if it fails."""
    print("+", " ".join(str(part) for part in cmd), flush=True)
    result = subprocess.run(cmd, check=False, **kwargs)
    if result.returncode != 0:
        sys.exit(result.returncode)


def _works(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import sys; print(sys.version_info[:2] >= (3, 11))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.returncode == 0 and probe.stdout.strip() == "True"


def ensure_venv(venv: Path) -> Path:
    """Create ``venv`` unless it already holds a working interpreter.

    Returns the path of the venv's python.
    """
    python = venv_bin(venv, "python")
    if _works(python):
        return python
    if venv.exists():
        print(f"Recreating the broken virtualenv {venv}", flush=True)
        shutil.rmtree(venv)
    print(f"Creating virtualenv {venv}", flush=True)
    run([sys.executable, "-m", "venv", str(venv)])
    return python


def pip_install(
    venv: Path,
    args: list[str],
    inputs: list[Path],
    purpose: str,
    cwd: Path | None = None,
) -> None:
    """``pip install args`` into ``venv``, skipped when nothing changed.

    ``inputs`` are the files that decide what gets installed (a requirements
    file, a pyproject.toml): their contents and ``args`` are hashed into a
    stamp file named after ``purpose`` inside the venv, and pip only runs
    when the hash differs from the last successful install.
    """
    digest = hashlib.sha256(" ".join(args).encode())
    for path in inputs:
        digest.update(path.read_bytes())
    stamp = venv / f".installed-{purpose}.sha256"
    key = digest.hexdigest()
    if stamp.exists() and stamp.read_text().strip() == key:
        return
    python = venv_bin(venv, "python")
    pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
    run([*pip, "install", "--quiet", *args], cwd=cwd)
    stamp.write_text(key + "\n")


def install_project(project: Path, purpose: str) -> Path:
    """Install a baked project into its own ``.venv`` (``pip install -e '.[dev]'``).

    At the versions of its requirements.txt lock, as its CI does. Skipped
    when neither file changed. Returns that venv's path.
    """
    venv = project / ".venv"
    ensure_venv(venv)
    pip_install(
        venv,
        ["--editable", ".[dev]", "--constraint", "requirements.txt"],
        inputs=[project / "pyproject.toml", project / "requirements.txt"],
        purpose=purpose,
        cwd=project,
    )
    return venv

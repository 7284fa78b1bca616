"""Trim the generated project to the chosen options and print next steps.

Cookiecutter runs this file from inside the freshly generated project
directory after rendering it with Jinja. cruft runs it too, also when
``cruft update`` (or ``cruft diff``) renders the template again to compare:
the project exists then, and the next steps are not printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT_SLUG = "{{ cookiecutter.project_slug }}"
USE_DOCKER = "{{ cookiecutter.use_docker }}"
USE_GITHUB_ACTIONS = "{{ cookiecutter.use_github_actions }}"
LICENSE = "{{ cookiecutter.license }}"
# Set by cookiecutter itself (its CLI and API), never by cruft, which renders
# the template through cookiecutter's generate_files().
RUN_BY_COOKIECUTTER = bool("{{ cookiecutter.get('_output_dir', '') }}")
# cruft commands that render the template again for a project that exists.
CRUFT_RERENDERS = {"update", "diff"}

DOCKER_FILES = (
    "Dockerfile",
    "docker-compose.yml",
    "docker-compose.sentinel.yml",
    ".dockerignore",
)
WORKER_COMMAND = f"python -m {PROJECT_SLUG}.worker"


def remove(path: Path) -> None:
    """Delete a file or a directory tree if it exists."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def trim(root: Path) -> None:
    """Remove what the unselected options do not need."""
    if USE_DOCKER != "yes":
        for name in DOCKER_FILES:
            remove(root / name)
    if USE_GITHUB_ACTIONS != "yes":
        remove(root / ".github")
    if LICENSE == "Proprietary":
        remove(root / "LICENSE")


def parent_command() -> list[str]:
    """The command line of the process that runs this hook ([] if unknown).

    cookiecutter starts hooks directly (no shell, except on Windows), so the
    parent is the cookiecutter or cruft process itself.
    """
    parent = os.getppid()
    try:  # Linux
        raw = Path(f"/proc/{parent}/cmdline").read_bytes()
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    except OSError:
        pass
    try:  # macOS and the BSDs
        found = subprocess.run(
            ["ps", "-o", "args=", "-p", str(parent)],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return found.stdout.split()


def is_cruft_rerender(command: list[str]) -> bool:
    """Whether ``command`` is cruft rendering the template for an existing project.

    ``cruft update`` renders both template versions in temporary directories
    without any sign in the context or the files: only its command line says.
    """
    names = [Path(part).name for part in command]
    return any(name.startswith("cruft") for name in names) and bool(
        CRUFT_RERENDERS & set(names)
    )


def next_steps() -> str:
    """Return the instructions printed once the project exists."""
    lines = [
        "",
        f"Project {PROJECT_SLUG} created. Next steps:",
        "",
        f"  cd {PROJECT_SLUG}",
        "  python3 -m venv .venv && . .venv/bin/activate",
        "  pip install -e '.[dev]'",
        "  cp .env.example .env",
        "  # In .env, set FLASK_SECRET_KEY, and FLASK_MONITOR_USERNAME and",
        "  # FLASK_MONITOR_PASSWORD: the monitor answers 403 until they are set.",
        "",
        "  # terminal 1: the web app on http://127.0.0.1:5000 (monitor: /monitor)",
        f"  flask --app {PROJECT_SLUG} run",
        "  # port 5000 taken (macOS: AirPlay Receiver)? add --port 5001",
        "  # terminal 2: the worker that runs the jobs",
        f"  {WORKER_COMMAND}",
        "  # the test suite",
        "  pytest",
        "",
        "Jobs are queued in SQLite by default; set REDIS_URL to use Redis.",
    ]
    if USE_DOCKER == "yes":
        lines.append("With Docker: docker compose up --build (Redis, web, worker).")
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    trim(Path.cwd())
    if RUN_BY_COOKIECUTTER or not is_cruft_rerender(parent_command()):
        print(next_steps())
    return 0


if __name__ == "__main__":
    sys.exit(main())

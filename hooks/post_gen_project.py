"""Trim the generated project to the chosen options and print next steps.

Cookiecutter runs this file from inside the freshly generated project
directory after rendering it with Jinja.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

PROJECT_SLUG = "{{ cookiecutter.project_slug }}"
USE_DOCKER = "{{ cookiecutter.use_docker }}"
USE_GITHUB_ACTIONS = "{{ cookiecutter.use_github_actions }}"
LICENSE = "{{ cookiecutter.license }}"

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


def next_steps() -> str:
    """Return the instructions printed once the project exists."""
    lines = [
        "",
        f"Project {PROJECT_SLUG} created. Next steps:",
        "",
        f"  cd {PROJECT_SLUG}",
        "  python3 -m venv .venv && . .venv/bin/activate",
        "  pip install -e '.[dev]'",
        "",
        "  # terminal 1: the web app on http://127.0.0.1:5000",
        f"  flask --app {PROJECT_SLUG} run",
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
    print(next_steps())
    return 0


if __name__ == "__main__":
    sys.exit(main())

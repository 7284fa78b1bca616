"""Throwaway git repositories for the tests that need real git history.

``GIT_ENV`` gives commits an author on a machine with no git identity, and
keeps the user's and the system's git config (signing, hooks, templates) out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Template Tests",
    "GIT_AUTHOR_EMAIL": "template-tests@example.com",
    "GIT_COMMITTER_NAME": "Template Tests",
    "GIT_COMMITTER_EMAIL": "template-tests@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(repo: Path, *args: str, isolated: bool = True) -> str:
    """Run ``git *args`` in ``repo`` and return its stdout; fail on an error.

    ``isolated=False`` keeps the user's git config, for reading a repository
    of theirs (its ``safe.directory`` may be needed there).
    """
    result = subprocess.run(
        ["git", *args],
        cwd=repo,
        env=dict(os.environ, **GIT_ENV) if isolated else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"`git {' '.join(args)}` in {repo} exited with {result.returncode}:\n"
            + result.stdout,
            pytrace=False,
        )
    return result.stdout


def commit_all(repo: Path, message: str) -> str:
    """Commit every change in ``repo``, creating the repository if needed.

    Returns the new commit's hash.
    """
    if not (repo / ".git").exists():
        git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--message", message)
    return head(repo)


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def copy_working_tree(source: Path, destination: Path) -> None:
    """Copy the files of ``source``'s working tree that git sees.

    Tracked files as they are on disk (uncommitted edits included) and
    untracked ones that are not ignored, so virtualenvs and caches stay out.
    """
    listed = git(
        source,
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
        isolated=False,
    )
    for relative in sorted(set(filter(None, listed.split("\0")))):
        path = source / relative
        if not path.is_file():  # deleted but not yet committed
            continue
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)

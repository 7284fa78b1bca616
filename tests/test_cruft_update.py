"""A generated project takes a kit update from the template with cruft.

One scenario, with real git and the real cruft CLI, shared by the tests:

1. the template (this working tree) is copied into a git repository;
2. ``cruft create --no-input`` generates the default project from it;
3. the project's user commits a new job module and a changed setting;
4. the template changes a kit file and commits;
5. ``cruft check`` runs in the project, then ``cruft update``.

The tests then check what the README's "Updates" section promises: the kit's
change lands, the user's own files are left as they were, nothing conflicts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from git_repos import GIT_ENV, commit_all, copy_working_tree, git
from projects import assert_succeeded
from variants import ROOT, SLUG_DIR_NAME, Variant

pytestmark = pytest.mark.generated

SLUG = Variant("default").slug
KIT_SETTINGS = f"{SLUG_DIR_NAME}/{SLUG_DIR_NAME}/kit/settings.py"
# What the template's new version adds to the kit's settings.
KIT_CHANGE = (
    "\n# Added by a template update (tests/test_cruft_update.py).\n"
    "UPDATE_PROBE = True\n"
)
USER_JOB_PATH = f"{SLUG}/jobs/send_welcome.py"
USER_JOB = '''"""sendWelcomeEmail: a job the project's user added."""

from marshmallow import Schema, fields

from ..kit import job


class Welcome(Schema):
    email = fields.Email(required=True)


@job("sendWelcomeEmail", schema=Welcome, retries=3)
def send_welcome(data: dict) -> dict:
    return {"sent_to": data["email"]}
'''
CONFLICT_MARKER = re.compile(rb"^(<{7}|>{7})( |$)", re.MULTILINE)


@dataclass(frozen=True)
class Scenario:
    template: Path
    project: Path
    template_commit: str  # the template's commit with the kit change
    user_config: str  # the project's config.py as its user committed it
    check_before_update: subprocess.CompletedProcess[str]
    create_output: str  # what `cruft create` printed
    update_output: str  # what `cruft update` printed


def cruft(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m cruft *args`` in ``project``; stdout and stderr merged."""
    return subprocess.run(
        [sys.executable, "-m", "cruft", *args],
        cwd=project,
        env=dict(os.environ, **GIT_ENV, PYTHONIOENCODING="utf-8", NO_COLOR="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        check=False,
    )


def add_user_work(project: Path) -> str:
    """Add a job module and change a setting, as a user would; commit.

    Returns the changed config.py.
    """
    (project / USER_JOB_PATH).write_text(USER_JOB, encoding="utf-8")
    config = project / SLUG / "config.py"
    changed, count = re.subn(
        r"^JOB_TIMEOUT = .*$",
        "JOB_TIMEOUT = 120",
        config.read_text(encoding="utf-8"),
        flags=re.MULTILINE,
    )
    assert count == 1, "config.py no longer sets JOB_TIMEOUT: update this test"
    config.write_text(changed, encoding="utf-8")
    commit_all(project, "Add sendWelcomeEmail; shorter job timeout")
    return changed


def change_kit(template: Path) -> str:
    """Release a new template version with a kit change; return its commit."""
    settings = template / KIT_SETTINGS
    settings.write_text(
        settings.read_text(encoding="utf-8") + KIT_CHANGE, encoding="utf-8"
    )
    return commit_all(template, "Kit: a new setting")


@pytest.fixture(scope="module")
def scenario(
    tmp_path_factory: pytest.TempPathFactory, isolated_cookiecutter_config: Path
) -> Scenario:
    template = tmp_path_factory.mktemp("template")
    copy_working_tree(ROOT, template)
    commit_all(template, "The template, as in the working tree")

    output = tmp_path_factory.mktemp("cruft-output")
    created = cruft(output, "create", "--no-input", str(template))
    assert_succeeded(created)
    project = output / SLUG
    commit_all(project, "Generated with cruft")
    user_config = add_user_work(project)

    template_commit = change_kit(template)

    check_before_update = cruft(project, "check")
    updated = cruft(project, "update", "--skip-apply-ask", "--allow-untracked-files")
    assert_succeeded(updated)
    return Scenario(
        template,
        project,
        template_commit,
        user_config,
        check_before_update,
        created.stdout,
        updated.stdout,
    )


NEXT_STEPS = f"Project {SLUG} created. Next steps:"


def test_create_prints_the_next_steps(scenario):
    assert NEXT_STEPS in scenario.create_output


def test_update_does_not_print_the_next_steps_again(scenario):
    # The hook runs twice during an update (old and new template version).
    assert NEXT_STEPS not in scenario.update_output


def test_check_reports_a_project_behind_its_template(scenario):
    result = scenario.check_before_update

    assert result.returncode != 0, result.stdout
    assert "out of date" in result.stdout


def test_update_brings_the_kit_change_into_the_project(scenario):
    settings = (scenario.project / SLUG / "kit" / "settings.py").read_text(
        encoding="utf-8"
    )

    assert settings.endswith(KIT_CHANGE)


def test_update_leaves_the_users_job_module_alone(scenario):
    job_module = (scenario.project / USER_JOB_PATH).read_text(encoding="utf-8")

    assert job_module == USER_JOB


def test_update_leaves_the_users_config_change_alone(scenario):
    config = (scenario.project / SLUG / "config.py").read_text(encoding="utf-8")

    assert config == scenario.user_config


def test_update_changes_only_the_kit_and_the_cruft_state(scenario):
    changed = git(scenario.project, "status", "--porcelain", "--untracked-files=all")

    assert sorted(line[3:] for line in changed.splitlines()) == [
        ".cruft.json",
        f"{SLUG}/kit/settings.py",
    ]


def test_update_leaves_no_rejected_hunks_or_conflict_markers(scenario):
    files = [
        path
        for path in scenario.project.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(scenario.project).parts
    ]

    assert [path.name for path in files if path.suffix in {".rej", ".orig"}] == []
    assert [
        str(path.relative_to(scenario.project))
        for path in files
        if CONFLICT_MARKER.search(path.read_bytes())
    ] == []


def test_update_records_the_new_template_commit(scenario):
    state = json.loads((scenario.project / ".cruft.json").read_text(encoding="utf-8"))

    assert state["commit"] == scenario.template_commit


def test_check_passes_after_update(scenario):
    assert_succeeded(cruft(scenario.project, "check"))

"""The pre- and post-generation hooks."""

from __future__ import annotations

import subprocess
import sys

import jinja2
import pytest
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter
from variants import ROOT

# (slug, a fragment the error line must contain)
INVALID_SLUGS = [
    ("1abc", "not a valid Python package name"),
    ("class", "Python keyword"),
    ("json", "standard library"),
    ("flask", "would shadow the 'flask' package"),
    ("redis", "would shadow the 'redis' package"),
    ("tests", "would shadow the 'tests' package"),
    ("my-app", "not a valid Python package name"),
    ("Bad Name!", "not a valid Python package name"),
    ("MyApp", "not a valid Python package name"),
]


# Cookiecutter logs this line itself whenever a hook fails.
COOKIECUTTER_OWN_ERROR = "ERROR: Stopping generation because"


def error_lines(output: str) -> list[str]:
    """The ``ERROR: `` lines printed by the hook (not by cookiecutter)."""
    return [
        line
        for line in output.splitlines()
        if line.startswith("ERROR: ") and not line.startswith(COOKIECUTTER_OWN_ERROR)
    ]


@pytest.mark.parametrize(("slug", "reason"), INVALID_SLUGS)
def test_invalid_slug_stops_generation_with_one_error_line(
    cookiecutter_cli, tmp_path, slug, reason
):
    result = cookiecutter_cli(tmp_path, f"project_slug={slug}")

    assert result.returncode != 0
    errors = error_lines(result.stdout)
    assert len(errors) == 1, result.stdout
    assert reason in errors[0]
    assert "project_slug=" in errors[0]  # tells how to fix it


@pytest.mark.parametrize(("slug", "reason"), INVALID_SLUGS)
def test_invalid_slug_leaves_nothing_behind(cookiecutter_cli, tmp_path, slug, reason):
    cookiecutter_cli(tmp_path, f"project_slug={slug}")

    assert list(tmp_path.iterdir()) == []


def test_invalid_slug_raises_failed_hook_exception_from_the_api(tmp_path):
    with pytest.raises(FailedHookException):
        cookiecutter(
            str(ROOT),
            no_input=True,
            extra_context={"project_slug": "import"},
            output_dir=str(tmp_path),
        )

    assert list(tmp_path.iterdir()) == []


def test_project_name_that_derives_an_invalid_slug_is_rejected(
    cookiecutter_cli, tmp_path
):
    result = cookiecutter_cli(tmp_path, "project_name=2nd Shop")

    assert result.returncode != 0
    assert len(error_lines(result.stdout)) == 1
    assert list(tmp_path.iterdir()) == []


def test_malformed_author_email_is_rejected(cookiecutter_cli, tmp_path):
    result = cookiecutter_cli(tmp_path, "author_email=not-an-address")

    assert result.returncode != 0
    errors = error_lines(result.stdout)
    assert len(errors) == 1
    assert "author_email" in errors[0]
    assert list(tmp_path.iterdir()) == []


def test_valid_custom_slug_generates_the_project(cookiecutter_cli, tmp_path):
    result = cookiecutter_cli(tmp_path, "project_slug=order_pipeline_2")

    assert result.returncode == 0, result.stdout
    assert error_lines(result.stdout) == []
    assert (tmp_path / "order_pipeline_2" / "order_pipeline_2").is_dir()


def test_slug_is_derived_from_the_project_name(cookiecutter_cli, tmp_path):
    result = cookiecutter_cli(tmp_path, "project_name=My Shop-Jobs")

    assert result.returncode == 0, result.stdout
    assert [path.name for path in tmp_path.iterdir()] == ["my_shop_jobs"]


def test_post_gen_hook_prints_next_steps(cookiecutter_cli, tmp_path):
    result = cookiecutter_cli(tmp_path)

    assert result.returncode == 0, result.stdout
    for step in (
        "cd acme_jobs",
        "python3 -m venv .venv",
        "pip install -e '.[dev]'",
        "flask --app acme_jobs run",
        "python -m acme_jobs.worker",
        "pytest",
    ):
        assert step in result.stdout


def test_post_gen_hook_says_how_to_open_the_monitor(cookiecutter_cli, tmp_path):
    result = cookiecutter_cli(tmp_path)

    # Without these the monitor answers 403 (docs/monitor.md).
    for step in (
        "cp .env.example .env",
        "FLASK_SECRET_KEY",
        "FLASK_MONITOR_USERNAME",
        "FLASK_MONITOR_PASSWORD",
        "/monitor",
    ):
        assert step in result.stdout


def test_post_gen_hook_says_what_to_do_when_port_5000_is_taken(
    cookiecutter_cli, tmp_path
):
    result = cookiecutter_cli(tmp_path)

    assert "--port 5001" in result.stdout
    assert "AirPlay" in result.stdout


def test_post_gen_hook_mentions_docker_compose_only_with_docker(
    cookiecutter_cli, tmp_path
):
    with_docker = cookiecutter_cli(tmp_path / "a")
    without_docker = cookiecutter_cli(tmp_path / "b", "use_docker=no")

    assert "docker compose up" in with_docker.stdout
    assert "docker compose up" not in without_docker.stdout


def run_rendered_pre_gen_hook(tmp_path, **answers: str):
    """Render the pre-generation hook with Jinja as cookiecutter does, run it.

    Reaches answers that cookiecutter's own choice validation would refuse
    before the hook runs, such as an unlisted python_version.
    """
    context = {
        "project_slug": "acme_jobs",
        "python_version": "3.11",
        "author_email": "you@example.com",
        **answers,
    }
    source = (ROOT / "hooks" / "pre_gen_project.py").read_text(encoding="utf-8")
    script = tmp_path / "pre_gen_project.py"
    script.write_text(
        jinja2.Environment().from_string(source).render(cookiecutter=context),
        encoding="utf-8",
    )
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_rendered_pre_gen_hook_accepts_the_defaults(tmp_path):
    result = run_rendered_pre_gen_hook(tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""


@pytest.mark.parametrize("version", ["3.10", "2.7", "three"])
def test_python_version_below_3_11_is_rejected(tmp_path, version):
    result = run_rendered_pre_gen_hook(tmp_path, python_version=version)

    assert result.returncode == 1
    assert error_lines(result.stderr) == result.stderr.splitlines()
    assert len(error_lines(result.stderr)) == 1
    assert "python_version" in result.stderr


def test_slug_with_quotes_cannot_break_out_of_the_hook(tmp_path):
    result = run_rendered_pre_gen_hook(tmp_path, project_slug="x''' + \"'")

    assert result.returncode == 1
    assert "not a valid Python package name" in result.stderr

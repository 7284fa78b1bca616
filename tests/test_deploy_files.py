"""Deployment files of baked projects, checked statically (no Docker engine)."""

from __future__ import annotations

import json
import multiprocessing
import re
import runpy

import linters
import pytest
import yaml
from variants import ACTIONS_VARIANTS, DOCKER_VARIANTS, TEMPLATE_JSON, worker_command

WORKFLOW = ".github/workflows/ci.yml"
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.sentinel.yml")


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined."""
    logical, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    pairs = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        pairs.append((keyword.upper(), arguments.strip()))
    return pairs


def dockerfile_stages(text: str) -> list[list[tuple[str, str]]]:
    """Instructions grouped by build stage, each starting with its FROM."""
    stages: list[list[tuple[str, str]]] = []
    for keyword, arguments in dockerfile_instructions(text):
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, arguments))
    return stages


def workflow(baked) -> dict:
    return yaml.safe_load(baked.read(WORKFLOW))


def workflow_run_lines(baked) -> list[str]:
    steps = workflow(baked)["jobs"]["test"]["steps"]
    return [
        line.strip()
        for step in steps
        for line in step.get("run", "").splitlines()
        if line.strip()
    ]


# Dockerfile


@pytest.mark.parametrize("name", DOCKER_VARIANTS)
def test_dockerfile_is_multi_stage_on_the_chosen_python(bake, name):
    baked = bake(name)

    stages = dockerfile_stages(baked.read("Dockerfile"))

    assert len(stages) >= 2
    image = f"python:{baked.variant.python_version}-slim"
    assert all(stage[0][1].startswith(image) for stage in stages)


@pytest.mark.parametrize("name", DOCKER_VARIANTS)
def test_hadolint_finds_nothing_in_the_dockerfile(bake, name):
    result = linters.hadolint(bake(name).path)

    assert result.returncode == 0, result.stdout
    assert result.stdout == ""


def test_dockerfile_final_stage_runs_as_a_numeric_non_root_user(default_project):
    final = dockerfile_stages(default_project.read("Dockerfile"))[-1]

    users = [arguments for keyword, arguments in final if keyword == "USER"]

    assert users
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) != 0
    assert group.isdigit()


def test_dockerfile_healthcheck_runs_python_urllib_on_healthz_without_a_shell(
    default_project,
):
    final = dockerfile_stages(default_project.read("Dockerfile"))[-1]

    checks = [arguments for keyword, arguments in final if keyword == "HEALTHCHECK"]

    assert len(checks) == 1
    command = json.loads(checks[0].partition(" CMD ")[2])
    assert command[:2] == ["python", "-c"]
    assert "/healthz" in command[2]
    assert "urllib" in command[2]


def test_dockerfile_installs_the_locked_versions(default_project):
    runs = [
        arguments
        for keyword, arguments in dockerfile_instructions(
            default_project.read("Dockerfile")
        )
        if keyword == "RUN"
    ]

    assert "pip install --requirement requirements.txt" in runs
    assert "pip install --no-deps . && pip check" in runs


def test_dockerfile_installs_no_dev_extra(default_project):
    text = default_project.read("Dockerfile")

    runs = [
        arguments
        for keyword, arguments in dockerfile_instructions(text)
        if keyword == "RUN"
    ]

    assert not any("[dev]" in command for command in runs)
    assert not any(re.search(r"\b(pytest|ruff|hypothesis)\b", c) for c in runs)


def test_dockerfile_final_stage_copies_the_venv_from_the_builder(default_project):
    final = dockerfile_stages(default_project.read("Dockerfile"))[-1]

    copies = [arguments for keyword, arguments in final if keyword == "COPY"]

    assert any(arguments.startswith("--from=builder") for arguments in copies)
    assert not any(keyword == "RUN" and "pip install" in a for keyword, a in final)


def test_dockerfile_default_command_is_gunicorn_with_its_config(default_project):
    instructions = dockerfile_instructions(default_project.read("Dockerfile"))

    command = [arguments for keyword, arguments in instructions if keyword == "CMD"]

    assert command[-1] == (
        '["gunicorn", "--config", "gunicorn.conf.py", "acme_jobs:create_app()"]'
    )


def test_dockerignore_keeps_local_state_and_secrets_out(default_project):
    patterns = default_project.read(".dockerignore").splitlines()

    for pattern in (".git", ".venv", ".env", "__pycache__", "instance"):
        assert pattern in patterns


# docker-compose.yml


def compose(baked) -> dict:
    return yaml.safe_load(baked.read("docker-compose.yml"))


def test_sentinel_override_adds_a_replica_and_three_sentinels(default_project):
    override = yaml.safe_load(default_project.read("docker-compose.sentinel.yml"))
    services = override["services"]

    replica = services["redis-replica"]["command"]
    assert replica[replica.index("--replicaof") + 1 :][:2] == ["redis", "6379"]
    sentinels = [name for name in services if name.startswith("sentinel-")]
    assert len(sentinels) == 3
    assert all("sentinel monitor mymaster redis 6379 2" in services[name]["command"][2]
               for name in sentinels)  # fmt: skip
    for app in ("web", "worker"):
        found = services[app]["environment"]["FLASK_REDIS_SENTINELS"].split(",")
        assert found == [f"{name}:26379" for name in sentinels]


def test_compose_defines_redis_web_and_worker(default_project):
    services = compose(default_project)["services"]

    assert set(services) == {"redis", "web", "worker"}


def test_compose_redis_persists_with_append_only_file(default_project):
    redis = compose(default_project)["services"]["redis"]

    assert "--appendonly" in redis["command"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])


def test_compose_redis_data_lives_in_a_named_volume(default_project):
    data = compose(default_project)

    volume = data["services"]["redis"]["volumes"][0].split(":")[0]

    assert volume in data["volumes"]


def test_compose_redis_healthcheck_pings(default_project):
    redis = compose(default_project)["services"]["redis"]

    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


@pytest.mark.parametrize("service", ["web", "worker"])
def test_compose_app_services_wait_for_healthy_redis(default_project, service):
    spec = compose(default_project)["services"][service]

    assert spec["depends_on"]["redis"]["condition"] == "service_healthy"


@pytest.mark.parametrize("service", ["web", "worker"])
def test_compose_app_services_use_redis_queue(default_project, service):
    spec = compose(default_project)["services"][service]

    assert spec["environment"]["REDIS_URL"] == "redis://redis:6379/0"


def test_compose_web_and_worker_share_one_image_through_an_anchor(default_project):
    text = default_project.read("docker-compose.yml")
    services = compose(default_project)["services"]

    assert "x-app: &app" in text
    assert services["web"]["build"] == services["worker"]["build"]
    assert services["web"]["image"] == services["worker"]["image"]


def test_compose_web_runs_gunicorn(default_project):
    web = compose(default_project)["services"]["web"]

    assert web["command"] == (
        'gunicorn --config gunicorn.conf.py "acme_jobs:create_app()"'
    )


@pytest.mark.parametrize("name", DOCKER_VARIANTS)
def test_compose_files_match_the_compose_spec(bake, name):
    baked = bake(name)

    for file in COMPOSE_FILES:
        result = linters.check_jsonschema(baked.path, "compose-spec", file)

        assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("name", DOCKER_VARIANTS)
def test_compose_worker_runs_the_recommended_consumer_command(bake, name):
    baked = bake(name)

    worker = compose(baked)["services"]["worker"]

    assert worker["command"] == worker_command(baked.variant.slug)


def test_compose_worker_gets_longer_to_stop_than_its_shutdown_timeout(
    default_project,
):
    worker = compose(default_project)["services"]["worker"]

    assert int(worker["stop_grace_period"].rstrip("s")) > 30


def test_compose_documents_scaling_workers(default_project):
    assert "docker compose up --scale worker=3" in default_project.read(
        "docker-compose.yml"
    )


# GitHub Actions


@pytest.mark.parametrize("name", ACTIONS_VARIANTS)
def test_actionlint_finds_nothing_in_the_workflow(bake, name):
    result = linters.actionlint(bake(name).path, WORKFLOW)

    assert result.returncode == 0, result.stdout
    assert result.stdout == ""


@pytest.mark.parametrize("name", ACTIONS_VARIANTS)
@pytest.mark.parametrize(
    ("schema", "file"),
    [("github-workflows", WORKFLOW), ("dependabot", ".github/dependabot.yml")],
)
def test_github_files_match_their_schemas(bake, name, schema, file):
    result = linters.check_jsonschema(bake(name).path, schema, file)

    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("name", ACTIONS_VARIANTS)
def test_workflow_tests_every_python_from_the_chosen_minimum(bake, name):
    baked = bake(name)
    offered = TEMPLATE_JSON["python_version"]
    expected = offered[offered.index(baked.variant.python_version) :]

    job = workflow(baked)["jobs"]["test"]

    assert job["strategy"]["matrix"]["python-version"] == expected
    assert expected[-1] == "3.13"
    setup = [
        s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python")
    ]
    assert setup[0]["with"]["python-version"] == "${{ matrix.python-version }}"


def test_workflow_uses_the_current_major_of_each_action(default_project):
    steps = workflow(default_project)["jobs"]["test"]["steps"]

    used = sorted(step["uses"] for step in steps if "uses" in step)

    # The newest majors when this was written (checkout 7.0, setup-python 7.0,
    # both on Node 24); Dependabot proposes the next ones.
    assert used == ["actions/checkout@v7", "actions/setup-python@v7"]


def test_workflow_runs_on_push_and_pull_request(default_project):
    data = workflow(default_project)

    triggers = data.get("on", data.get(True))  # YAML 1.1 reads "on" as true

    assert "push" in triggers
    assert "pull_request" in triggers


def test_workflow_has_a_healthy_redis_service(default_project):
    job = workflow(default_project)["jobs"]["test"]

    redis = job["services"]["redis"]

    assert redis["image"].startswith("redis")
    assert "--health-cmd" in redis["options"]
    assert "6379:6379" in [str(port) for port in redis["ports"]]


def test_workflow_requires_redis_for_the_tests(default_project):
    env = workflow(default_project)["jobs"]["test"]["env"]

    assert env["REDIS_URL"] == "redis://localhost:6379/0"
    assert str(env["REQUIRE_REDIS"]) == "1"


def test_workflow_installs_lints_and_tests(default_project):
    commands = workflow_run_lines(default_project)

    for expected in (
        "pip install -e '.[dev]' --constraint requirements.txt",
        "ruff check .",
        "ruff format --check .",
        "pytest",
    ):
        assert expected in commands


def test_workflow_keeps_github_expressions(default_project):
    text = default_project.read(WORKFLOW)

    assert "${{ github.workflow }}" in text
    assert "{% raw %}" not in text


def test_dependabot_updates_pip_and_actions_weekly(default_project):
    data = yaml.safe_load(default_project.read(".github/dependabot.yml"))

    schedules = {u["package-ecosystem"]: u["schedule"] for u in data["updates"]}

    assert data["version"] == 2
    assert schedules == {
        "pip": {"interval": "weekly"},
        "github-actions": {"interval": "weekly"},
    }


# Other project files


def test_pre_commit_runs_ruff_lint_and_format_at_a_pinned_rev(default_project):
    data = yaml.safe_load(default_project.read(".pre-commit-config.yaml"))

    repo = data["repos"][0]

    assert repo["repo"] == "https://github.com/astral-sh/ruff-pre-commit"
    assert re.fullmatch(r"v\d+\.\d+\.\d+", repo["rev"])
    assert {hook["id"] for hook in repo["hooks"]} == {"ruff-check", "ruff-format"}


def test_gitattributes_normalises_line_endings(default_project):
    lines = default_project.read(".gitattributes").splitlines()

    for rule in ("* text=auto", "*.sh text eol=lf", "Procfile text eol=lf"):
        assert rule in lines


# gunicorn.conf.py


@pytest.fixture
def gunicorn_settings(default_project, monkeypatch):
    """Load gunicorn.conf.py the way gunicorn does, with a chosen environment."""
    monkeypatch.delenv("PORT", raising=False)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)

    def load(**env: str) -> dict:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return runpy.run_path(str(default_project.path / "gunicorn.conf.py"))

    return load


def test_gunicorn_binds_port_8000_by_default(gunicorn_settings):
    assert gunicorn_settings()["bind"] == "0.0.0.0:8000"


def test_gunicorn_binds_the_port_from_env(gunicorn_settings):
    assert gunicorn_settings(PORT="9123")["bind"] == "0.0.0.0:9123"


def test_gunicorn_workers_default_to_twice_the_cpus_plus_one(gunicorn_settings):
    expected = multiprocessing.cpu_count() * 2 + 1

    assert gunicorn_settings()["workers"] == expected


def test_gunicorn_workers_are_capped_by_web_concurrency(gunicorn_settings):
    assert gunicorn_settings(WEB_CONCURRENCY="2")["workers"] == 2


def test_gunicorn_web_concurrency_does_not_exceed_the_cpu_default(gunicorn_settings):
    expected = multiprocessing.cpu_count() * 2 + 1

    assert gunicorn_settings(WEB_CONCURRENCY="1000")["workers"] == expected


def test_gunicorn_rejects_a_malformed_web_concurrency(gunicorn_settings):
    with pytest.raises(SystemExit, match="WEB_CONCURRENCY"):
        gunicorn_settings(WEB_CONCURRENCY="many")


def test_gunicorn_timeouts_and_keepalive(gunicorn_settings):
    settings = gunicorn_settings()

    assert settings["timeout"] == 30
    assert 0 < settings["graceful_timeout"] <= 30
    assert 0 < settings["keepalive"] <= 75


def test_gunicorn_logs_access_and_errors_to_stdout(gunicorn_settings):
    settings = gunicorn_settings()

    assert settings["accesslog"] == "-"
    assert settings["errorlog"] == "-"
    assert "%(s)s" in settings["access_log_format"]


def test_gunicorn_knows_and_accepts_every_setting(default_project, gunicorn_settings):
    from gunicorn.config import Config

    config = Config()
    settings = {
        name: value
        for name, value in gunicorn_settings().items()
        if not name.startswith("_")
        and not callable(value)
        and not isinstance(value, type(re))
    }

    unknown = sorted(set(settings) - set(config.settings))
    assert not unknown, f"not gunicorn settings: {unknown}"
    for name, value in settings.items():
        config.set(name, value)  # raises on a value of the wrong type
    assert config.bind == ["0.0.0.0:8000"]

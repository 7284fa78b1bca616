"""The app as a whole: settings, health checks, the CLI, the jobs package, the API's document."""

import ast
import importlib
import pkgutil
from pathlib import Path

from openapi_spec_validator import validate

from {{ cookiecutter.project_slug }} import config, create_app, jobs
from {{ cookiecutter.project_slug }}.kit import all_jobs

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "{{ cookiecutter.project_slug }}"


def test_settings_come_from_config_py(monkeypatch, tmp_path):
    monkeypatch.setattr(config, "JOB_TIMEOUT", 42)

    app = create_app({"TESTING": True, "SQLITE_PATH": str(tmp_path / "queue.sqlite3")})

    assert app.config["JOB_TIMEOUT"] == 42


def test_the_environment_overrides_config_py(monkeypatch, tmp_path):
    monkeypatch.setenv("FLASK_JOB_TIMEOUT", "42")

    app = create_app({"TESTING": True, "SQLITE_PATH": str(tmp_path / "queue.sqlite3")})

    assert app.config["JOB_TIMEOUT"] == 42


def test_the_kit_fills_in_settings_you_did_not_set(app):
    assert app.config["LEASE_TIMEOUT"] > 0


def test_healthz_says_the_process_is_up(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_readyz_says_the_queue_answers(queue_client):
    assert queue_client.get("/readyz").get_json() == {"status": "ready", "queue": "sqlite"}


def test_the_jobs_api_refuses_a_dispatch_without_a_key(queue_client):
    # An empty header replaces the tests' key, which the client sends otherwise.
    response = queue_client.post("/jobs/jobModelo", json={}, headers={"Authorization": ""})

    assert response.status_code == 401


def test_the_jobs_api_refuses_everyone_when_no_key_is_configured(tmp_path):
    app = create_app({"TESTING": True, "SQLITE_PATH": str(tmp_path / "queue.sqlite3")})

    response = app.test_client().post("/jobs/jobModelo", json={"nome": "João", "idade": 30})

    assert response.status_code == 503
    assert "FLASK_JOBS_API_KEYS" in response.get_json()["message"]


def test_every_module_in_jobs_defines_a_job(app):
    modules = {
        f"{jobs.__name__}.{module.name}"
        for module in pkgutil.iter_modules(jobs.__path__)
        if not module.name.startswith("_")
    }

    assert modules <= {job.module for job in all_jobs().values()}


def test_flask_jobs_list_shows_every_job(app):
    result = app.test_cli_runner().invoke(args=["jobs", "list"])

    assert result.exit_code == 0
    for name in all_jobs():
        assert name in result.output


def test_the_openapi_document_is_valid_and_describes_every_job(client):
    document = client.get("/jobs/openapi.json").get_json()

    validate(document)  # raises if it is not valid OpenAPI
    for name in all_jobs():
        assert "post" in document["paths"][f"/jobs/{name}"]


def test_the_front_door_links_to_the_api(client):
    page = client.get("/", headers={"Accept": "application/json"}).get_json()

    assert page["name"] == config.APP_NAME
    assert page["links"]["openapi"] == "/jobs/openapi.json"


def test_your_code_imports_only_the_kits_public_api():
    """Import from ``{{ cookiecutter.project_slug }}.kit``, never from its modules.

    The kit's modules may change when you update the kit; what it exports
    from ``kit/__init__.py`` is what stays.
    """
    kit = importlib.import_module("{{ cookiecutter.project_slug }}.kit")
    offending = []
    for path in PACKAGE_DIR.rglob("*.py"):
        if "kit" in path.relative_to(PACKAGE_DIR).parts[:-1]:
            continue  # the kit itself
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                module, names = "", [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                target = f"{module}.{name}" if module else name
                if ".kit." in f".{target.lstrip('.')}." and _is_kit_submodule(kit, target):
                    offending.append(f"{path.relative_to(PACKAGE_DIR)}: {target}")

    assert offending == []


def _is_kit_submodule(kit, target: str) -> bool:
    """Whether an import names something below ``kit`` other than its exports."""
    after = target.split(".kit", 1)[1].lstrip(".")
    if not after:
        return False  # ``from . import kit`` / ``import ...kit``
    first = after.split(".")[0]
    return "." in after or first not in kit.__all__

"""``flask jobs list`` and ``flask jobs enqueue``."""

from support import pending


def test_list_shows_each_job_and_its_fields(app):
    result = app.test_cli_runner().invoke(args=["jobs", "list"])

    assert result.exit_code == 0
    assert "testGreet" in result.output
    assert "idade: Integer, required" in result.output


def test_enqueue_prints_the_job_id(queue_app):
    result = queue_app.test_cli_runner().invoke(
        args=["jobs", "enqueue", "testGreet", '{"nome": "João", "idade": 30}']
    )

    assert result.exit_code == 0
    job_id = result.output.strip()
    with queue_app.app_context():
        assert queue_app.extensions["jobkit"].history.get(job_id)["status"] == "queued"
    assert pending(queue_app) == 1


def test_enqueue_reports_field_errors_and_queues_nothing(queue_app):
    result = queue_app.test_cli_runner().invoke(
        args=["jobs", "enqueue", "testGreet", '{"nome": "", "idade": 200}']
    )

    assert result.exit_code != 0
    assert "nome:" in result.output
    assert "idade:" in result.output
    assert pending(queue_app) == 0


def test_enqueue_rejects_invalid_json(queue_app):
    result = queue_app.test_cli_runner().invoke(args=["jobs", "enqueue", "testGreet", "{"])

    assert result.exit_code != 0
    assert "not valid JSON" in result.output
    assert pending(queue_app) == 0


def test_enqueue_rejects_an_unknown_job(queue_app):
    result = queue_app.test_cli_runner().invoke(args=["jobs", "enqueue", "nope", "{}"])

    assert result.exit_code != 0
    assert "known: testGreet, testImport, testPeriodic" in result.output

"""importarPessoas: its schema, and the progress it reports while it runs."""

import pytest
from marshmallow import ValidationError

from {{ cookiecutter.project_slug }}.jobs.importar_pessoas import Importacao

PESSOAS = [{"nome": "Ana", "idade": 31}, {"nome": "Rui", "idade": 12}]


def test_importacao_takes_a_list_of_people_and_a_default_delay():
    assert Importacao().load({"pessoas": PESSOAS})["atraso"] == 0.2


@pytest.mark.parametrize(
    "payload",
    [{"pessoas": []}, {"pessoas": [{"nome": "Ana"}]}, {"pessoas": PESSOAS, "atraso": 5}],
)
def test_importacao_rejects_a_bad_import(payload):
    with pytest.raises(ValidationError):
        Importacao().load(payload)


def test_it_imports_everyone_counts_the_adults_and_reports_progress(client):
    queued = client.post("/jobs/importarPessoas", json={"pessoas": PESSOAS, "atraso": 0})

    record = client.get(f"/jobs/{queued.get_json()['id']}").get_json()

    assert record["status"] == "complete"
    assert record["result"] == {"imported": 2, "adults": 1}
    assert record["progress"]["done"] == record["progress"]["total"] == 2

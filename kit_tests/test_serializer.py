"""Queue messages are JSON, so a message can carry data but never code."""

import datetime
import pickle

import pytest
from huey.registry import Message
from huey.utils import SKIPPED, Error

from acme_jobs.kit.serializer import JSONSerializer

serializer = JSONSerializer()


def roundtrip(value):
    return serializer.deserialize(serializer.serialize(value))


def test_a_huey_message_survives_with_its_types():
    eta = datetime.datetime(2030, 1, 2, 3, 4, 5)
    message = Message("id-1", "testGreet", eta, 3, 5, None, ({"nome": "Ana"},), {}, *[None] * 7)

    assert roundtrip(message) == message
    assert isinstance(roundtrip(message).args, tuple)


def test_errors_and_the_skipped_marker_survive():
    assert roundtrip(Error({"error": "boom"})) == Error({"error": "boom"})
    assert roundtrip(SKIPPED) is SKIPPED


def test_user_data_that_looks_like_a_tag_stays_user_data():
    tricky = {"__huey__": "tuple", "items": [1, 2]}

    assert roundtrip(tricky) == tricky


def test_the_stored_bytes_are_plain_json():
    assert serializer.serialize({"nome": "Ana"}) == b'{"nome":"Ana"}'


def test_non_json_values_are_refused():
    with pytest.raises(TypeError, match="not JSON data"):
        serializer.serialize({"when": datetime.date(2030, 1, 1)})


def test_a_pickled_message_is_rejected_not_executed():
    with pytest.raises(ValueError):
        serializer.deserialize(pickle.dumps({"nome": "Ana"}))


@pytest.mark.parametrize("stored", [bytes, memoryview, bytes.decode])
def test_a_message_reads_back_from_bytes_a_memoryview_or_text(stored):
    data = serializer.serialize({"nome": "João"})

    assert serializer.deserialize(stored(data)) == {"nome": "João"}


def test_bytes_that_are_not_utf8_are_rejected():
    with pytest.raises(ValueError):
        serializer.deserialize(b'{"nome": "\xff"}')

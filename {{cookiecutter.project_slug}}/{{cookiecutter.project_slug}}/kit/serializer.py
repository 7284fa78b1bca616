"""A JSON serializer for Huey.

Huey pickles its messages by default. Unpickling runs code, so anyone who
can write to the queue (a shared Redis, a leaked password) could run code in
every worker. Job payloads and results are JSON anyway, so the kit stores
messages as JSON: a hostile message can then only be rejected, never run.

Huey's own message pieces (its ``Message`` and ``Error`` tuples, datetimes,
tuples and the ``SKIPPED`` marker) are written as small tagged objects so
that they come back as the same Python types.
"""

import datetime
import json
from typing import Any

from .huey_seam import SKIPPED, Error, Message, MessageSerializer

TAG = "__huey__"


class JSONSerializer(MessageSerializer):
    """Serialize Huey messages, results and metadata as compact JSON."""

    def dumps(self, data: Any) -> bytes:
        return _ENCODER.encode(_encode(data)).encode()

    def loads(self, data: bytes | memoryview | str) -> Any:
        # Redis and SQLite hand back bytes; str() also takes a memoryview.
        return _DECODER.decode(data if isinstance(data, str) else str(data, "utf-8"))


# Values that JSON holds as they are. Every message passes through _encode,
# so plain values are recognised by their exact type first, without a call.
PLAIN = frozenset({str, int, float, bool, type(None)})


def _encode(value: Any) -> Any:
    # The commonest types first. Order matters below: Message and Error are
    # tuples too.
    if type(value) in PLAIN or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        if TAG in value:
            # A user dict that uses our tag key is stored as pairs, so it can
            # never be mistaken for one of the tagged objects below.
            pairs = [[_check_key(key), _encode(item)] for key, item in value.items()]
            return {TAG: "dict", "pairs": pairs}
        return {
            key if type(key) is str else _check_key(key): (
                item if type(item) in PLAIN else _encode(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return _encode_items(value)
    if isinstance(value, Message):
        return {TAG: "message", "fields": _encode_items(value)}
    if isinstance(value, Error):
        return {TAG: "error", "metadata": _encode(value.metadata)}
    if isinstance(value, tuple):
        return {TAG: "tuple", "items": _encode_items(value)}
    if isinstance(value, datetime.datetime):
        return {TAG: "datetime", "value": value.isoformat()}
    if value is SKIPPED:
        return {TAG: "skipped"}
    raise TypeError(
        f"{type(value).__name__} is not JSON data: job payloads and results "
        "must be made of dicts, lists, strings, numbers, booleans and None"
    )


def _encode_items(items: Any) -> list:
    return [item if type(item) in PLAIN else _encode(item) for item in items]


def _check_key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"JSON object keys must be strings, not {type(key).__name__}")
    return key


def _decode(obj: dict) -> Any:
    # object_hook decodes inner objects first, so nested values are already
    # Python objects by the time their parent is seen.
    tag = obj.get(TAG)
    if tag is None:
        return obj
    if tag == "message":
        return Message(*obj["fields"])
    if tag == "error":
        return Error(obj["metadata"])
    if tag == "tuple":
        return tuple(obj["items"])
    if tag == "dict":
        return dict(obj["pairs"])
    if tag == "datetime":
        return datetime.datetime.fromisoformat(obj["value"])
    if tag == "skipped":
        return SKIPPED
    raise ValueError(f"unknown tag {tag!r} in a queue message")


# Built once: json.dumps() and json.loads() given options build a new
# encoder or decoder on every call, and every job passes through both.
_ENCODER = json.JSONEncoder(separators=(",", ":"))
_DECODER = json.JSONDecoder(object_hook=_decode)

"""Schemathesis hooks for ``test_api_fuzz.py`` (loaded through ``SCHEMATHESIS_HOOKS``).

Schemathesis draws header values from small pools, so two generated
requests often share an ``Idempotency-Key`` with different payloads. The API
then answers 422 ``idempotency_key_reused``, as the document says; but
schemathesis' positive-data check reads any 422 to a schema-valid request
as a rejection. Each valid key gets a suffix of its own, so that a key
meets only the payload it was drawn with.

Likewise a schema-valid ``at`` (any date-time) in the past, or further
ahead than ``MAX_SCHEDULE_DELAY``, is a 422 by design: each is moved to an
hour from now, in the offset it was drawn with; and ``at`` given with
``delay`` (one or the other, by design) is dropped.

With ``FUZZ_WITHOUT_KEY`` set, no request carries an ``Authorization``
header at all: schemathesis would otherwise make up bearer keys from the
document's security scheme, and enough wrong keys are answered with 429.
"""

import datetime
import itertools
import os
import re

import schemathesis

HEADER = "Idempotency-Key"
# A bare key as the document describes it (see openapi.IDEMPOTENCY_KEY).
BARE = re.compile(r"[\x21\x23-\x2b\x2d-\x5b\x5d-\x7e]{1,255}")
_count = itertools.count()


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if os.environ.get("FUZZ_WITHOUT_KEY") and case.headers:
        case.headers.pop("Authorization", None)
    query = case.query or {}
    if "at" in query and "delay" in query:
        query.pop("at")
    elif isinstance(query.get("at"), str):
        query["at"] = an_hour_ahead(query["at"])
    key = (case.headers or {}).get(HEADER)
    if isinstance(key, str) and BARE.fullmatch(key):
        case.headers[HEADER] = f"{key[:230]}-{next(_count)}"


def an_hour_ahead(text: str) -> str:
    """A time an hour from now, in the offset of ``text`` if it is an aware time."""
    try:
        drawn = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text  # not a date-time: the API's 422 is the right answer
    if drawn.tzinfo is None:
        return text
    ahead = datetime.datetime.now(drawn.tzinfo) + datetime.timedelta(hours=1)
    return ahead.isoformat()

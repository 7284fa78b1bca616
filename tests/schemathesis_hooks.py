"""Schemathesis hooks for ``test_api_fuzz.py`` (loaded through ``SCHEMATHESIS_HOOKS``).

Schemathesis draws header values from small pools, so two generated
requests often share an ``Idempotency-Key`` with different payloads. The API
then answers 422 ``idempotency_key_reused``, as the document says; but
schemathesis' positive-data check reads any 422 to a schema-valid request
as a rejection. Each valid key gets a suffix of its own, so that a key
meets only the payload it was drawn with.

With ``FUZZ_WITHOUT_KEY`` set, no request carries an ``Authorization``
header at all: schemathesis would otherwise make up bearer keys from the
document's security scheme, and enough wrong keys are answered with 429.
"""

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
    key = (case.headers or {}).get(HEADER)
    if isinstance(key, str) and BARE.fullmatch(key):
        case.headers[HEADER] = f"{key[:230]}-{next(_count)}"

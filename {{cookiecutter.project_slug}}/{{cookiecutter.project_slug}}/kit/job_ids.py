"""What a job id looks like, checked before any storage key is built from one.

Every job the kit queues gets ``str(uuid.uuid4())`` as its id (``queue.py``,
and Huey's own ``Task`` for periodic jobs): 36 characters, lowercase hex in
groups of 8-4-4-4-12. The stores build Redis keys and SQLite rows from ids,
so an id read from a URL, a form or a shell is checked against that shape
first: ``<id>:x`` would otherwise name another key (a job's side hash of
progress and log lines), and ``*`` or an overlong value has no business
reaching the backend at all. Anything else is no job's id, whatever it is,
and is answered as an unknown id (404).
"""

import re

# The canonical text of a UUID, as ``str(uuid.UUID(...))`` writes it.
PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_MATCH = re.compile(PATTERN).fullmatch


def is_job_id(value: object) -> bool:
    """Whether ``value`` has the shape of a job id (it may still be unknown)."""
    return isinstance(value, str) and _MATCH(value) is not None


def shown(value: str) -> str:
    """``value`` quoted for an error message, cut short: it is not an id."""
    return repr(value[:40] + "…" if len(value) > 40 else value)

"""Reading a job's payload from outside: the HTTP body, or a shell argument.

``json.loads`` takes two things the kit cannot keep, and both used to end
in a 500 (or a traceback in the shell) instead of a clear refusal:

* Nesting. ``[[[…]]]`` 10,000 deep fits in a small body, and exhausts
  Python's recursion while it is parsed; a few hundred levels parse, and
  exhaust it later, when the payload is validated, stored or shown. No
  job's payload needs more than :data:`MAX_DEPTH` levels.
* Lone surrogates. ``"\\ud800"`` is a valid JSON escape but not text: it
  cannot be written as UTF-8, so storing the job would fail. A shell
  argument holding bytes that are not UTF-8 reaches Python the same way.

Both are refused before anything is queued, as :class:`Refused` with a
stable ``code`` the API answers with (400).
"""

import json
from typing import Any

from .api_http import json_number

# Objects and arrays inside one another, the outermost one included.
MAX_DEPTH = 32


class Refused(ValueError):
    """A payload the kit will not queue; ``code`` is the API's ``error``."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def parse(text: bytes | str) -> Any:
    """The JSON value in ``text``, checked with :func:`check`."""
    try:
        value = json.loads(text, parse_float=json_number)
    except RecursionError:
        raise too_deep() from None
    except ValueError as exc:  # also bytes that are not UTF-8
        raise Refused("invalid_json", f"this is not valid JSON: {exc}") from None
    if isinstance(text, str) or might_need_check(text):
        check(value)
    return value


def might_need_check(body: bytes) -> bool:
    """False when a body parsed from bytes cannot hold what :func:`check` refuses.

    A lone surrogate comes from a ``\\u`` escape, or as the bytes that would
    encode it (``json.loads`` lets those through), which all start with 0xED,
    or in UTF-16 or UTF-32 (which ``json.loads`` reads too), full of NULs;
    nesting deeper than :data:`MAX_DEPTH` needs more brackets than that. The
    usual payload has none of these and skips the walk.
    """
    suspect = b"\\u" in body or b"\xed" in body or b"\x00" in body
    return suspect or body.count(b"[") + body.count(b"{") > MAX_DEPTH


def check(value: Any) -> None:
    """Refuse ``value`` if it nests too deep or holds text that is not Unicode.

    A loop over an explicit stack, not recursion: it must not fail the way
    it guards against. Cheap for the usual payload, a flat object: scalars
    are looked at where they are, only containers are stacked, and ASCII
    strings are known clean at once.
    """
    if isinstance(value, str):
        check_text(value)
    if not isinstance(value, dict | list):
        return
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise too_deep()
        if isinstance(item, dict):
            for key in item:
                check_text(key)
            item = item.values()
        for child in item:
            if isinstance(child, str):
                check_text(child)
            elif isinstance(child, dict | list):
                stack.append((child, depth + 1))


def check_text(text: Any) -> None:
    if isinstance(text, str) and not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise Refused(
                "invalid_unicode",
                "the JSON holds a lone surrogate (such as \\ud800), which is not text",
            ) from None


def too_deep() -> Refused:
    return Refused("json_too_deep", f"the JSON nests objects and arrays over {MAX_DEPTH} deep")

"""Which payload and result keys are secrets: the monitor, the jobs API's
status view and ``flask jobs status`` show their values as ``[redacted]``.

A key is compared with each fragment of ``MONITOR_REDACT_KEYS`` after the
same folding: Unicode NFKC (``PASS`` in full-width letters is ``PASS``) and casefold
(``PassWord``, ``PAẞ``), with everything that is not a letter or a digit
dropped (``-``, ``_``, ``.``, spaces, zero-width characters). Then:

* a fragment of 5+ characters hides every key that contains it:
  ``password`` hides ``db_password`` and ``userPassword``;
* a shorter one hides keys that have it as a whole word, split at
  separators, at camelCase humps and at digits: ``pin`` hides ``pin``,
  ``userPin`` and ``PIN_CODE`` but not ``shipping``, ``auth`` hides
  ``X-Auth`` but not ``author``. As substrings they would hide half of a
  payload.
"""

import functools
import unicodedata
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"
# Shorter fragments match whole words only (see above).
SUBSTRING_MIN = 5


def fold(text: str) -> str:
    """``text`` as it is compared: NFKC, casefolded, letters and digits only."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(char for char in folded if char.isalnum())


def words(text: str) -> list[str]:
    """The words of a key: split at separators, camelCase humps and digits."""
    text = unicodedata.normalize("NFKC", text)
    found: list[str] = []
    word = ""
    for index, char in enumerate(text):
        if not char.isalnum():
            if word:
                found.append(word)
            word = ""
            continue
        if word:
            prev = word[-1]
            after = text[index + 1 : index + 2]
            hump = char.isupper() and (
                prev.islower() or (prev.isupper() and after.islower())  # "PINCode": PIN, Code
            )
            if hump or prev.isdigit() != char.isdigit():
                found.append(word)
                word = ""
        word += char
    if word:
        found.append(word)
    return [fold(word) for word in found]


@functools.lru_cache(maxsize=4096)
def _forms(key: str) -> tuple[str, frozenset[str]]:
    """A key's folded text and folded words (keys repeat: cached)."""
    return fold(key), frozenset(words(key))


def is_secret(key: str, fragments: tuple[str, ...]) -> bool:
    """Whether ``key`` matches one of the (folded) ``fragments``."""
    text, key_words = _forms(key)
    return any(
        (part in text) if len(part) >= SUBSTRING_MIN else (part in key_words) for part in fragments
    )


def redact(value: Any, fragments: Iterable[str]) -> Any:
    """Copy ``value`` with the value of every secret-looking dict key masked."""
    parts = tuple(part for part in map(fold, fragments) if part)
    return _redact(value, parts)


def _redact(value: Any, parts: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {
            key: REDACTED if is_secret(str(key), parts) else _redact(item, parts)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_redact(item, parts) for item in value]
    return value

"""Failed sign-ins per client address, counted in the queue's backend.

An address that fails ``MONITOR_LOGIN_ATTEMPTS`` times within
``MONITOR_LOGIN_WINDOW`` seconds (a wrong monitor password, over the form or
HTTP Basic, a wrong ``/metrics`` token, an unknown jobs API key) is refused
with 429 until its oldest counted failure leaves the window, *even when it
then sends the right credentials*: otherwise a guesser would learn which of
its guesses was right. (A right jobs API key is refused so only by the web
processes that have seen the lockout: see :meth:`LoginThrottle.count`.)

The failures live in the backend (see ``stores.py``), so every web process
on every machine sees the same count: N gunicorn workers do not allow N
times the limit. That costs one small read per credentialed request, and a
write per failure; the jobs API, whose keys are long random secrets, reads
the count only when it refuses a key (:meth:`LoginThrottle.count`). Times
are wall-clock seconds, shared between machines.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from werkzeug.exceptions import TooManyRequests

from ..backends import BACKEND_ERRORS
from .stores import AuthStore, MemoryAuthStore

log = logging.getLogger(__name__)


class LoginThrottle:
    """Counts failures of each address in ``store``; by default this process's memory."""

    def __init__(
        self,
        limit: int,
        window: float,
        max_addresses: int = 10_000,
        store: AuthStore | None = None,
    ):
        self.limit = limit
        self.window = window
        self.store = store if store is not None else MemoryAuthStore(max_addresses)

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], store: AuthStore | None = None
    ) -> LoginThrottle:
        # A limit below one counts as one: there is no "never try".
        limit = max(1, int(config["MONITOR_LOGIN_ATTEMPTS"]))
        return cls(limit, float(config["MONITOR_LOGIN_WINDOW"]), store=store)

    def wait(self, address: str, now: float | None = None) -> float:
        """Seconds before ``address`` may try again (0: it may now).

        Raises the backend's error when it cannot be read: callers refuse
        with 503 rather than let anyone guess uncounted.
        """
        now = time.time() if now is None else now
        recent = self.store.failures(address, now - self.window)
        if len(recent) < self.limit:
            return 0.0
        return recent[-self.limit] + self.window - now

    def failed(self, address: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        # Only the last ``limit`` failures decide how long to wait.
        try:
            self.store.add_failure(address, now, self.window, self.limit)
        except BACKEND_ERRORS as exc:
            # The attempt is refused anyway; the backend being down also stops
            # the next one, whose wait() cannot read the count.
            log.warning("could not count a failed sign-in of %s: %s", address, exc)

    def count(self, address: str, now: float | None = None) -> tuple[float, float]:
        """Count a failure of ``address``, unless it is locked out already.

        Returns the seconds it had to wait before this failure and those it
        must wait after it: for a caller that checks credentials before the
        count (api_keys.py), so that only refusals pay for reading it.
        """
        now = time.time() if now is None else now
        recent = self.store.failures(address, now - self.window)
        if len(recent) >= self.limit:
            wait = recent[-self.limit] + self.window - now
            return wait, wait
        self.failed(address, now)
        recent.append(now)
        if len(recent) < self.limit:
            return 0.0, 0.0
        return 0.0, recent[-self.limit] + self.window - now

    def check(self, address: str, what: str = "sign-ins") -> None:
        """Raise 429 (with ``Retry-After``) while ``address`` is locked out."""
        wait = self.wait(address)
        if wait > 0:
            raise TooManyRequests(
                f"Too many failed {what} from this address: try again later.",
                retry_after=math.ceil(wait),
            )

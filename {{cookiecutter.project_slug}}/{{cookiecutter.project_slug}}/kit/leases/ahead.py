"""The jobs a Redis worker took ahead, waiting in memory for their turn.

From a deep queue a worker takes several jobs in one round trip (see
``LeaseManager.take``) and runs them one after the other. Each keeps its
lease in the worker's "ahead" list in Redis meanwhile, so a worker that dies
loses none of them; this is the worker's own copy, in order, with when each
was taken.
"""

from __future__ import annotations

import collections
import threading
import time

from .model import Lease

# Seconds that jobs taken ahead may wait behind a running job before they go
# back to the queue, for other workers: a long job holds up nothing else.
PREFETCH_HOLD = 1.0
# Seconds after which the revoke flags read with a job taken ahead are too
# old to go by: Huey reads them again before the run.
PREFETCH_FRESH = 0.05


class TakenAhead:
    """Leases taken ahead, next first; safe to share between worker threads."""

    def __init__(self) -> None:
        self._leases: collections.deque[tuple[Lease, float]] = collections.deque()
        self._lock = threading.Lock()

    def add(self, leases: list[Lease]) -> None:
        """Keep ``leases``, in order, behind those already waiting."""
        taken_at = time.monotonic()
        with self._lock:
            self._leases.extend((lease, taken_at) for lease in leases)

    def next(self) -> Lease | None:
        """The next job to run, if one waits; its flags go if they are old."""
        with self._lock:
            if not self._leases:
                return None
            lease, taken_at = self._leases.popleft()
        if time.monotonic() - taken_at > PREFETCH_FRESH:
            lease.revocations = None  # too old to go by: Huey reads the flags
        return lease

    def take_all(self, older_than: float | None = None) -> list[Lease]:
        """Every waiting lease, next first, and forget them.

        With ``older_than``, none unless the next has waited that many seconds.
        """
        with self._lock:
            if not self._leases:
                return []
            if older_than is not None and time.monotonic() - self._leases[0][1] < older_than:
                return []
            leases = [lease for lease, _ in self._leases]
            self._leases.clear()
        return leases

    def put_back(self, leases: list[Lease]) -> None:
        """Keep ``leases`` (next first) in front of those waiting, as just taken."""
        now = time.monotonic()
        with self._lock:
            self._leases.extendleft((lease, now) for lease in reversed(leases))

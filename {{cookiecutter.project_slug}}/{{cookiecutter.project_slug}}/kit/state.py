"""What the kit keeps per Flask app: one object in ``app.extensions["jobkit"]``.

Every part of the kit reads the app's Huey, history, controls and so on from
here, with one dictionary lookup, instead of each keeping a key of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flask import Flask, current_app

if TYPE_CHECKING:
    from huey import Huey
    from huey.api import TaskWrapper

    from .api_keys import ApiKey
    from .backends import Backend
    from .controls import Controls
    from .history import History
    from .idempotency import Keys
    from .leases import LeaseManager
    from .metrics import Recorder
    from .monitor.stores import AuthStore
    from .monitor.throttle import LoginThrottle
    from .unique import Claims

EXTENSION = "jobkit"


@dataclass
class KitState:
    """The app's queue and everything built around it."""

    huey: Huey
    # Redis or SQLite: builds every store the kit keeps beside the queue.
    backend: Backend
    history: History
    controls: Controls
    claims: Claims
    # Idempotency keys of dispatches (idempotency.py).
    idempotency: Keys
    # Job name -> the Huey task that runs it.
    tasks: dict[str, TaskWrapper] = field(default_factory=dict)
    # None when leases are off (LEASES_ENABLED) or in immediate mode.
    leases: LeaseManager | None = None
    # Set when the metrics blueprint is registered.
    metrics: Recorder | None = None
    # The monitor's state: why it is off (None when it is on), whether that
    # was logged, the sign-in throttle, and where failed sign-ins and
    # logged-out sessions are kept (the queue's backend).
    monitor_off: str | None = None
    monitor_off_logged: bool = False
    login_throttle: LoginThrottle | None = None
    auth_store: AuthStore | None = None
    # The jobs API's keys (api_keys.py), read when its blueprint is registered.
    api_keys: tuple[ApiKey, ...] = ()
    # Addresses this process saw locked out for unknown API keys -> until when.
    api_lockouts: dict[str, float] = field(default_factory=dict)


def kit_state(app: Flask | None = None) -> KitState:
    """The kit's state for ``app``, or for the current app."""
    return (app or current_app).extensions[EXTENSION]

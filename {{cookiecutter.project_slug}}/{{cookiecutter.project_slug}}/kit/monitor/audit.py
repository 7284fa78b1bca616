"""Who did what from the monitor: one call per operator action.

Every action (retry, revoke, delete, cancel, pause, resume, run now) calls
:func:`audit` once it has happened, as the logged-in user; the entries are
kept by the job controls (``controls.Controls.audit``) and shown at
``/monitor/audit``.
"""

from typing import Any

from flask import g, request

from ..controls import Controls
from ..state import kit_state


def controls() -> Controls:
    return kit_state().controls


def user() -> str:
    """The operator making this request, as the monitor authenticated them."""
    return g.get("monitor_user") or "unknown"


def audit(action: str, target: str, **detail: Any) -> None:
    """Record an action on ``target`` (a job id, "queue", "job:<name>"...)."""
    controls().audit(action, target, user(), request.remote_addr, **detail)

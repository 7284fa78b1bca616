"""Who may use the jobs API: named keys, each allowed some jobs.

``JOBS_API_KEYS`` (``FLASK_JOBS_API_KEYS`` in the environment) maps each
key's name to its secret and the jobs it may dispatch and read, ``*`` for all::

    {"billing": {"key": "<secret>", "jobs": ["chargeInvoice"]},
     "ops": {"key": "<another secret>", "jobs": ["*"]}}

A client sends ``Authorization: Bearer <secret>``. Closed by default, like the
monitor:

* No key configured: every request is refused (503, saying how to configure
  one), unless the app runs in debug mode or ``JOBS_API_OPEN`` is set. Then
  anyone may dispatch, and the status view shows only its public fields.
* A missing or unknown key: 401 with ``WWW-Authenticate``. Unknown keys count
  as failed sign-ins, on the monitor's throttle: an address that fails too
  often gets 429 with ``Retry-After`` until its window has passed.
* A key used for a job outside its list: 403.
* ``GET /jobs/<id>`` also answers without a key (views marked
  :func:`allow_anonymous`), with only the fields in :data:`PUBLIC_FIELDS`.

Secrets are kept only as SHA-256 digests, compared in constant time, and are
never logged; the key's *name* is what the job history records.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from flask.blueprints import BlueprintSetupState

from . import registry
from .backends import BACKEND_ERRORS
from .monitor import present
from .monitor.throttle import LoginThrottle
from .state import KitState, kit_state

log = logging.getLogger(__name__)

ALL_JOBS = "*"
# Shorter secrets are refused at startup: they could be guessed.
MIN_SECRET_LENGTH = 16
CHALLENGE = 'Bearer realm="jobs"'
# Locked-out addresses a web process remembers (the oldest are forgotten first).
MAX_LOCKOUTS = 10_000

# What ``GET /jobs/<id>`` shows without a key that may read the job: never the
# payload, the result, the traceback or the worker's host name.
PUBLIC_FIELDS = (
    "id",
    "name",
    "status",
    "enqueued_at",
    "state_at",
    "started_at",
    "finished_at",
    "duration",
    "eta",
    "attempt",
    "progress",
)

HOW_TO_CONFIGURE = (
    "The jobs API has no keys configured, so it refuses every request. Set "
    'FLASK_JOBS_API_KEYS=\'{"<key name>": {"key": "<secret>", "jobs": ["*"]}}\' in the '
    "web app's environment (a secret: python -c \"import secrets; "
    'print(secrets.token_urlsafe(32))"), restart it, and send '
    "'Authorization: Bearer <secret>'. For development only, FLASK_JOBS_API_OPEN=1 "
    "(or debug mode) opens it to anyone."
)

# A Flask view function.
View = Callable[..., Any]
# Views that answer without a key (with less); see allow_anonymous().
ANONYMOUS_VIEWS: set[Callable[..., Any]] = set()


class InvalidKeys(ValueError):
    """``JOBS_API_KEYS`` is malformed; the message never quotes a secret."""


@dataclass(frozen=True)
class ApiKey:
    name: str
    # The secret's SHA-256: every comparison then takes the same time,
    # whatever the length of the secret sent.
    digest: bytes
    jobs: frozenset[str]

    def may_use(self, job_name: str) -> bool:
        return ALL_JOBS in self.jobs or job_name in self.jobs


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse_keys(value: Any) -> tuple[ApiKey, ...]:
    """Read ``JOBS_API_KEYS``: a dict, or its JSON text; empty or None for none."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            # exc.msg, not str(exc): that would not quote the text either, but be sure.
            raise InvalidKeys(f"JOBS_API_KEYS is not valid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise InvalidKeys('JOBS_API_KEYS must be a JSON object: {"<name>": {"key", "jobs"}}')
    keys, seen = [], set()
    for name, entry in value.items():
        where = f"JOBS_API_KEYS[{name!r}]"
        if not isinstance(entry, dict) or set(entry) != {"key", "jobs"}:
            raise InvalidKeys(f'{where} must be an object with exactly "key" and "jobs"')
        secret, jobs = entry["key"], entry["jobs"]
        if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
            raise InvalidKeys(f'{where}["key"] must be a string of {MIN_SECRET_LENGTH}+ characters')
        if not jobs or not isinstance(jobs, list) or not all(isinstance(j, str) for j in jobs):
            raise InvalidKeys(f'{where}["jobs"] must be a list of job names, or ["*"]')
        key = ApiKey(str(name), digest(secret), frozenset(jobs))
        if key.digest in seen:
            raise InvalidKeys(f"{where} has the same secret as another key")
        seen.add(key.digest)
        keys.append(key)
    return tuple(keys)


def setup(state: BlueprintSetupState) -> None:
    """Read the keys once per app, when the jobs blueprint is registered.

    A malformed ``JOBS_API_KEYS`` stops the app from starting: better than a
    web app that refuses everyone, or anyone, without saying why.
    """
    app = state.app
    kit = kit_state(app)
    kit.api_keys = parse_keys(app.config.get("JOBS_API_KEYS"))
    if kit.login_throttle is None:
        # The monitor's throttle: failures on either count against both.
        kit.login_throttle = LoginThrottle.from_config(app.config)
    if not kit.api_keys and open_flag(app):
        log.warning("the jobs API is open to anyone: JOBS_API_OPEN is set, and no key")
    known = set(registry.all_jobs())
    for key in kit.api_keys:
        for job_name in sorted(key.jobs - known - {ALL_JOBS}):
            log.warning("API key %r names %r, which is not a registered job", key.name, job_name)


def allow_anonymous(view: View) -> View:
    """Let ``view`` answer requests that carry no key (it shows them less)."""
    ANONYMOUS_VIEWS.add(view)
    return view


def open_flag(app: Flask) -> bool:
    """``JOBS_API_OPEN``, read as the environment may spell it ("1", "true"...)."""
    flag = app.config.get("JOBS_API_OPEN")
    if isinstance(flag, str):
        return flag.strip().lower() in ("1", "true", "yes", "on")
    return bool(flag)


def is_open() -> bool:
    """Whether the API lets anyone in while no key is configured."""
    return current_app.debug or open_flag(current_app)


def guard() -> Response | None:
    """``before_request`` of the jobs blueprint: who is asking, and may they.

    Runs on every dispatch, so it reads the WSGI environ (cheaper than the
    parsed headers) and leaves ``g.api_key`` unset until a key is found.
    """
    environ = request.environ
    if environ["REQUEST_METHOD"] == "OPTIONS":
        return None  # what the URL allows is no secret (and preflights carry no key)
    kit = kit_state()
    if not kit.api_keys:
        if is_open():
            return None
        return refuse(503, "api_not_configured", HOW_TO_CONFIGURE)
    header = environ.get("HTTP_AUTHORIZATION")
    if not header:
        if current_app.view_functions.get(request.endpoint or "") in ANONYMOUS_VIEWS:
            return None
        response = refuse(401, "api_key_required", "send 'Authorization: Bearer <API key>'")
        response.headers["WWW-Authenticate"] = CHALLENGE
        return response
    key, refusal = authenticate(kit, header, environ.get("REMOTE_ADDR") or "unknown")
    if key is None:
        return refusal
    g.api_key = key
    job_name = (request.view_args or {}).get("name")
    if job_name is not None and not key.may_use(job_name):
        return refuse(403, "job_not_allowed", f"the key {key.name!r} may not use {job_name!r}")
    return None


def authenticate(kit: KitState, header: str, address: str) -> tuple[ApiKey | None, Response | None]:
    """(the key the header names, None), or (None, a 401 or 429 refusal).

    Unknown keys count as failed sign-ins in the queue's backend, shared by
    every web process (monitor/throttle.py). Only a refusal reads that count:
    a dispatch with a right key makes no extra round trip. A process that has
    seen an address locked out refuses it, right key or not, until its time is
    up; another process may still let a right key through meanwhile, which
    teaches a guesser nothing it could use: API keys are long random secrets.
    """
    now = time.time()  # shared with other processes: wall-clock time
    until = kit.api_lockouts.get(address)
    if until is not None:
        if now < until:
            return None, too_many_attempts(until - now)
        del kit.api_lockouts[address]
    scheme, _, secret = header.partition(" ")
    found = None
    if scheme.lower() == "bearer":
        given = digest(secret.strip())
        for key in kit.api_keys:  # every key is compared: the time says nothing about which matched
            if hmac.compare_digest(given, key.digest):
                found = key
    if found is not None:
        return found, None
    log.warning("refused an unknown jobs API key from %s", address)
    throttle: LoginThrottle = kit.login_throttle
    try:
        wait, wait_after = throttle.count(address, now)
    except BACKEND_ERRORS:
        wait, wait_after = 0.0, 0.0  # uncounted while the backend is down; refused anyway
    if wait_after > 0:
        remember_lockout(kit, address, now + wait_after)
    if wait > 0:
        return None, too_many_attempts(wait)
    response = refuse(401, "invalid_api_key", "the API key is unknown")
    response.headers["WWW-Authenticate"] = f'{CHALLENGE}, error="invalid_token"'
    return None, response


def remember_lockout(kit: KitState, address: str, until: float) -> None:
    lockouts = kit.api_lockouts
    lockouts.pop(address, None)  # re-inserted last: the newest
    lockouts[address] = until
    while len(lockouts) > MAX_LOCKOUTS:
        del lockouts[next(iter(lockouts))]


def too_many_attempts(wait: float) -> Response:
    response = refuse(
        429, "too_many_attempts", "too many unknown keys from this address: try again later"
    )
    response.headers["Retry-After"] = str(math.ceil(wait))
    return response


def refuse(status: int, code: str, message: str) -> Response:
    """The jobs API's error body: a stable ``error`` code and a ``message``."""
    response = jsonify(error=code, message=message)
    response.status_code = status
    return response


def may_use(job_name: str) -> bool:
    """Whether this request's key may dispatch and read ``job_name``.

    Without a key: yes in open mode (the guard let the request through with no
    keys configured), no for a view that answers anonymous requests.
    """
    key: ApiKey | None = g.get("api_key")
    return key.may_use(job_name) if key is not None else not kit_state().api_keys


def key_name() -> str | None:
    """The name of the key this request was made with (None in open mode)."""
    key = g.get("api_key")
    return key.name if key is not None else None


def status_view(record: dict[str, Any]) -> dict[str, Any]:
    """``GET /jobs/<id>``'s body: all of it for a key that may read the job.

    That key sees the record with the monitor's redaction (MONITOR_REDACT_KEYS)
    on the payload and the result. Anyone else, and everyone in open mode,
    sees :data:`PUBLIC_FIELDS` and the error's type and message.
    """
    key: ApiKey | None = g.get("api_key")
    if key is not None and key.may_use(record["name"]):
        hidden = current_app.config["MONITOR_REDACT_KEYS"]
        record["payload"] = present.redact(record.get("payload"), hidden)
        record["result"] = present.redact(record.get("result"), hidden)
        return record
    view = {field: record.get(field) for field in PUBLIC_FIELDS}
    error = record.get("error")
    if isinstance(error, dict):
        view["error"] = {"type": error.get("type"), "message": error.get("message")}
    else:
        view["error"] = None
    return view

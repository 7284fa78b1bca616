"""Named queues: which queue a job waits in, and which queues a worker serves.

A job declares its queue (``@job("jobModelo", schema=Pessoa, queue="default")``)
and each dispatch writes it into the message's ``meta``, so every step that
puts a message back (a retry, a due job, a recovery, a resume) finds its queue
in the message itself. The ``default`` queue is Huey's own queue (its Redis
list, its SQLite queue name); every other queue lives next to it:

* Redis: the list ``<Huey's queue key>.q.<queue>``;
* SQLite: rows of Huey's ``task`` table whose queue is ``<QUEUE_NAME>.q.<queue>``.

A worker serves a set of queues with weights (``WORKER_QUEUES``, or
``--queues critical=6,default=3,low=1``). Each take picks one of the non-empty
queues with a probability proportional to its weight, as asynq does, so a
busy low queue still moves; with ``STRICT_PRIORITY`` the heaviest non-empty
queue always goes first. Paused queues are left out of the pick.
"""

from __future__ import annotations

import datetime
import json
import random
import re
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .portability import after_fork_in_child

DEFAULT = "default"
# Queue names go into Redis keys and URLs: short, and no separators.
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Seconds a worker serving several Redis queues waits before it looks again
# when all are empty: one blocking pop cannot wait on several lists.
IDLE_POLL = 0.1


def check_name(name: Any) -> str:
    """``name`` if it can name a queue; else ValueError."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a queue name: 1-64 letters, digits, '_' or '-'")
    return name


def parse_weights(value: Any) -> dict[str, int]:
    """Queue weights from config or the command line, heaviest first.

    Takes a mapping (``{"critical": 6, "default": 3}``) or the flag's text
    (``critical=6,default=3``); a bare name weighs 1.
    """
    if isinstance(value, str):
        pairs: list[tuple[str, Any]] = []
        for part in filter(None, (p.strip() for p in value.split(","))):
            name, _, weight = part.partition("=")
            pairs.append((name.strip(), weight.strip() or "1"))
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        raise ValueError("queues are a mapping of name to weight, or 'name=weight,...'")
    weights: dict[str, int] = {}
    for name, weight in pairs:
        try:
            number = int(weight)
        except (TypeError, ValueError):
            number = 0
        if number < 1 or isinstance(weight, float):
            raise ValueError(f"queue {name!r}: the weight must be a whole number >= 1")
        weights[check_name(name)] = number
    if not weights:
        raise ValueError("a worker serves at least one queue")
    return dict(sorted(weights.items(), key=lambda item: -item[1]))


# -- a message's queue ---------------------------------------------------------


def of_kwargs(kwargs: Any) -> str:
    """The queue written in a task's keyword arguments (its ``meta``); else default."""
    meta = kwargs.get("meta") if isinstance(kwargs, dict) else None
    queue = meta.get("queue") if isinstance(meta, dict) else None
    return queue if isinstance(queue, str) and NAME.fullmatch(queue) else DEFAULT


def of_task(task: Any) -> str:
    return of_kwargs(getattr(task, "kwargs", None))


def of_raw(raw: bytes | str) -> str:
    """The queue of a serialized message (the kit's JSON); default if unreadable.

    Read without the serializer: only the plain ``fields`` list is needed,
    and a message no worker can read still goes somewhere.
    """
    try:
        fields = json.loads(raw)["fields"]
        return of_kwargs(fields[7])
    except (ValueError, TypeError, KeyError, IndexError):
        return DEFAULT


def waiting_since(raw: bytes | None) -> float | None:
    """When a queued message began to wait (Unix time): its dispatch, or its eta.

    None for a message queued by code that bypasses the kit's enqueue.
    """
    if raw is None:
        return None
    try:
        fields = json.loads(raw)["fields"]
        since = fields[7]["meta"]["enqueued_at"]
        eta = fields[2]
        if isinstance(eta, dict) and isinstance(eta.get("value"), str):
            # Huey's eta: a naive datetime in UTC (the serializer's tagged form).
            at = datetime.datetime.fromisoformat(eta["value"]).replace(tzinfo=datetime.UTC)
            since = max(since, at.timestamp())
        return float(since)
    except (ValueError, TypeError, KeyError, IndexError):
        return None


def redis_key(base: str, queue: str) -> str:
    """The Redis list of ``queue``, next to Huey's queue key ``base``."""
    return base if queue == DEFAULT else f"{base}.q.{queue}"


def sqlite_name(base: str, queue: str) -> str:
    """The ``task.queue`` value of ``queue`` for Huey's queue called ``base``."""
    return base if queue == DEFAULT else f"{base}.q.{queue}"


# Lua: the queue key a message goes back to, from its meta (see of_raw).
# Expects ``base`` (Huey's queue key); defines queue_key_of(raw).
QUEUE_KEY_OF_LUA = r"""
local function queue_key_of(raw, base)
  local ok, message = pcall(cjson.decode, raw)
  if ok and type(message) == 'table' and type(message.fields) == 'table' then
    local kwargs = message.fields[8]
    local meta = type(kwargs) == 'table' and kwargs.meta
    local queue = type(meta) == 'table' and meta.queue
    if type(queue) == 'string' and queue ~= 'default' and string.match(queue, '^[%w_-]+$') then
      return base .. '.q.' .. queue
    end
  end
  return base
end
"""


# -- which queue a worker takes from next --------------------------------------


@dataclass(frozen=True)
class Pick:
    """The queues one take may choose from, heaviest first, and how to choose."""

    names: tuple[str, ...]
    weights: tuple[int, ...]
    strict: bool
    draw: float  # a uniform random number in [0, 1) for a weighted choice

    def choose(self, non_empty: list[str]) -> str | None:
        """The weighted (or strict) choice among the non-empty queues."""
        found = [(n, w) for n, w in zip(self.names, self.weights, strict=True) if n in non_empty]
        if not found:
            return None
        if self.strict:
            return found[0][0]
        mark = self.draw * sum(weight for _, weight in found)
        for name, weight in found:
            mark -= weight
            if mark < 0:
                return name
        return found[-1][0]


class Selection:
    """The queues this process serves, with weights; shared by the take and the gate."""

    def __init__(self, weights: Mapping[str, int] | None = None, strict: bool = False):
        self.weights = parse_weights(weights or {DEFAULT: 1})
        self.strict = strict
        self._paused: frozenset[str] = frozenset()
        self._random = random.Random()
        self._lock = threading.Lock()
        # Forked worker processes draw apart, not in step with each other; a
        # weak reference, so that apps built and dropped (tests) can go.
        ref = weakref.ref(self._random)
        after_fork_in_child(lambda: (drawn := ref()) and drawn.seed())

    def serve(self, weights: Any, strict: bool | None = None) -> None:
        """Serve these queues from now on (the worker's ``--queues``)."""
        self.weights = parse_weights(weights)
        if strict is not None:
            self.strict = strict

    def set_paused(self, paused: frozenset[str]) -> None:
        """The named queues paused now, as the pause gate last read them."""
        self._paused = paused

    def next_pick(self) -> Pick:
        active = [(n, w) for n, w in self.weights.items() if n not in self._paused]
        with self._lock:
            draw = self._random.random()
        return Pick(tuple(n for n, _ in active), tuple(w for _, w in active), self.strict, draw)

    def describe(self) -> dict[str, Any]:
        return {"weights": dict(self.weights), "strict": self.strict}


def selection_from_config(config: Mapping[str, Any]) -> Selection:
    weights = config.get("WORKER_QUEUES") or {DEFAULT: 1}
    return Selection(weights, bool(config.get("STRICT_PRIORITY")))


def known_queues(config: Mapping[str, Any], jobs: Any = ()) -> list[str]:
    """Every queue the app knows of: the workers' setting, and the jobs' own."""
    names = dict.fromkeys([DEFAULT, *parse_weights(config.get("WORKER_QUEUES") or {DEFAULT: 1})])
    for job in jobs:
        names.setdefault(job.queue, None)
        for other in job.queues:
            names.setdefault(other, None)
    return list(names)

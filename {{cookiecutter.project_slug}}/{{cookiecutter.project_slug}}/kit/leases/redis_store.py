"""Leases on Redis: Lua scripts next to Huey's own keys for the queue.

Each step that moves a message (take, release, requeue, adopt, settle) is
one script or one command, so a job is always in exactly one list: the
queue, a worker's held or ahead list, or a reaper's rescue list.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import redis

from .. import queues
from ..backends import BACKEND_ERRORS
from ..huey_seam import REVOKE_PREFIX, TYPE_REVOKE_PREFIX, RedisQueue
from ..queues import Pick
from .model import Lease, Recovery

# Take the next messages without blocking: renew the worker's registration
# (when ARGV[2] is set), move the next message into the worker's lease list,
# and read Huey's two revoke flags for it (this run's and its task type's),
# so that starting a job costs one round trip instead of two. The flags'
# keys come from the message, which the kit's JSON serializer writes as
# {"__huey__": "message", "fields": [id, task name, ...]}, and Huey's key
# prefixes (ARGV[4] and ARGV[5], see huey_seam); a message in another shape
# is taken all the same, and Huey reads the flags itself.
#
# When more than ARGV[3] messages are left, up to that many more are taken
# ahead into the worker's "ahead" list (never more than half of what is
# left), so that a deep queue costs one round trip per batch. A job that was
# recovered before (it has an entry in the recoveries hash) is never part of
# a batch, neither behind another job nor with others behind it: if it is
# what kills workers, it dies alone.
#
# The queues: KEYS[7] onwards are the named queues this worker serves,
# heaviest first, with their weights from ARGV[8] on. Each message, the
# first and each one taken ahead, comes from one non-empty queue: the first
# (ARGV[6] set: strict priority), or one drawn at random in proportion to
# the weights (queues.Pick does the same on SQLite), with Redis's generator
# seeded by ARGV[7]. "Left" counts the messages of all of them.
#
# The reply holds six items per message: the message, then each flag's key
# and value (false, so nil in the reply, when the flags were not read), then
# the key of the queue it came from.
_TAKE_LUA = """
if ARGV[2] ~= '' then
    redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
end
math.randomseed(tonumber(ARGV[7]))

-- Each queue's length, read once and kept up to date as messages leave.
local lengths = {}
for i = 7, #KEYS do
    lengths[i] = #KEYS == 7 and 1 or redis.call('LLEN', KEYS[i])
end

local function choose()
    local found, total = {}, 0
    for i = 7, #KEYS do
        if lengths[i] > 0 then
            if ARGV[6] ~= '' or #KEYS == 7 then
                return i
            end
            local weight = tonumber(ARGV[i + 1])
            table.insert(found, {i, weight})
            total = total + weight
        end
    end
    if #found == 0 then
        return nil
    end
    local mark = math.random() * total
    for _, queue in ipairs(found) do
        mark = mark - queue[2]
        if mark < 0 then
            return queue[1]
        end
    end
    return found[#found][1]
end

local function job_of(raw)
    local ok, message = pcall(cjson.decode, raw)
    if ok and type(message) == 'table' and type(message.fields) == 'table' then
        local id, name = message.fields[1], message.fields[2]
        if type(id) == 'string' and type(name) == 'string' then
            return id, name
        end
    end
    return nil, nil
end

local reply = {}
local function add(raw, id, name, source)
    if id and KEYS[4] ~= '' then
        local keys = {ARGV[4] .. id, ARGV[5] .. name}
        local flags = redis.call('HMGET', KEYS[4], keys[1], keys[2])
        -- A missing flag is false here, and nil in the reply.
        table.insert(reply, raw)
        table.insert(reply, keys[1])
        table.insert(reply, flags[1])
        table.insert(reply, keys[2])
        table.insert(reply, flags[2])
    else
        table.insert(reply, raw)
        for _ = 1, 4 do table.insert(reply, false) end
    end
    table.insert(reply, source)
end

local chosen = choose()
if not chosen then
    return false
end
local source = KEYS[chosen]
local raw = redis.call('LMOVE', source, KEYS[2], 'RIGHT', 'LEFT')
if not raw then
    return false
end
lengths[chosen] = lengths[chosen] - 1
local id, name = job_of(raw)
add(raw, id, name, source)
if not id or redis.call('HEXISTS', KEYS[6], id) == 1 then
    return reply
end
local most, left = tonumber(ARGV[3]), 0
if #KEYS == 7 then
    lengths[7] = redis.call('LLEN', KEYS[7])
end
for i = 7, #KEYS do
    left = left + lengths[i]
end
if left <= most then
    return reply
end
for _ = 1, math.min(most, math.floor(left / 2)) do
    chosen = choose()
    if not chosen then
        break
    end
    source = KEYS[chosen]
    raw = redis.call('LINDEX', source, -1)
    id, name = job_of(raw)
    if not id or redis.call('HEXISTS', KEYS[6], id) == 1 then
        break
    end
    redis.call('LMOVE', source, KEYS[5], 'RIGHT', 'LEFT')
    lengths[chosen] = lengths[chosen] - 1
    add(raw, id, name, source)
end
return reply
"""

# Sent right behind a blocking take (BLMOVE into the worker's list), in the
# same round trip: the newest message of that list, normally the one just
# moved, with its revoke flags, as the take script reads them. Another
# thread of the worker may have moved one in between: the caller compares.
_FLAGS_LUA = """
local raw = redis.call('LINDEX', KEYS[1], 0)
if not raw then
    return false
end
local ok, message = pcall(cjson.decode, raw)
if not (ok and type(message) == 'table' and type(message.fields) == 'table') then
    return false
end
local id, name = message.fields[1], message.fields[2]
if type(id) ~= 'string' or type(name) ~= 'string' then
    return false
end
local keys = {ARGV[1] .. id, ARGV[2] .. name}
local flags = redis.call('HMGET', KEYS[2], keys[1], keys[2])
return {raw, keys[1], flags[1], keys[2], flags[2]}
"""

# Put a leased message back on the queue, but only if this lease still holds
# it: if a reaper recovered the job meanwhile, it must not be queued twice.
_REQUEUE_LUA = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
    if ARGV[2] == 'front' then
        redis.call('RPUSH', KEYS[2], ARGV[1])
    else
        redis.call('LPUSH', KEYS[2], ARGV[1])
    end
    return 1
end
return 0
"""

# The reaper's verdict on an adopted job: drop the lease and, if the job gets
# another run, queue its message at the front (RPUSH: the next to be taken)
# and count the recovery.
_SETTLE_LUA = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
    return 0
end
if ARGV[2] ~= '' then
    redis.call('RPUSH', KEYS[2], ARGV[2])
    redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
else
    redis.call('HDEL', KEYS[3], ARGV[3])
end
return 1
"""

# Forget a worker that holds no lease: at a clean exit (ARGV[2] == ''), or
# when the reaper is done with it and it has not come back to life since.
_FORGET_LUA = """
for i = 2, 4 do
    if redis.call('LLEN', KEYS[i]) > 0 then
        return 0
    end
end
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and expiry and tonumber(expiry) > tonumber(ARGV[2]) then
    return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
"""

_UNLOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

# Move an unreadable message out of a lease into the dead-letter list.
_BURY_LUA = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
    redis.call('LPUSH', KEYS[2], ARGV[1])
end
return 1
"""


class RedisLeases:
    """Leases on Redis, next to Huey's own keys for the queue.

    ``huey.lease.<queue>.workers``  sorted set: worker id -> registration expiry
    ``huey.lease.<queue>.held.<worker id>``  list: the messages that worker runs
    ``huey.lease.<queue>.ahead.<worker id>``  list: the messages it took ahead
    ``huey.lease.<queue>.rescue.<worker id>``  list: jobs it adopted as reaper
    ``huey.lease.<queue>.recoveries``  hash: job id -> times lost so far
    ``huey.lease.<queue>.reaper``  the reaper lock
    ``huey.lease.<queue>.dead``  list: messages no worker could read
    """

    label = "Redis"
    errors: tuple[type[BaseException], ...] = BACKEND_ERRORS
    prefetches = True

    def __init__(self, queue: RedisQueue):
        self.queue = queue
        self.conn: redis.Redis = queue.conn
        self.prefix = prefix = f"huey.lease.{queue.name}"
        self.workers_key = f"{prefix}.workers"
        self.recoveries_key = f"{prefix}.recoveries"
        self.lock_key = f"{prefix}.reaper"
        self.dead_key = f"{prefix}.dead"
        self._take = self.conn.register_script(_TAKE_LUA)
        # Huey's RedisStorage keeps revoke flags in its results hash, where
        # the take script reads them; other storages keep them elsewhere.
        self.flags_key = queue.flags_key
        self.clears_flags = bool(self.flags_key)
        self._requeue = self.conn.register_script(_REQUEUE_LUA)
        self._settle = self.conn.register_script(_SETTLE_LUA)
        self._forget = self.conn.register_script(_FORGET_LUA)
        self._unlock = self.conn.register_script(_UNLOCK_LUA)
        self._bury = self.conn.register_script(_BURY_LUA)

    def held_key(self, worker: str) -> str:
        return f"{self.prefix}.held.{worker}"

    def rescue_key(self, worker: str) -> str:
        return f"{self.prefix}.rescue.{worker}"

    def ahead_key(self, worker: str) -> str:
        return f"{self.prefix}.ahead.{worker}"

    # A worker's side -----------------------------------------------------

    def register(self, worker: str, expires_at: float) -> None:
        self.conn.zadd(self.workers_key, {worker: expires_at})

    def take(
        self, worker: str, expires_at: float | None, ahead: int = 0, pick: Pick | None = None
    ) -> list[Lease]:
        """Move the next message (and up to ``ahead`` more) into this worker's leases.

        ``pick`` says which named queues to take from (all of them empty or
        paused: nothing); None, Huey's queue alone. With ``expires_at``, the
        worker's registration is renewed in the same round trip, before the
        move, so that a lease never exists without a registration to expire.
        """
        queue, key, ahead_key = self.queue, self.held_key(worker), self.ahead_key(worker)
        pick = pick or Pick((queues.DEFAULT,), (1,), False, 0.0)
        if not pick.names:  # every queue this worker serves is paused
            time.sleep(queues.IDLE_POLL)
            return []
        sources = [queues.redis_key(queue.queue_key, name) for name in pick.names]
        keys = [
            sources[0],
            key,
            self.workers_key,
            self.flags_key,
            ahead_key,
            self.recoveries_key,
            *sources,
        ]
        renew = "" if expires_at is None else expires_at
        args = [worker, renew, ahead, REVOKE_PREFIX, TYPE_REVOKE_PREFIX]
        seed = int(pick.draw * 2**31)
        args += ["1" if pick.strict else "", seed, *pick.weights]
        reply = self._take(keys=keys, args=args)
        if reply is not None:
            leases = []
            for i in range(0, len(reply), 6):
                lease = Lease(reply[i], key if i == 0 else ahead_key, prefetched=i > 0)
                lease.queue = reply[i + 5].decode()
                if reply[i + 1] is not None:
                    lease.revocations = {
                        reply[i + 1].decode(): reply[i + 2],
                        reply[i + 3].decode(): reply[i + 4],
                    }
                leases.append(lease)
            if len(leases) > 1:
                # The script takes jobs ahead only behind a job with no
                # recoveries, and only jobs with none.
                for lease in leases:
                    lease.maybe_recovered = False
            return leases
        if not queue.blocking:
            return []
        if len(sources) > 1:
            # One blocking pop cannot wait on several lists: look again soon.
            time.sleep(queues.IDLE_POLL)
            return []
        # Nothing queued: wait for a message as Huey's dequeue does (BRPOP
        # takes from the same end), and read its revoke flags in the same
        # round trip; if that read finds another message, Huey reads them.
        move = ("BLMOVE", sources[0], key, "RIGHT", "LEFT", self._blocking_wait())
        if not self.flags_key:
            raw = self.conn.execute_command(*move)
            return [] if raw is None else [Lease(raw, key, queue=sources[0])]
        pipe = self.conn.pipeline(transaction=False)
        pipe.execute_command(*move)
        # EVAL, not EVALSHA: a pipeline cannot load a script Redis forgot.
        pipe.execute_command(
            "EVAL", _FLAGS_LUA, 2, key, self.flags_key, REVOKE_PREFIX, TYPE_REVOKE_PREFIX
        )
        raw, read = pipe.execute(raise_on_error=False)
        if isinstance(raw, Exception):
            raise raw
        if raw is None:
            return []
        lease = Lease(raw, key, queue=sources[0])
        if isinstance(read, list) and len(read) == 5 and read[0] == raw:
            lease.revocations = {read[1].decode(): read[2], read[3].decode(): read[4]}
        return [lease]

    def _blocking_wait(self) -> float:
        """How long a take waits for a job: Huey's ``read_timeout``, within the socket's.

        A wait as long as the socket timeout would end in a timeout (and
        count as an outage) whenever the queue stays empty. Workers wait for
        a reply longer than that (``REDIS_WORKER_SOCKET_TIMEOUT``); a process
        that takes without having started a consumer has the web's timeout.
        """
        socket_timeout = self.conn.connection_pool.connection_kwargs.get("socket_timeout")
        if not socket_timeout:
            return self.queue.read_timeout
        return min(self.queue.read_timeout, socket_timeout / 2)

    def add_release(self, pipe: Any, lease: Lease, job_id: str) -> None:
        """Add the commands that release ``lease`` to a pipeline.

        Another writer (say, the job history's last write for the run) can
        carry them, so that releasing costs no round trip of its own: any
        object with a pipeline's ``execute_command`` will do.
        """
        pipe.execute_command("LREM", lease.ref, 1, lease.raw)
        if lease.maybe_recovered:
            pipe.execute_command("HDEL", self.recoveries_key, job_id)
        if lease.clear_on_release:
            pipe.execute_command("HDEL", self.flags_key, lease.clear_on_release)

    def release(self, lease: Lease, job_id: str) -> None:
        pipe = self.conn.pipeline(transaction=False)
        self.add_release(pipe, lease, job_id)
        pipe.execute()

    def requeue(self, lease: Lease, front: bool = False) -> bool:
        """Move a leased message back to the queue: its back, or its front."""
        end = "front" if front else "back"
        keys = [lease.ref, lease.queue or self.queue_key_of(lease.raw)]
        return bool(self._requeue(keys=keys, args=[lease.raw, end]))

    def queue_key_of(self, raw: bytes) -> str:
        """The list a message goes back to: its own named queue's."""
        return queues.redis_key(self.queue.queue_key, queues.of_raw(raw))

    def bury(self, lease: Lease) -> None:
        self._bury(keys=[lease.ref, self.dead_key], args=[lease.raw])

    @staticmethod
    def identity(lease: Lease) -> Any:
        return lease.raw

    def own(self, worker: str) -> list[Lease]:
        """The leases this worker holds for jobs it runs (not rescued ones)."""
        pipe = self.conn.pipeline(transaction=False)
        keys = (self.held_key(worker), self.ahead_key(worker))
        for key in keys:
            pipe.lrange(key, 0, -1)
        found = pipe.execute()
        return [Lease(raw, key) for key, raws in zip(keys, found, strict=True) for raw in raws]

    def drop(self, lease: Lease) -> None:
        self.conn.lrem(lease.ref, 1, lease.raw)

    def unregister(self, worker: str) -> bool:
        return bool(self._forget(keys=self._worker_keys(worker), args=[worker, ""]))

    def _worker_keys(self, worker: str) -> list[str]:
        return [
            self.workers_key,
            self.held_key(worker),
            self.rescue_key(worker),
            self.ahead_key(worker),
        ]

    # The reaper's side ---------------------------------------------------

    def lock(self, token: str, ttl: float) -> bool:
        return bool(self.conn.set(self.lock_key, token, nx=True, px=max(1, int(ttl * 1000))))

    def unlock(self, token: str) -> None:
        self._unlock(keys=[self.lock_key], args=[token])

    def lapsed(self, now: float, me: str) -> list[str]:
        workers = self.conn.zrangebyscore(self.workers_key, "-inf", now)
        return [w.decode() for w in workers if w.decode() != me]

    def adopt(self, worker: str, me: str) -> Iterator[Lease]:
        """Move a dead worker's leases, one by one, into this reaper's care.

        The message is always somewhere: if this reaper dies halfway, the
        job sits in its rescue list and the next reaper adopts it from there.
        """
        mine = self.rescue_key(me)
        held, ahead = self.held_key(worker), self.ahead_key(worker)
        # Taken ahead: maybe never started. Should this reaper die halfway,
        # the next one counts them as lost runs (the safe side).
        sources = (held, self.rescue_key(worker), ahead)
        held_one = False
        for source in sources:
            oldest = True
            while True:
                raw = self.conn.lmove(source, mine, "RIGHT", "LEFT")
                if raw is None:
                    break
                held_one = held_one or source == held
                # A worker runs its jobs taken ahead oldest first, and each
                # lease goes when its run ends: with no job held, the oldest
                # left was most likely running, so its loss counts.
                prefetched = source == ahead and not (oldest and not held_one)
                oldest = False
                yield Lease(raw, mine, prefetched=prefetched)

    def leftovers(self, me: str) -> Iterator[Lease]:
        """Jobs this reaper adopted earlier but could not settle."""
        key = self.rescue_key(me)
        for raw in self.conn.lrange(key, 0, -1):
            yield Lease(raw, key)

    def recoveries(self, job_id: str) -> int:
        return int(self.conn.hget(self.recoveries_key, job_id) or 0)

    def settle(self, lease: Lease, new_raw: bytes | None, recovery: Recovery) -> None:
        self._settle(
            keys=[lease.ref, self.queue_key_of(lease.raw), self.recoveries_key],
            args=[lease.raw, new_raw or b"", recovery.job_id, recovery.recoveries],
        )

    def forget(self, worker: str, now: float) -> None:
        self._forget(keys=self._worker_keys(worker), args=[worker, repr(now)])

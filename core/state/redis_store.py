"""Redis implementations of the state interfaces, so several workers behave as one bot.

Keys all start with ``state.key_prefix``. Results of answer records are announced on one pub/sub
channel per bot when a later try of the message exists; each process keeps a single subscription
and wakes its local waiters, so a retry that lands on another worker waits for the work in flight
without polling (the worker doing the work wakes its own waiters directly).

Round trips: every store sends its commands through one ``AutoPipeline`` per client, which writes
the commands issued meanwhile by every message in flight to Redis together, without MULTI. Each
store operation is one command: what needs several keys or several steps at once (a try's count
and result, trimming a history, popping kept answers, the token bucket) is a Lua script, loaded
once and run with EVALSHA. A FAQ message costs 8 round trips of 9 commands when it is alone, and
about one round trip when messages arrive together (bench/redis_calls.py, bench/bench_redis.py,
tests/test_redis_round_trips.py; figures in docs/benchmarks.md).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
import weakref
from typing import Any

import hiredis
import redis.asyncio as aioredis
from cachetools import TTLCache
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError, ResponseError

from .conversation import Turn, trim_turns
from .delivery_records import PUSH_WINDOW, Taken, TakeRequest

#: Announced on the answers' channel after a stream's name when the stream ends.
CLOSED = "|closed"

log = logging.getLogger("skillbot.redis")

# ---- Lua scripts (each one store operation, atomic, one command on the wire) ----------------------

#: KEYS: bucket. ARGV: rate, burst, now, ttl. Returns 1 when the message may pass.
_TOKEN_BUCKET = """
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local state = redis.call('HMGET', key, 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', key, 'tokens', tokens, 'ts', now)
redis.call('EXPIRE', key, ttl)
return allowed
"""

#: KEYS: tries, result. ARGV: ttl. Counts a try; returns {try number, result or false}.
_BEGIN_TRY = """
local tries = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return {tries, redis.call('GET', KEYS[2])}
"""

#: KEYS: result, tries. ARGV: payload JSON, ttl, channel, message key. Stores a result and, when
#: a later try exists (only a later try waits on another worker; the worker of the first try wakes
#: its own waiters), announces it. Scripts run one at a time, so a try counted after this finds
#: the result in ``_BEGIN_TRY``.
_FINISH = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if (tonumber(redis.call('GET', KEYS[2])) or 0) > 1 then
  redis.call('PUBLISH', ARGV[3], ARGV[4])
end
return 1
"""

#: KEYS: history, slots. ARGV: max turns, ttl, turn JSON... Appends turns, keeps the newest.
_APPEND_TURNS = """
redis.call('RPUSH', KEYS[1], unpack(ARGV, 3))
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[1]), -1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"""

#: KEYS: slots. ARGV: ttl, field, value, field, value...
_UPDATE_SLOTS = """
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

#: KEYS: queue, pieces, meta. ARGV: stream, now, ttl, front (0/1), closed (0/1), piece...
#: Puts an answer in a user's queue; returns how many were queued before it.
_ENQUEUE = """
local before = redis.call('LLEN', KEYS[1])
if ARGV[4] == '1' then
  redis.call('LPUSH', KEYS[1], ARGV[1])
else
  redis.call('RPUSH', KEYS[1], ARGV[1])
end
redis.call('DEL', KEYS[2])
if #ARGV > 5 then
  redis.call('RPUSH', KEYS[2], unpack(ARGV, 6))
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
redis.call('HSET', KEYS[3], 'closed', ARGV[5], 'beat', ARGV[2], 'taken', 0)
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return before
"""

#: KEYS: pieces, meta. ARGV: now, ttl, close (0/1), channel, announcement, piece... Appends to
#: an open answer (no piece: a heartbeat); returns 0 when it is gone or already ended.
_APPEND = """
local closed = redis.call('HGET', KEYS[2], 'closed')
if closed ~= '0' then return 0 end
if #ARGV > 5 then
  redis.call('RPUSH', KEYS[1], unpack(ARGV, 6))
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], 'beat', ARGV[1])
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[2], 'closed', 1)
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
return 1
"""

#: KEYS: queue. ARGV: max bytes, hint, now, stale after, lost note, ttl, claim flag key ('' for
#: none), claim result key, stream key prefix. Takes whole pieces from the head of the queue
#: (see MemoryAnswerStore.take, which does the same); returns {text, more, writing,
#: claimed before, content}. Lua strings are bytes, so ``#piece`` is its UTF-8 length. It reads
#: the keys of the answers named in the queue, which are not declared in KEYS: one Redis server
#: (or a cluster only with the user's keys in one hash slot).
_TAKE = """
local max, hint, now = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local stale, note, ttl = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local flag, result, sp = ARGV[7], ARGV[8], ARGV[9]
local ids = redis.call('LRANGE', KEYS[1], 0, -1)
local used, segments, plan, writing, full = 0, {}, {}, 0, false
for _, id in ipairs(ids) do
  local meta = redis.call('HMGET', sp .. id .. ':m', 'closed', 'beat', 'taken')
  if not meta[1] then
    plan[#plan + 1] = {id, 0, true}
  else
    local closed = meta[1] == '1'
    local taken = tonumber(meta[3]) or 0
    if not closed and now - (tonumber(meta[2]) or 0) > stale then
      redis.call('RPUSH', sp .. id, note)
      redis.call('HSET', sp .. id .. ':m', 'closed', 1)
      closed = true
    end
    local pieces = redis.call('LRANGE', sp .. id, taken, -1)
    local segment, took = '', 0
    for _, piece in ipairs(pieces) do
      local cost = #piece
      if segment == '' and #segments > 0 then cost = cost + 2 end
      if used > 0 and used + cost > max then
        full = true
        break
      end
      segment = segment .. piece
      used = used + cost
      took = took + 1
    end
    if took > 0 then segments[#segments + 1] = segment end
    local done = closed and took == #pieces
    plan[#plan + 1] = {id, took, done}
    if full then break end
    if not done then
      writing = 1
      break
    end
  end
end
local texts = {}
for _, segment in ipairs(segments) do
  local trimmed = string.match(segment, '^%s*(.-)%s*$')
  if trimmed ~= '' then texts[#texts + 1] = trimmed end
end
local text = table.concat(texts, '\\n\\n')
if text ~= '' and flag ~= '' then
  if not redis.call('SET', flag, 'reply', 'NX', 'EX', ttl) then
    return {'', 0, 0, 1, ''}
  end
end
for _, step in ipairs(plan) do
  if step[2] > 0 then redis.call('HINCRBY', sp .. step[1] .. ':m', 'taken', step[2]) end
  if step[3] then
    redis.call('LREM', KEYS[1], 1, step[1])
    redis.call('DEL', sp .. step[1], sp .. step[1] .. ':m')
  end
end
local more = redis.call('LLEN', KEYS[1]) > 0
local content = text
if text ~= '' and more then content = text .. hint end
if text ~= '' and flag ~= '' then
  redis.call('SET', result, cjson.encode({type = 'text', content = content}), 'EX', ttl)
end
return {text, more and 1 or 0, writing, 0, content}
"""

#: KEYS: query. ARGV: digest, ttl. Remembers the digest unless one is kept; returns the kept one.
_FIRST_MESSAGE = """
local kept = redis.call('GET', KEYS[1])
if kept then return kept end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return ARGV[1]
"""


#: KEYS: the user's push count. ARGV: pushes to add, limit, seconds to keep. 1 when counted.
_RESERVE_PUSHES = """
local pushed = tonumber(redis.call('GET', KEYS[1]) or '0')
if pushed + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return 0 end
redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

#: KEYS: the user's push count. ARGV: pushes to give back.
_RELEASE_PUSHES = """
if redis.call('DECRBY', KEYS[1], ARGV[1]) <= 0 then redis.call('DEL', KEYS[1]) end
return 0
"""

class AutoPipeline:
    """Sends the commands issued by any caller as few pipelines as it can (no MULTI).

    Commands queued in one turn of the event loop go out together; while ``max_in_flight``
    pipelines await their replies, new commands wait for one of them to return and then all go out
    in the next. Alone, a command leaves at once; under load the messages in flight share round
    trips (every write and read to Redis is a system call, and those are what a busy worker
    spends its time on). A caller awaits its own command's reply as usual. Commands of one pipeline
    are not a transaction: what must be atomic is one Lua script (``script``).
    """

    def __init__(self, client: aioredis.Redis, max_in_flight: int = 2) -> None:
        self.r = client
        self.max_in_flight = max_in_flight
        self._queue: list[tuple[tuple, asyncio.Future]] = []
        self._flushing: set[asyncio.Task] = set()
        self._scheduled = False
        self._shas: dict[str, str] = {}
        #: Pipelines sent and commands in them, since start (bench/redis_calls.py reads them).
        self.round_trips = 0
        self.commands = 0

    def call(self, *args: Any) -> asyncio.Future:
        """Queue one command; the future resolves to its reply (or its error)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        future.add_done_callback(_retrieve)  # an error nobody awaits (a cancelled caller) is no news
        self._queue.append((args, future))
        if not self._scheduled and len(self._flushing) < self.max_in_flight:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    async def script(self, source: str, keys: list[str], args: list[Any]) -> Any:
        """Run a Lua script by its SHA1, loading it (once per server start) when Redis lacks it."""
        sha = self._shas.get(source)
        if sha is None:
            sha = self._shas[source] = hashlib.sha1(source.encode("utf-8")).hexdigest()
        try:
            return await self.call("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.r.script_load(source)  # a restarted Redis forgot it
            return await self.call("EVALSHA", sha, len(keys), *keys, *args)

    def _flush(self) -> None:
        self._scheduled = False
        if not self._queue or len(self._flushing) >= self.max_in_flight:
            return
        batch, self._queue = self._queue, []
        task = asyncio.ensure_future(self._send(batch))
        self._flushing.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task) -> None:
        self._flushing.discard(task)
        if self._queue and not self._scheduled:  # what queued up meanwhile goes out now
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def _send(self, batch: list[tuple[tuple, asyncio.Future]]) -> None:
        self.round_trips += 1
        self.commands += len(batch)
        try:
            replies = await self._round_trip([args for args, _ in batch])
        except BaseException as exc:  # the connection failed: every caller learns it
            error = exc if isinstance(exc, Exception) else RedisError("pipeline cancelled")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), reply in zip(batch, replies):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _round_trip(self, commands: list[tuple]) -> list[Any]:
        """One write of every command (packed by hiredis) and their replies, raw (no redis-py
        reply callbacks: HGETALL is a flat list or a map); an error reply is returned as its
        exception. A connection that fails is dropped and the batch sent once more on a new one,
        as redis-py does (``connect``'s retry): a pooled connection may have died with a
        restarted server."""
        packed = b"".join(hiredis.pack_command(c) for c in commands)
        pool = self.r.connection_pool
        conn = await pool.get_connection()

        async def attempt() -> list[Any]:
            await conn.send_packed_command(packed)
            replies: list[Any] = []
            # One deadline for all the replies (the client's socket timeout), not one per reply.
            async with asyncio.timeout(conn.socket_timeout):
                for _ in commands:
                    try:
                        replies.append(await conn.read_response(timeout=math.inf))
                    except ResponseError as exc:
                        replies.append(exc)
            return replies

        async def dropped(_error: BaseException) -> None:
            await conn.disconnect()

        try:
            return await conn.retry.call_with_retry(attempt, dropped)
        except BaseException:
            await conn.disconnect()  # replies may be left unread: never reuse this connection
            raise
        finally:
            await pool.release(conn)


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


_pipelines: "weakref.WeakKeyDictionary[aioredis.Redis, AutoPipeline]" = weakref.WeakKeyDictionary()


def auto_pipeline(client: aioredis.Redis) -> AutoPipeline:
    """The one AutoPipeline of ``client``, shared by every store using it."""
    pipeline = _pipelines.get(client)
    if pipeline is None:
        pipeline = _pipelines[client] = AutoPipeline(client)
    return pipeline


def connect(url: str) -> aioredis.Redis:
    """A client with short timeouts: a sick Redis must not eat WeChat's 5-second window."""
    # One immediate retry (a pooled connection may have died with a restarted server), no
    # back-off: a failing call falls over to memory at once and the health check sees Redis return.
    # A blocking pool: under a burst a call waits briefly for a free connection instead of
    # failing, which the failover would take for Redis being down (and split the workers' state).
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=256, timeout=1.0, socket_timeout=0.5, socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 1), health_check_interval=10, decode_responses=True)
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes it


class RedisConversationStore:
    def __init__(self, client: aioredis.Redis, prefix: str, max_turns: int, max_chars: int,
                 idle_seconds: float) -> None:
        self.r = client
        self.cmd = auto_pipeline(client)
        self.prefix = prefix
        self.max_turns = max_turns
        self.max_chars = max_chars
        self.ttl = max(1, int(idle_seconds))
        #: Slots read with ``history`` for the ``slots`` call that follows in the same task; a
        #: write of this user's slots in between drops them (read again).
        self._slots_read: TTLCache[str, tuple[int, asyncio.Future]] = TTLCache(maxsize=10_000, ttl=5)

    def _k(self, kind: str, user: str) -> str:
        return f"{self.prefix}{kind}:{user}"

    def _forget_slots_read(self, user: str) -> None:
        self._slots_read.pop(user, None)

    async def history(self, user: str) -> list[Turn]:
        # The pipeline reads the slots too (same round trip): the bot asks for them right after.
        turns = self.cmd.call("LRANGE", self._k("conv", user), 0, -1)
        slots = self.cmd.call("HGETALL", self._k("slots", user))
        self._slots_read[user] = (id(asyncio.current_task()), slots)
        raw = await turns
        items = json.loads("[" + ",".join(raw) + "]") if raw else []  # one parse for every turn
        return trim_turns([Turn(**item) for item in items], self.max_turns, self.max_chars)

    async def append(self, user: str, *turns: Turn) -> None:
        if not turns:
            return
        await self.cmd.script(_APPEND_TURNS, [self._k("conv", user), self._k("slots", user)],
                              [self.max_turns, self.ttl,
                               *[json.dumps(t.to_dict(), ensure_ascii=False) for t in turns]])

    async def clear(self, user: str) -> None:
        self._forget_slots_read(user)
        await self.cmd.call("DEL", self._k("conv", user), self._k("slots", user))

    async def slots(self, user: str) -> dict[str, Any]:
        read = self._slots_read.pop(user, None)
        if read is not None and read[0] == id(asyncio.current_task()):
            raw = await read[1]
        else:
            raw = await self.cmd.call("HGETALL", self._k("slots", user))
        pairs = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2])  # RESP3 map or RESP2 list
        return {k: json.loads(v) for k, v in pairs}

    async def update_slots(self, user: str, **values: Any) -> None:
        if not values:
            return
        self._forget_slots_read(user)
        pairs = [item for k, v in values.items() for item in (k, json.dumps(v, ensure_ascii=False))]
        await self.cmd.script(_UPDATE_SLOTS, [self._k("slots", user)], [self.ttl, *pairs])


class RedisCache:
    """A shared cache with a near copy in this process: a value read or written here is served
    locally until the moment it expires in Redis (its remaining TTL is read with it), so a hit
    costs no round trip. A delete reaches other workers' near copies only when they expire."""

    def __init__(self, client: aioredis.Redis, prefix: str, name: str, ttl: float, maxsize: int = 1024) -> None:
        self.r = client
        self.cmd = auto_pipeline(client)
        self.name = name
        self.ttl = ttl
        self.prefix = f"{prefix}cache:{name}:"
        self.hits = 0
        self.misses = 0
        self._near: TTLCache[str, tuple[float, Any]] = TTLCache(maxsize=maxsize, ttl=max(ttl, 1.0))

    async def get(self, key: str) -> Any | None:
        near = self._near.get(key)
        if near is not None and near[0] > time.monotonic():
            self.hits += 1
            return near[1]
        raw_future = self.cmd.call("GET", self.prefix + key)
        pttl_future = self.cmd.call("PTTL", self.prefix + key)  # same round trip
        raw, pttl = await raw_future, await pttl_future
        if raw is None:
            self.misses += 1
            return None
        self.hits += 1
        value = json.loads(raw)
        if pttl > 0:
            self._near[key] = (time.monotonic() + pttl / 1000, value)
        return value

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        ttl = self.ttl if ttl is None else ttl
        self._near.pop(key, None)
        await self.cmd.call("SET", self.prefix + key, json.dumps(value, ensure_ascii=False),
                            "PX", max(1, int(ttl * 1000)))
        self._near[key] = (time.monotonic() + ttl, value)

    async def delete(self, key: str) -> None:
        self._near.pop(key, None)
        await self.cmd.call("DEL", self.prefix + key)


class ResultNotifier:
    """One pub/sub subscription per process, waking local waiters when an answer is stored."""

    def __init__(self, client: aioredis.Redis, channel: str) -> None:
        self.r = client
        self.channel = channel
        self._waiters: dict[str, set[asyncio.Future]] = {}
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()

    @property
    def listening(self) -> bool:
        """Subscribed now: a result announced from here on wakes a future made before."""
        return self._ready.is_set() and self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._ready.clear()
            self._task = asyncio.ensure_future(self._listen())
        await asyncio.wait_for(self._ready.wait(), 2.0)

    async def _listen(self) -> None:
        while True:
            pubsub = self.r.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self._ready.set()
                async for message in pubsub.listen():
                    if message and message.get("type") == "message":
                        self.wake(message["data"])
            except asyncio.CancelledError:
                self._ready.clear()
                await pubsub.aclose()
                raise
            except (RedisError, OSError):
                self._ready.clear()
                await pubsub.aclose()
                await asyncio.sleep(0.5)

    def wake(self, key: str) -> None:
        """Wake this process's waiters for ``key`` (its result is stored)."""
        for future in self._waiters.pop(key, ()):
            if not future.done():
                future.set_result(True)

    def future(self, key: str) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, set()).add(future)
        return future

    def discard(self, key: str, future: asyncio.Future) -> None:
        waiters = self._waiters.get(key)
        if waiters is not None:
            waiters.discard(future)
            if not waiters:
                self._waiters.pop(key, None)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


class RedisAnswerStore:
    """Answer records in Redis. A try is one script that counts it and reads the result, so the
    wait that follows needs no read of its own unless the result is announced later."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.r = client
        self.cmd = auto_pipeline(client)
        self.prefix = prefix
        self.notifier = ResultNotifier(client, f"{prefix}answers")
        #: What ``begin`` of a later try read for the ``wait_result`` that follows it: (result, a
        #: future armed before the read, or None when the notifier was not listening yet).
        self._read_at_begin: TTLCache[str, tuple[dict | None, asyncio.Future | None]] = TTLCache(
            maxsize=100_000, ttl=60)

    def _k(self, key: str, part: str) -> str:
        return f"{self.prefix}ans:{key}:{part}"

    async def begin(self, key: str, ttl: float) -> int:
        # Armed before the read: a result announced after it is not missed.
        future = self.notifier.future(key) if self.notifier.listening else None
        try:
            tries, raw = await self.cmd.script(_BEGIN_TRY, [self._k(key, "tries"), self._k(key, "result")],
                                               [int(ttl)])
        except BaseException:
            if future is not None:
                self.notifier.discard(key, future)
            raise
        earlier = self._read_at_begin.pop(key, None)
        if earlier is not None and earlier[1] is not None:
            self.notifier.discard(key, earlier[1])
        if int(tries) == 1:
            # No result yet; the work runs here, and ``finish`` wakes this process's waiters itself.
            if future is not None:
                self.notifier.discard(key, future)
            return 1
        self._read_at_begin[key] = (json.loads(raw) if raw else None, future)
        return int(tries)

    async def finish(self, key: str, payload: dict, ttl: float) -> None:
        await self.cmd.script(_FINISH, [self._k(key, "result"), self._k(key, "tries")],
                              [json.dumps(payload, ensure_ascii=False), int(ttl), self.notifier.channel, key])
        self.notifier.wake(key)  # waiters here need no announcement

    async def _get(self, key: str) -> dict | None:
        raw = await self.cmd.call("GET", self._k(key, "result"))
        return json.loads(raw) if raw is not None else None

    async def wait_result(self, key: str, timeout: float) -> dict | None:
        read = self._read_at_begin.pop(key, None)
        if read is not None:  # what the try's ``begin`` just read, with a future armed before
            result, future = read
            if result is None and future is not None and timeout > 0:
                try:
                    await asyncio.wait_for(asyncio.shield(future), timeout)
                except asyncio.TimeoutError:
                    return None
                finally:
                    self.notifier.discard(key, future)
                return await self._get(key)
            if future is not None:
                self.notifier.discard(key, future)
            if result is not None:
                return result
        result = await self._get(key)
        if result is not None or timeout <= 0:
            return result
        await self.notifier.start()
        future = self.notifier.future(key)
        try:
            result = await self._get(key)  # it may have landed while we subscribed
            if result is not None:
                return result
            try:
                await asyncio.wait_for(asyncio.shield(future), timeout)
            except asyncio.TimeoutError:
                return None
            return await self._get(key)
        finally:
            self.notifier.discard(key, future)

    async def claim_delivery(self, key: str, ttl: float, how: str = "reply") -> bool:
        return bool(await self.cmd.call("SET", self._k(key, "delivered"), how, "NX", "EX", int(ttl)))

    async def delivery_of(self, key: str) -> str | None:
        return await self.cmd.call("GET", self._k(key, "delivered"))

    async def adopt(self, key: str, tries: int, result: dict | None, how: str | None, ttl: float) -> None:
        """Copy a record made in local memory while Redis was away, never overwriting what Redis
        has (another worker's record of the same message wins)."""
        ex = int(ttl)
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.set(self._k(key, "tries"), tries, nx=True, ex=ex)
            if result is not None:
                pipe.set(self._k(key, "result"), json.dumps(result, ensure_ascii=False), nx=True, ex=ex)
            if how is not None:
                pipe.set(self._k(key, "delivered"), how, nx=True, ex=ex)
            await pipe.execute()
        if result is not None:
            await self.r.publish(self.notifier.channel, key)

    async def reply_of(self, key: str) -> dict | None:
        if await self.delivery_of(key) != "reply":
            return None
        return await self._get(key)

    # ---- the users' queues (see AnswerStore) -----------------------------------------------------

    def _q(self, user: str) -> str:
        return f"{self.prefix}q:{user}"

    def _s(self, stream: str) -> str:
        return f"{self.prefix}s:{stream}"

    async def waiting(self, user: str) -> bool:
        return bool(await self.cmd.call("EXISTS", self._q(user)))

    async def enqueue(self, user: str, stream: str, pieces: list[str], ttl: float, *,
                      closed: bool, front: bool = False) -> bool:
        before = await self.cmd.script(
            _ENQUEUE, [self._q(user), self._s(stream), self._s(stream) + ":m"],
            [stream, time.time(), int(ttl), int(front), int(closed), *pieces])
        return int(before) > 0

    async def append(self, stream: str, pieces: list[str], ttl: float, *, close: bool = False) -> bool:
        done = await self.cmd.script(
            _APPEND, [self._s(stream), self._s(stream) + ":m"],
            [time.time(), int(ttl), int(close), self.notifier.channel, stream + CLOSED, *pieces])
        if close:
            self.notifier.wake(stream + CLOSED)
        return bool(done)

    async def _closed(self, stream: str) -> bool:
        return await self.cmd.call("HGET", self._s(stream) + ":m", "closed") != "0"

    async def wait_closed(self, stream: str, timeout: float) -> bool:
        closed = await self._closed(stream)
        if closed or timeout <= 0:
            return closed
        await self.notifier.start()
        future = self.notifier.future(stream + CLOSED)
        try:
            if await self._closed(stream):  # it may have ended while we subscribed
                return True
            try:
                await asyncio.wait_for(asyncio.shield(future), timeout)
            except asyncio.TimeoutError:
                return False
            return True
        finally:
            self.notifier.discard(stream + CLOSED, future)

    def _p(self, user: str) -> str:
        return f"{self.prefix}push:{user}"

    async def pushes(self, user: str) -> int:
        return int(await self.cmd.call("GET", self._p(user)) or 0)

    async def reserve_pushes(self, user: str, count: int, limit: int) -> bool:
        return bool(await self.cmd.script(_RESERVE_PUSHES, [self._p(user)], [count, limit, PUSH_WINDOW]))

    async def release_pushes(self, user: str, count: int) -> None:
        await self.cmd.script(_RELEASE_PUSHES, [self._p(user)], [count])

    async def reset_pushes(self, user: str) -> None:
        await self.cmd.call("DEL", self._p(user))

    async def take(self, user: str, request: TakeRequest) -> Taken:
        flag = result = ""
        if request.claim is not None:
            flag, result = self._k(request.claim, "delivered"), self._k(request.claim, "result")
        text, more, writing, claimed, content = await self.cmd.script(
            _TAKE, [self._q(user)],
            [request.max_bytes, request.hint, request.now or time.time(), request.stale_after,
             request.lost_note, int(request.ttl), flag, result, f"{self.prefix}s:"])
        return Taken(text or "", bool(more), bool(writing), bool(claimed), content or "")


class RedisSignedQueryStore:
    """Signed queries shared by every worker (see core/access/replay_guard.py): one script call."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.r = client
        self.cmd = auto_pipeline(client)
        self.prefix = f"{prefix}signed:"

    async def first_message(self, query_key: str, digest: str, ttl: float) -> str:
        return await self.cmd.script(_FIRST_MESSAGE, [self.prefix + query_key], [digest, max(1, int(ttl))])


class RedisTokenStore:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.r = client
        self.cmd = auto_pipeline(client)
        self.key = f"{prefix}access_token"
        self.prefix = prefix

    async def get_token(self) -> tuple[str, float] | None:
        raw = await self.cmd.call("GET", self.key)
        if raw is None:
            return None
        data = json.loads(raw)
        return data["token"], float(data["expires_at"])

    async def set_token(self, token: str, expires_at: float) -> None:
        await self.cmd.call("SET", self.key, json.dumps({"token": token, "expires_at": expires_at}),
                            "EX", max(1, int(expires_at - time.time())))

    async def lock(self, name: str, ttl: float) -> Any:
        """A lock with expiry, so one worker refreshes the token and a crashed one frees it."""
        return self.r.lock(f"{self.prefix}lock:{name}", timeout=ttl, blocking_timeout=ttl)


class RedisRateLimiter:
    def __init__(self, client: aioredis.Redis, prefix: str, rate: float, burst: int) -> None:
        self.r = client
        self.cmd = auto_pipeline(client)
        self.prefix = prefix
        self.rate = rate
        self.burst = burst

    async def allow(self, user: str) -> bool:
        ttl = max(1, int(self.burst / self.rate) + 1) if self.rate > 0 else 3600
        allowed = await self.cmd.script(_TOKEN_BUCKET, [f"{self.prefix}rate:{user}"],
                                        [self.rate, self.burst, time.time(), ttl])
        return bool(int(allowed))

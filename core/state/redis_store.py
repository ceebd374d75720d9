"""Redis implementations of the state interfaces, so several workers behave as one bot.

Keys all start with ``state.key_prefix``. Results of answer records are announced on one pub/sub
channel per bot; each process keeps a single subscription and wakes its local waiters, so a retry
that lands on another worker waits for the work in flight without polling.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .conversation import Turn, trim_turns

log = logging.getLogger("skillbot.redis")

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
        self.prefix = prefix
        self.max_turns = max_turns
        self.max_chars = max_chars
        self.ttl = max(1, int(idle_seconds))

    def _k(self, kind: str, user: str) -> str:
        return f"{self.prefix}{kind}:{user}"

    async def history(self, user: str) -> list[Turn]:
        raw = await self.r.lrange(self._k("conv", user), 0, -1)
        return trim_turns([Turn(**json.loads(item)) for item in raw], self.max_turns, self.max_chars)

    async def append(self, user: str, *turns: Turn) -> None:
        key = self._k("conv", user)
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.rpush(key, *[json.dumps(t.to_dict(), ensure_ascii=False) for t in turns])
            pipe.ltrim(key, -self.max_turns, -1)
            pipe.expire(key, self.ttl)
            pipe.expire(self._k("slots", user), self.ttl)
            await pipe.execute()

    async def clear(self, user: str) -> None:
        await self.r.delete(self._k("conv", user), self._k("slots", user))

    async def slots(self, user: str) -> dict[str, Any]:
        raw = await self.r.hgetall(self._k("slots", user))
        return {k: json.loads(v) for k, v in raw.items()}

    async def update_slots(self, user: str, **values: Any) -> None:
        if not values:
            return
        key = self._k("slots", user)
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={k: json.dumps(v, ensure_ascii=False) for k, v in values.items()})
            pipe.expire(key, self.ttl)
            await pipe.execute()


class RedisCache:
    def __init__(self, client: aioredis.Redis, prefix: str, name: str, ttl: float) -> None:
        self.r = client
        self.name = name
        self.ttl = ttl
        self.prefix = f"{prefix}cache:{name}:"
        self.hits = 0
        self.misses = 0

    async def get(self, key: str) -> Any | None:
        raw = await self.r.get(self.prefix + key)
        if raw is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(raw)

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        ttl = self.ttl if ttl is None else ttl
        await self.r.set(self.prefix + key, json.dumps(value, ensure_ascii=False), px=max(1, int(ttl * 1000)))

    async def delete(self, key: str) -> None:
        await self.r.delete(self.prefix + key)


class ResultNotifier:
    """One pub/sub subscription per process, waking local waiters when an answer is stored."""

    def __init__(self, client: aioredis.Redis, channel: str) -> None:
        self.r = client
        self.channel = channel
        self._waiters: dict[str, set[asyncio.Future]] = {}
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()

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
                        for future in self._waiters.pop(message["data"], set()):
                            if not future.done():
                                future.set_result(True)
            except asyncio.CancelledError:
                await pubsub.aclose()
                raise
            except (RedisError, OSError):
                self._ready.clear()
                await pubsub.aclose()
                await asyncio.sleep(0.5)

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
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.r = client
        self.prefix = prefix
        self.notifier = ResultNotifier(client, f"{prefix}answers")

    def _k(self, key: str, part: str) -> str:
        return f"{self.prefix}ans:{key}:{part}"

    async def begin(self, key: str, ttl: float) -> int:
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.incr(self._k(key, "tries"))
            pipe.expire(self._k(key, "tries"), int(ttl))
            tries, _ = await pipe.execute()
        return int(tries)

    async def finish(self, key: str, payload: dict, ttl: float) -> None:
        await self.r.set(self._k(key, "result"), json.dumps(payload, ensure_ascii=False), ex=int(ttl))
        await self.r.publish(self.notifier.channel, key)

    async def _get(self, key: str) -> dict | None:
        raw = await self.r.get(self._k(key, "result"))
        return json.loads(raw) if raw is not None else None

    async def wait_result(self, key: str, timeout: float) -> dict | None:
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
        return bool(await self.r.set(self._k(key, "delivered"), how, nx=True, ex=int(ttl)))

    async def delivery_of(self, key: str) -> str | None:
        return await self.r.get(self._k(key, "delivered"))

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

    async def push_pending(self, user: str, payload: dict, ttl: float) -> None:
        key = f"{self.prefix}pending:{user}"
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.rpush(key, json.dumps(payload, ensure_ascii=False))
            pipe.expire(key, int(ttl))
            await pipe.execute()

    async def pop_pending(self, user: str) -> list[dict]:
        key = f"{self.prefix}pending:{user}"
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.lrange(key, 0, -1)
            pipe.delete(key)
            items, _ = await pipe.execute()
        return [json.loads(i) for i in items]

    async def set_parts(self, user: str, parts: list[str], ttl: float) -> None:
        key = f"{self.prefix}parts:{user}"
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if parts:
                pipe.rpush(key, *parts)
                pipe.expire(key, int(ttl))
            await pipe.execute()

    async def pop_part(self, user: str) -> tuple[str | None, int]:
        key = f"{self.prefix}parts:{user}"
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.lpop(key)
            pipe.llen(key)
            part, remaining = await pipe.execute()
        return part, int(remaining)


class RedisSignedQueryStore:
    """Signed queries shared by every worker (see core/access/replay_guard.py): one ``SET NX`` and a ``GET``."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.r = client
        self.prefix = f"{prefix}signed:"

    async def first_message(self, query_key: str, digest: str, ttl: float) -> str:
        key = self.prefix + query_key
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.set(key, digest, nx=True, ex=max(1, int(ttl)))
            pipe.get(key)
            _, kept = await pipe.execute()
        return kept if kept is not None else digest


class RedisTokenStore:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.r = client
        self.key = f"{prefix}access_token"
        self.prefix = prefix

    async def get_token(self) -> tuple[str, float] | None:
        raw = await self.r.get(self.key)
        if raw is None:
            return None
        data = json.loads(raw)
        return data["token"], float(data["expires_at"])

    async def set_token(self, token: str, expires_at: float) -> None:
        await self.r.set(self.key, json.dumps({"token": token, "expires_at": expires_at}),
                         ex=max(1, int(expires_at - time.time())))

    async def lock(self, name: str, ttl: float) -> Any:
        """A lock with expiry, so one worker refreshes the token and a crashed one frees it."""
        return self.r.lock(f"{self.prefix}lock:{name}", timeout=ttl, blocking_timeout=ttl)


class RedisRateLimiter:
    def __init__(self, client: aioredis.Redis, prefix: str, rate: float, burst: int) -> None:
        self.r = client
        self.prefix = prefix
        self.rate = rate
        self.burst = burst
        self._script = client.register_script(_TOKEN_BUCKET)

    async def allow(self, user: str) -> bool:
        ttl = max(1, int(self.burst / self.rate) + 1) if self.rate > 0 else 3600
        allowed = await self._script(keys=[f"{self.prefix}rate:{user}"],
                                     args=[self.rate, self.burst, time.time(), ttl])
        return bool(int(allowed))

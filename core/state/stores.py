"""One state layer, two backends: everything the bot remembers, in memory or in Redis.

With Redis, every call goes to Redis while it answers; when it stops answering the bot logs it
once, carries on with local memory (no 500, no lost reply), reports "degraded" on /healthz and
pings in the background until Redis is back, then uses it again for new state. Answer records
(retry dedup) are kept on both sides so that no transition runs a message twice: see
``AnswerFailover``.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from cachetools import TTLCache
from redis.exceptions import RedisError

from ..access.replay_guard import MemorySignedQueryStore, remember_seconds
from ..access.replies import EXPLANATION_FIELD
from ..access.wechat_api import MemoryTokenStore
from ..settings import Settings
from .cache import MemoryCache
from .conversation import MemoryConversationStore
from .delivery_records import BY_REPLY, DELIVERED, MemoryAnswerStore, Taken, TakeRequest
from .ratelimit import MemoryRateLimiter

log = logging.getLogger("skillbot.state")
REDIS_FAILURES = (RedisError, OSError, asyncio.TimeoutError)


class RedisHealth:
    """Tracks whether Redis answers; logs once per change and reconnects in the background."""

    def __init__(self, client: Any, interval: float = 1.0) -> None:
        self.client = client
        self.interval = interval
        self.up = False
        self.known = False
        self.changes = 0
        #: Called (awaited) each time Redis comes back after an outage.
        self.on_recovery: list[Callable[[], Any]] = []
        self._task: asyncio.Task | None = None

    @property
    def status(self) -> str:
        return "up" if self.up else "down"

    def mark_down(self, reason: BaseException | str) -> None:
        if self.up or not self.known:
            self.changes += 1
            log.warning("Redis unreachable (%s): answering from local memory until it returns",
                        reason if isinstance(reason, str) else type(reason).__name__)
        self.up = False
        self.known = True
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._reconnect())

    def mark_up(self) -> None:
        if not self.up:
            self.changes += 1
            level = logging.WARNING if self.known else logging.INFO  # a recovery is news
            log.log(level, "Redis reachable: shared state in use")
        self.up = True
        self.known = True

    async def check(self) -> bool:
        try:
            await self.client.ping()
        except REDIS_FAILURES as exc:
            self.mark_down(exc)
            return False
        self.mark_up()
        return True

    async def _reconnect(self) -> None:
        while not self.up:
            await asyncio.sleep(self.interval)
            try:
                await self.client.ping()
            except REDIS_FAILURES:
                continue
            # Connections pooled before the outage are dead: drop them before using Redis again.
            await self.client.connection_pool.disconnect()
            self.mark_up()
            for recovered in self.on_recovery:
                try:
                    await recovered()
                except Exception:  # a failed catch-up must not stop the health loop
                    log.exception("catching Redis up after the outage failed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class Failover:
    """Calls the Redis implementation while Redis is up, the memory one otherwise."""

    def __init__(self, primary: Any, fallback: Any, health: RedisHealth) -> None:
        self._primary = primary
        self._fallback = fallback
        self._health = health

    def __getattr__(self, name: str) -> Any:
        primary = getattr(self._primary, name)
        if not inspect.iscoroutinefunction(primary):
            return primary
        fallback = getattr(self._fallback, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self._health.up:
                try:
                    return await primary(*args, **kwargs)
                except REDIS_FAILURES as exc:
                    self._health.mark_down(exc)
            return await fallback(*args, **kwargs)

        call.__name__ = name
        self.__dict__[name] = call  # made once: the next lookup finds it without __getattr__
        return call


class AnswerFailover(Failover):
    """Answer records are kept on both sides, so retry dedup holds across Redis transitions.

    Every try, result and delivery is also recorded in local memory (results fetched from Redis
    too). When Redis goes away, the local records carry on: a retry of a message seen before is
    joined, not run again. While Redis is back, a try counts on both sides and takes the larger
    count, and a delivery needs both sides' claim, so a message answered during the outage is
    neither run nor delivered again; on recovery the records made during the outage are copied
    to Redis (never over Redis's own) for the other workers.
    """

    def __init__(self, primary: Any, fallback: Any, health: RedisHealth, ttl: float) -> None:
        super().__init__(primary, fallback, health)
        self._ttl = ttl
        #: Messages recorded while Redis was away, to copy there when it returns.
        self._unshared: TTLCache[str, bool] = TTLCache(maxsize=100_000, ttl=max(1.0, ttl))
        #: Whether the latest try of a message counted here was its first, so that its work runs
        #: here and its full result arrives in the local records first: until the answer is
        #: claimed (which shrinks the local copy), waits read the local records alone.
        self._first_try_here: TTLCache[str, bool] = TTLCache(maxsize=100_000, ttl=max(1.0, ttl))
        health.on_recovery.append(self.share_outage_records)

    async def begin(self, key: str, ttl: float) -> int:
        local = await self._fallback.begin(key, ttl)
        n = local
        if self._health.up:
            try:
                n = max(local, await self._primary.begin(key, ttl))
            except REDIS_FAILURES as exc:
                self._health.mark_down(exc)
                self._unshared[key] = True
        else:
            self._unshared[key] = True
        self._first_try_here[key] = n == 1
        return n

    async def finish(self, key: str, payload: dict, ttl: float) -> None:
        await self._fallback.finish(key, payload, ttl)
        if self._health.up:
            try:
                await self._primary.finish(key, payload, ttl)
                return
            except REDIS_FAILURES as exc:
                self._health.mark_down(exc)
        self._unshared[key] = True

    async def claim_delivery(self, key: str, ttl: float, how: str = BY_REPLY) -> bool:
        # The local copy is shrunk now (no explanation): later reads ask Redis too.
        self._first_try_here.pop(key, None)
        local = await self._fallback.claim_delivery(key, ttl, how)  # also shrinks the local copy
        if not local:
            return False  # delivered here already (perhaps while Redis was away)
        if self._health.up:
            try:
                return await self._primary.claim_delivery(key, ttl, how)
            except REDIS_FAILURES as exc:
                self._health.mark_down(exc)
        self._unshared[key] = True
        return local

    async def take(self, user: str, request: TakeRequest) -> Taken:
        """Taken from Redis while it answers; a reply claimed there is recorded here too, so a
        retry of that try during an outage of Redis gets it again."""
        if self._health.up:
            try:
                taken = await self._primary.take(user, request)
            except REDIS_FAILURES as exc:
                self._health.mark_down(exc)
            else:
                if taken.text and request.claim is not None:
                    self._first_try_here.pop(request.claim, None)
                    reply = {"type": "text", "content": taken.content}
                    await self._fallback.finish(request.claim, reply, self._ttl)
                    await self._fallback.claim_delivery(request.claim, self._ttl, BY_REPLY)
                return taken
        return await self._fallback.take(user, request)

    async def delivery_of(self, key: str) -> str | None:
        if self._health.up:
            try:
                shared = await self._primary.delivery_of(key)
                if shared is not None:
                    return shared
            except REDIS_FAILURES as exc:
                self._health.mark_down(exc)
        return await self._fallback.delivery_of(key)

    async def share_outage_records(self) -> None:
        """Copy the answer records made while Redis was away to Redis, now that it is back."""
        keys = list(self._unshared)
        for key in keys:
            record = self._fallback.export(key)
            if record is None:
                continue
            try:
                await self._primary.adopt(key, *record, self._ttl)
            except REDIS_FAILURES as exc:
                self._health.mark_down(exc)
                return  # the rest stay listed for the next recovery
            self._unshared.pop(key, None)
        if keys:
            log.info("Redis caught up with %d answer record(s) made during the outage", len(keys))

    async def wait_result(self, key: str, timeout: float) -> dict | None:
        if self._first_try_here.get(key):
            return await self._fallback.wait_result(key, timeout)
        local = asyncio.ensure_future(self._fallback.wait_result(key, timeout))
        if not self._health.up:
            return await local
        shared = asyncio.ensure_future(self._primary.wait_result(key, timeout))
        pending = {local, shared}
        fallback_result: dict | None = None
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=lambda t: t is not shared):  # Redis's answer first
                    if task is shared and task.exception() is not None:
                        exc = task.exception()
                        if isinstance(exc, REDIS_FAILURES):
                            self._health.mark_down(exc)
                            continue
                        raise exc
                    result = task.result()
                    if task is not shared and shared in pending and (result is DELIVERED or (
                            result is not None and EXPLANATION_FIELD not in result)):
                        fallback_result = result
                        continue  # the local copy was shrunk; Redis still has the full answer
                    if result is not None:
                        if task is shared and result.get("type") != "success":
                            # kept locally too, so the answer outlives an outage of Redis
                            await self._fallback.finish(key, result, self._ttl)
                        return result
            return fallback_result
        finally:
            for task in pending:
                task.cancel()


@dataclass
class State:
    backend: str
    conversations: Any
    answers: Any
    token_store: Any
    rate_limiter: Any
    cache_factory: Callable[[str, int, float], Any]
    signed_queries: Any = None
    health: RedisHealth | None = None
    closers: list[Callable[[], Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        """"memory", "up" or "down" (degraded)."""
        return "memory" if self.health is None else self.health.status

    async def start(self) -> None:
        if self.health is not None:
            await self.health.check()

    async def stop(self) -> None:
        for close in self.closers:
            result = close()
            if inspect.isawaitable(result):
                try:
                    await result
                except REDIS_FAILURES:
                    pass


def build_state(settings: Settings) -> State:
    conv = settings.conversation
    delivery = settings.delivery
    rate = settings.ratelimit
    memory = dict(
        conversations=MemoryConversationStore(conv.max_turns, conv.max_chars, conv.idle_seconds, conv.max_users),
        answers=MemoryAnswerStore(ttl=delivery.record_ttl, pending_ttl=delivery.pending_ttl),
        token_store=MemoryTokenStore(),
        rate_limiter=MemoryRateLimiter(rate.rate, rate.burst),
        signed_queries=MemorySignedQueryStore(remember_seconds(settings.wechat.timestamp_window)),
    )
    if settings.state.backend == "memory":
        return State("memory", cache_factory=lambda name, size, ttl: MemoryCache(name, size, ttl), **memory)

    from . import redis_store as rs

    client = rs.connect(settings.state.redis_url)
    prefix = settings.state.key_prefix
    health = RedisHealth(client)
    answers = rs.RedisAnswerStore(client, prefix)
    shared = dict(
        conversations=rs.RedisConversationStore(client, prefix, conv.max_turns, conv.max_chars, conv.idle_seconds),
        answers=answers,
        token_store=rs.RedisTokenStore(client, prefix),
        rate_limiter=rs.RedisRateLimiter(client, prefix, rate.rate, rate.burst),
        signed_queries=rs.RedisSignedQueryStore(client, prefix),
    )
    wrapped = {name: Failover(shared[name], memory[name], health) for name in shared}
    wrapped["answers"] = AnswerFailover(answers, memory["answers"], health, delivery.record_ttl)

    def cache_factory(name: str, size: int, ttl: float) -> Any:
        return Failover(rs.RedisCache(client, prefix, name, ttl, size), MemoryCache(name, size, ttl), health)

    return State("redis", cache_factory=cache_factory, health=health,
                 closers=[answers.notifier.stop, health.stop, client.aclose], **wrapped)

"""Answer records: every message answered exactly once across WeChat's three tries.

WeChat waits 5 s for each try; any answer within 5 s (``success`` too) ends the message, and only
an unanswered try is followed by another (three in all, ~5 s apart). So a retry joins the work
already in flight, and a try whose budget runs out is left unanswered on purpose, except the last.
The state behind this (tries, results, deliveries, pending answers) sits in an ``AnswerStore``,
in memory here or in Redis (core/state/redis_store.py) so that retries may land on any worker.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

from cachetools import TTLCache

from ..access.replies import record_without_explanation
from ..operations.logs import hash_user

log = logging.getLogger("skillbot.answers")


class AnswerStore(Protocol):
    async def begin(self, key: str, ttl: float) -> int:
        """Count a try of message ``key``; returns the try number (1 = this caller does the work)."""
    async def finish(self, key: str, payload: dict, ttl: float) -> None:
        """Store the result of ``key`` and wake everyone waiting for it."""
    async def wait_result(self, key: str, timeout: float) -> dict | None:
        """The result of ``key`` if it is (or becomes) ready within ``timeout`` seconds."""
    async def claim_delivery(self, key: str, ttl: float, how: str = "reply") -> bool:
        """True for exactly one caller per key: the one that may deliver the answer. ``how`` is
        ``"reply"`` (a try's HTTP reply, which a retry may carry again) or ``"later"`` (pushed or
        kept for the next message: never again)."""
    async def delivery_of(self, key: str) -> str | None:
        """How ``key``'s answer was delivered (``"reply"``/``"later"``), None if it was not."""
    async def push_pending(self, user: str, payload: dict, ttl: float) -> None:
        """Keep an answer for the user's next message."""
    async def pop_pending(self, user: str) -> list[dict]:
        """Take every answer kept for the user (oldest first)."""
    async def set_parts(self, user: str, parts: list[str], ttl: float) -> None:
        """Keep the remaining parts of a long answer for 「继续」."""
    async def pop_part(self, user: str) -> tuple[str | None, int]:
        """Take the next kept part; returns (part, how many remain after it)."""


class _Record:
    """A message in flight: its tries, its result once ready, and an event for waiters."""

    __slots__ = ("tries", "result", "done")

    def __init__(self) -> None:
        self.tries = 0
        self.result: dict | None = None
        self.done: asyncio.Event | None = None  # made only when someone has to wait


#: What a later try finds of a message whose answer was pushed or kept (it acknowledges with
#: ``success``); an answer delivered as a reply is kept whole, for retries of that try.
DELIVERED = {"type": "success"}

#: How an answer was delivered: as a try's reply (a retry gets it again), or pushed/kept for later.
BY_REPLY, BY_LATER = "reply", "later"


class MemoryAnswerStore:
    """One process's answer records (bounded, expiring).

    A delivered message shrinks to a tuple of its try count, how it was delivered and (delivered
    as a reply) the reply as JSON text, without its explanation: at thousands of messages a second, kept ``record_ttl``
    seconds, full answers and events would give the garbage collector millions of objects to walk;
    tuples of ints and strings it stops tracking.
    """

    def __init__(self, max_records: int = 100_000, ttl: float = 300) -> None:
        self._records: TTLCache[str, _Record | tuple] = TTLCache(maxsize=max_records, ttl=ttl)
        self._pending: TTLCache[str, list[dict]] = TTLCache(maxsize=max_records, ttl=86400)
        self._parts: TTLCache[str, list[str]] = TTLCache(maxsize=max_records, ttl=86400)

    def _record(self, key: str) -> _Record | tuple:
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = _Record()
        return record

    async def begin(self, key: str, ttl: float) -> int:
        record = self._record(key)
        if isinstance(record, tuple):
            self._records[key] = (record[0] + 1, *record[1:])
            return record[0] + 1
        record.tries += 1
        return record.tries

    async def finish(self, key: str, payload: dict, ttl: float) -> None:
        record = self._record(key)
        if isinstance(record, tuple):
            return  # already delivered (a duplicate finish)
        record.result = payload
        if record.done is not None:
            record.done.set()

    async def wait_result(self, key: str, timeout: float) -> dict | None:
        record = self._record(key)
        if isinstance(record, tuple):
            return json.loads(record[2]) if record[1] == BY_REPLY and record[2] else DELIVERED
        if record.result is None and timeout > 0:
            if record.done is None:
                record.done = asyncio.Event()
            try:
                await asyncio.wait_for(record.done.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        return record.result

    async def claim_delivery(self, key: str, ttl: float, how: str = BY_REPLY) -> bool:
        record = self._record(key)
        if isinstance(record, tuple):
            return False
        kept = ""
        if how == BY_REPLY and record.result:  # the reply itself, for a retry; not its explanation
            kept = json.dumps(record_without_explanation(record.result), ensure_ascii=False)
        self._records[key] = (record.tries, how, kept)
        if record.done is not None:
            record.done.set()  # wake any waiter: it will find the message delivered
        return True

    async def delivery_of(self, key: str) -> str | None:
        record = self._records.get(key)
        return record[1] if isinstance(record, tuple) else None

    def export(self, key: str) -> tuple[int, dict | None, str | None] | None:
        """(tries, result, how it was delivered) of a record, for copying it to Redis; None if unknown."""
        record = self._records.get(key)
        if record is None:
            return None
        if isinstance(record, tuple):
            result = json.loads(record[2]) if record[2] else None
            return record[0], result, record[1]
        return record.tries, record.result, None

    async def push_pending(self, user: str, payload: dict, ttl: float) -> None:
        self._pending[user] = self._pending.get(user, []) + [payload]

    async def pop_pending(self, user: str) -> list[dict]:
        return self._pending.pop(user, [])

    async def set_parts(self, user: str, parts: list[str], ttl: float) -> None:
        if parts:
            self._parts[user] = list(parts)
        else:
            self._parts.pop(user, None)

    async def pop_part(self, user: str) -> tuple[str | None, int]:
        parts = self._parts.get(user)
        if not parts:
            return None, 0
        part = parts.pop(0)
        if not parts:
            self._parts.pop(user, None)
        return part, len(parts)


#: What the webhook does with a try: answer with a payload, acknowledge (``success``), leave it
#: unanswered, or (the last try of a message still being worked on) say the answer will follow.
ANSWER, ACK, HOLD, PENDING = "answer", "ack", "hold", "pending"


@dataclass
class TryOutcome:
    action: str
    payload: dict | None = None
    try_number: int = 1
    waited: float = 0.0
    #: The answer a previous try already carried, sent again (its explanation is not re-recorded).
    repeated: bool = False


class DeliveryCoordinator:
    """Decides, for each try of a message, whether and what to answer (see module docstring).

    ``work`` is started once per message key (on its first try) and must return an answer record
    (``replies.Answer.to_record``). ``deliver_later(user, payload)`` is called for answers that missed
    every try (customer-service push, or keeping them for the user's next message).
    """

    def __init__(self, store: AnswerStore, mode: str, try_budget: float, record_ttl: float,
                 max_tries: int = 3) -> None:
        self.store = store
        self.mode = mode
        self.try_budget = try_budget
        self.record_ttl = record_ttl
        self.max_tries = max_tries
        self.tasks: set[asyncio.Task] = set()
        self.stats = {"first_try": 0, "retry": 0, "repeated": 0, "deferred": 0,
                      "duplicates_suppressed": 0, "held": 0, "acked": 0}

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _run(self, key: str, work: Callable[[], Awaitable[dict]]) -> None:
        payload = await work()
        await self.store.finish(key, payload, self.record_ttl)

    async def on_try(self, key: str, work: Callable[[], Awaitable[dict]],
                     deliver_later: Callable[[dict], Awaitable[None]],
                     connected: Callable[[], bool] = lambda: True) -> TryOutcome:
        """``connected()`` says whether WeChat still waits on this try: an answer is only claimed
        for a try that can still carry it, so one ready just after WeChat hung up is left for the
        next try (or, after the last, for the user's next message)."""
        started = time.monotonic()
        n = await self.store.begin(key, self.record_ttl)
        if n == 1:
            self._spawn(self._run(key, work))
        if self.mode == "customer_service":
            if n == 1:
                self._spawn(self._deliver_when_ready(key, deliver_later))
                self.stats["acked"] += 1
            else:
                self.stats["duplicates_suppressed"] += 1
            return TryOutcome(ACK, try_number=n)
        payload = await self.store.wait_result(key, self.try_budget)
        waited = time.monotonic() - started
        if payload is not None and not connected():
            self.stats["held"] += 1
            if n >= self.max_tries:
                self._spawn(self._deliver_when_ready(key, deliver_later))
            return TryOutcome(HOLD, try_number=n, waited=waited)
        if payload is not None:
            if await self.store.claim_delivery(key, self.record_ttl, BY_REPLY):
                self.stats["first_try" if n == 1 else "retry"] += 1
                return TryOutcome(ANSWER, payload, n, waited)
            # WeChat retries only a try whose reply it did not get: an answer delivered as a
            # reply is that reply again; one pushed or kept for the next message is not repeated.
            if payload.get("type") != "success" and await self.store.delivery_of(key) == BY_REPLY:
                self.stats["repeated"] += 1
                return TryOutcome(ANSWER, payload, n, waited, repeated=True)
            self.stats["duplicates_suppressed"] += 1
            return TryOutcome(ACK, try_number=n, waited=waited)
        if n < self.max_tries:
            self.stats["held"] += 1
            return TryOutcome(HOLD, try_number=n, waited=waited)
        # The last try: answer it now (the webhook sends the "still thinking" text) and keep the
        # real answer for later.
        self.stats["deferred"] += 1
        self._spawn(self._deliver_when_ready(key, deliver_later))
        return TryOutcome(PENDING, try_number=n, waited=waited)

    async def _deliver_when_ready(self, key: str, deliver_later: Callable[[dict], Awaitable[None]],
                                  timeout: float = 600) -> None:
        payload = await self.store.wait_result(key, timeout)
        if payload is None:
            log.warning("answer record %s (hashed) never finished; nothing to deliver", hash_user(key))
            return
        if await self.store.claim_delivery(key, self.record_ttl, BY_LATER):
            await deliver_later(payload)

    async def drain(self, grace: float = 10.0) -> None:
        """At shutdown: let work in flight finish for up to ``grace`` seconds, then cancel it."""
        if not self.tasks:
            return
        _done, pending = await asyncio.wait(list(self.tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("shutdown: cancelled %d answer(s) still in flight", len(pending))
            await asyncio.gather(*pending, return_exceptions=True)

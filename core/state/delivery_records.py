"""Answer records: every message answered exactly once across WeChat's three tries.

WeChat waits 5 s for each try; any answer within 5 s (``success`` too) ends the message, and only
an unanswered try is followed by another (three in all, ~5 s apart). So a retry joins the work
already in flight, and a try whose budget runs out is left unanswered on purpose, except the last.
The state behind this (tries, results, deliveries, and each user's queue of answers waiting to be
delivered: streamed answers as they are written, parts kept for 「继续」, answers that missed the
window) sits in an ``AnswerStore``, in memory here or in Redis (core/state/redis_store.py) so that
retries may land on any worker.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol

from ..access.replies import record_without_explanation
from ..access.textsplit import utf8_len
from ..access.wechat_xml import MAX_TEXT_BYTES
from ..operations.logs import hash_user
from .expiring import ExpiringDict

if TYPE_CHECKING:
    from ..settings import DeliverySettings

log = logging.getLogger("skillbot.answers")

#: Seconds a user's push count is kept: WeChat's customer-service window after their last message.
PUSH_WINDOW = 48 * 3600


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
    async def reply_of(self, key: str) -> dict | None:
        """The reply a try carried for ``key`` (None if it was not delivered as a reply)."""
    # ---- answers waiting for the user (streamed, kept for 「继续」 or the next message) ----
    async def waiting(self, user: str) -> bool:
        """Whether anything waits for the user in their queue."""
    async def enqueue(self, user: str, stream: str, pieces: list[str], ttl: float, *,
                      closed: bool, front: bool = False) -> bool:
        """Put answer ``stream`` in the user's queue (at the end, or ``front`` for text put back
        after a failed push) with its first ``pieces``; an open one is appended to by its producer.
        Returns whether something was waiting before it."""
    async def append(self, stream: str, pieces: list[str], ttl: float, *, close: bool = False) -> bool:
        """Add pieces to an open answer (none: a heartbeat) and, ``close``, end it. False when the
        answer is gone (ended as abandoned, or expired): its producer should stop."""
    async def wait_closed(self, stream: str, timeout: float) -> bool:
        """True once answer ``stream`` is ended (waits up to ``timeout`` seconds)."""
    async def take(self, user: str, request: TakeRequest) -> Taken:
        """Take the ready text at the head of the user's queue, in order, whole pieces up to
        ``request.max_bytes`` (see ``TakeRequest``); atomic, so every piece is taken once."""
    # ---- customer-service pushes: WeChat allows a few per user message (45047 after) ----
    async def pushes(self, user: str) -> int:
        """Customer-service messages pushed to the user since their last message (every worker's)."""
    async def reserve_pushes(self, user: str, count: int, limit: int) -> bool:
        """Count ``count`` more pushes to the user when that stays within ``limit``; atomic, so two
        workers never both take the last one. False (nothing counted) otherwise."""
    async def release_pushes(self, user: str, count: int) -> None:
        """Give back pushes reserved for a send that failed."""
    async def reset_pushes(self, user: str) -> None:
        """The user wrote: WeChat counts again."""


@dataclass(frozen=True)
class TakeRequest:
    """What one ``take`` may take and how.

    max_bytes: UTF-8 bytes of text at most (answers of different messages are joined by a blank
        line, counted); at least one piece is taken when one is ready.
    hint: added to the content when more remains (``delivery.continue_hint``).
    stale_after / lost_note: an open answer not heard from for ``stale_after`` seconds (its worker
        died) is ended with ``lost_note`` as its last piece.
    claim: a message key; when text is taken, its delivery is claimed as a try's reply (``SET NX``)
        and the content stored as its reply, so a retry of that try gets it again. Nothing is
        taken when the claim was made before (``Taken.claimed_before``).
    ttl: seconds the claim and the reply it stores are kept (``delivery.record_ttl``).
    now: the clock for the staleness check (0: the current time).
    """

    max_bytes: int
    hint: str
    stale_after: float
    lost_note: str
    ttl: float
    claim: str | None = None
    now: float = 0.0


@dataclass(frozen=True)
class Taken:
    """What a ``take`` got: ``text`` (may be empty); ``more``: something still waits (ready text or
    an answer being written); ``writing``: it stopped at an answer still being written;
    ``claimed_before``: the ``claim`` was already made, nothing was taken; ``content``: the text
    to send (with the request's hint when more waits)."""

    text: str = ""
    more: bool = False
    writing: bool = False
    claimed_before: bool = False
    content: str = ""


#: The result of a message whose answer is streamed into the user's queue (``waiting``: other
#: answers were queued before it).
STREAM = "stream"


def take_request(settings: DeliverySettings, claim: str | None = None, *,
                 max_bytes: int = MAX_TEXT_BYTES, hint: bool = True) -> TakeRequest:
    """How much of the user's queue one message may take: a WeChat text message's worth, with room
    for ``delivery.continue_hint`` when ``hint``."""
    hint_text = settings.continue_hint if hint else ""
    return TakeRequest(max_bytes - utf8_len(hint_text), hint_text, settings.stream_stale_after,
                       settings.stream_lost_note, settings.record_ttl, claim)


def is_stream(payload: dict | None) -> bool:
    return isinstance(payload, dict) and payload.get("type") == STREAM


def join_segments(segments: list[str]) -> str:
    """Answers of different messages, each trimmed, separated by a blank line."""
    return "\n\n".join(text for text in (s.strip() for s in segments) if text)


class _Stream:
    """One answer in a user's queue: its pieces, how many were taken, whether it is ended."""

    __slots__ = ("pieces", "taken", "closed", "beat", "event")

    def __init__(self, pieces: list[str], closed: bool, beat: float) -> None:
        self.pieces = list(pieces)
        self.taken = 0
        self.closed = closed
        self.beat = beat
        self.event: asyncio.Event | None = None


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds; whether it is set."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(timeout):  # in the caller's task (wait_for makes one in 3.11)
            await event.wait()
    except asyncio.TimeoutError:
        pass
    return event.is_set()


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

    def __init__(self, max_records: int = 100_000, ttl: float = 300, pending_ttl: float = 86400) -> None:
        self._records: ExpiringDict[str, _Record | tuple] = ExpiringDict(maxsize=max_records, ttl=ttl)
        #: Each user's queue of answers waiting to be delivered (stream names, oldest first).
        self._queues: ExpiringDict[str, list[str]] = ExpiringDict(maxsize=max_records, ttl=pending_ttl)
        self._streams: ExpiringDict[str, _Stream] = ExpiringDict(maxsize=max_records, ttl=pending_ttl)
        #: Customer-service messages pushed to each user since their last message.
        self._pushes: ExpiringDict[str, int] = ExpiringDict(maxsize=max_records, ttl=PUSH_WINDOW)

    def _record(self, key: str) -> _Record | tuple:
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = _Record()
        return record

    async def pushes(self, user: str) -> int:
        return self._pushes.get(user, 0)

    async def reserve_pushes(self, user: str, count: int, limit: int) -> bool:
        pushed = self._pushes.get(user, 0)
        if pushed + count > limit:
            return False
        self._pushes[user] = pushed + count
        return True

    async def release_pushes(self, user: str, count: int) -> None:
        left = self._pushes.get(user, 0) - count
        if left > 0:
            self._pushes[user] = left
        else:
            self._pushes.pop(user, None)

    async def reset_pushes(self, user: str) -> None:
        self._pushes.pop(user, None)

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
            await wait_event(record.done, timeout)
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

    async def reply_of(self, key: str) -> dict | None:
        record = self._records.get(key)
        if isinstance(record, tuple) and record[1] == BY_REPLY and record[2]:
            return json.loads(record[2])
        return None

    # ---- the users' queues ---------------------------------------------------------------------

    async def waiting(self, user: str) -> bool:
        return bool(self._queues.get(user))

    async def enqueue(self, user: str, stream: str, pieces: list[str], ttl: float, *,
                      closed: bool, front: bool = False) -> bool:
        queue = self._queues.get(user)
        if queue is None:
            queue = self._queues[user] = []
        before = bool(queue)
        queue.insert(0, stream) if front else queue.append(stream)
        self._streams[stream] = _Stream(pieces, closed, time.time())
        return before

    async def append(self, stream: str, pieces: list[str], ttl: float, *, close: bool = False) -> bool:
        found = self._streams.get(stream)
        if found is None or found.closed:
            return False
        found.pieces.extend(pieces)
        found.beat = time.time()
        if close:
            self._close(found)
        return True

    def _close(self, stream: _Stream) -> None:
        stream.closed = True
        if stream.event is not None:
            stream.event.set()

    async def wait_closed(self, stream: str, timeout: float) -> bool:
        found = self._streams.get(stream)
        if found is None or found.closed:
            return True
        if timeout > 0:
            if found.event is None:
                found.event = asyncio.Event()
            await wait_event(found.event, timeout)
        return found.closed

    async def take(self, user: str, request: TakeRequest) -> Taken:
        queue = self._queues.get(user) or []
        now = request.now or time.time()
        used, segments, writing, full = 0, [], False, False
        # (name, its stream, pieces taken, done with it): the stream object itself is kept, so the
        # update below never looks it up again (it could expire in between: a KeyError)
        plan: list[tuple[str, _Stream | None, int, bool]] = []
        for name in queue:
            stream = self._streams.get(name)
            if stream is None:
                plan.append((name, None, 0, True))
                continue
            if not stream.closed and now - stream.beat > request.stale_after:
                stream.pieces.append(request.lost_note)  # its producer vanished: end it
                self._close(stream)
            segment, took = "", 0
            for piece in stream.pieces[stream.taken:]:
                cost = len(piece.encode("utf-8", "surrogatepass")) + (2 if not segment and segments else 0)
                if used and used + cost > request.max_bytes:
                    full = True
                    break
                segment, used, took = segment + piece, used + cost, took + 1
            if took:
                segments.append(segment)
            done = stream.closed and stream.taken + took == len(stream.pieces)
            plan.append((name, stream, took, done))
            if full:
                break
            if not done:
                writing = True
                break
        text = join_segments(segments)
        if text and request.claim is not None:
            record = self._record(request.claim)
            if isinstance(record, tuple):
                return Taken(claimed_before=True)
        for name, taken_from, took, done in plan:
            if took and taken_from is not None:
                taken_from.taken += took
            if done:
                queue.remove(name)
                self._streams.pop(name, None)
        if not queue:
            self._queues.pop(user, None)
        more = bool(queue)
        taken = Taken(text, more, writing, content=text + request.hint if text and more else text)
        if text and request.claim is not None:
            reply = {"type": "text", "content": taken.content}
            record = self._record(request.claim)
            self._records[request.claim] = (record.tries, BY_REPLY, json.dumps(reply, ensure_ascii=False))
            if record.done is not None:
                record.done.set()
        return taken


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


def _finished(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a delivery task failed", exc_info=task.exception())


class DeliveryCoordinator:
    """Decides, for each try of a message, whether and what to answer (see module docstring).

    ``work`` is started once per message key (on its first try) and must return an answer record
    (``replies.Answer.to_record``). ``deliver_later(user, payload)`` is called for answers that missed
    every try (customer-service push, or keeping them for the user's next message).
    """

    def __init__(self, store: AnswerStore, mode: str, try_budget: float, record_ttl: float,
                 max_tries: int = 3, wechat_wait: float = 5.0) -> None:
        self.store = store
        self.mode = mode
        self.try_budget = try_budget
        #: How long WeChat waits for a try's reply: text is taken only for a try still inside it.
        self.wechat_wait = wechat_wait
        self.record_ttl = record_ttl
        self.max_tries = max_tries
        self.tasks: set[asyncio.Task] = set()
        self.stats = {"first_try": 0, "retry": 0, "repeated": 0, "deferred": 0,
                      "duplicates_suppressed": 0, "held": 0, "acked": 0}

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task:
        """Run ``coro`` as a task of its own, awaited at shutdown (``drain``); its exception is
        logged when it ends (a background task's would otherwise surface only at garbage collection)."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(_finished)
        return task

    async def _run(self, key: str, work: Callable[[], Awaitable[dict | None]]) -> None:
        payload = await work()
        if payload is not None:  # None: the work streamed its answer and stored its result itself
            await self.store.finish(key, payload, self.record_ttl)

    async def on_try(self, key: str, work: Callable[[], Awaitable[dict | None]],
                     deliver_later: Callable[[dict], Awaitable[None]],
                     connected: Callable[[], bool] = lambda: True,
                     take: Callable[[str], Awaitable[Taken]] | None = None,
                     wait_ready: Callable[[float], Awaitable[None]] | None = None) -> TryOutcome:
        """``connected()`` says whether WeChat still waits on this try: an answer is only claimed
        for a try that can still carry it, so one ready just after WeChat hung up is left for the
        next try (or, after the last, for the user's next message).

        A message whose result is ``STREAM`` (its answer goes to the user's queue as it is
        written) is answered with what ``take(key)`` takes from the queue (claiming the message's
        delivery) once ``wait_ready(timeout)`` returns: when enough is ready, the answer ended or
        the try's budget ran out (without it: the answer's end or the budget). A try that finds
        answers waiting from earlier messages does not wait for its own, and a retry of a try
        that carried part of the answer gets that reply again at once."""
        started = time.monotonic()
        n = await self.store.begin(key, self.record_ttl)
        if n == 1:
            self.spawn(self._run(key, work))
        if self.mode == "customer_service":
            if n == 1:
                self.spawn(self._deliver_when_ready(key, deliver_later))
                self.stats["acked"] += 1
            else:
                self.stats["duplicates_suppressed"] += 1
            return TryOutcome(ACK, try_number=n)
        payload = await self.store.wait_result(key, self.try_budget)
        if is_stream(payload) and take is not None:
            return await self._stream_try(key, n, payload, started, connected, take,  # type: ignore[arg-type]
                                          wait_ready)
        waited = time.monotonic() - started
        if payload is not None and not connected():
            if (n >= self.max_tries and payload.get("type") != "success"
                    and await self.store.delivery_of(key) == BY_REPLY):
                # An earlier try's reply never reached WeChat (it tried again) and no try follows
                # this one: answered anyway, the webhook finds it too late and keeps its text.
                self.stats["repeated"] += 1
                return TryOutcome(ANSWER, payload, n, waited, repeated=True)
            self.stats["held"] += 1
            if n >= self.max_tries:
                self.spawn(self._deliver_when_ready(key, deliver_later))
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
        self.spawn(self._deliver_when_ready(key, deliver_later))
        return TryOutcome(PENDING, try_number=n, waited=waited)

    async def _stream_try(self, key: str, n: int, payload: dict, started: float,
                          connected: Callable[[], bool],
                          take: Callable[[str], Awaitable[Taken]],
                          wait_ready: Callable[[float], Awaitable[None]] | None = None) -> TryOutcome:
        """A try of a message whose answer is being written into the user's queue."""
        if n > 1 and await self.store.delivery_of(key) is not None:
            # A retry of a try that carried (or kept) part of the answer: the same reply again at
            # once, not at the budget's end where it would risk WeChat's timeout once more.
            return await self._stream_retry(key, n, time.monotonic() - started)
        if not payload.get("waiting"):
            left = max(0.0, self.try_budget - (time.monotonic() - started))
            if wait_ready is not None:
                await wait_ready(left)
            else:
                await self.store.wait_closed(key, left)
        waited = time.monotonic() - started
        if not connected() or waited >= self.wechat_wait:  # WeChat no longer waits for this try
            self.stats["held"] += 1
            if n >= self.max_tries:  # the answer stays queued for the next message, not a stray try
                await self.store.claim_delivery(key, self.record_ttl, BY_LATER)
            return TryOutcome(HOLD, try_number=n, waited=waited)
        taken = await take(key)
        if taken.claimed_before:
            return await self._stream_retry(key, n, waited)
        if taken.text:
            self.stats["first_try" if n == 1 else "retry"] += 1
            return TryOutcome(ANSWER, {"type": "text", "content": taken.content}, n, waited)
        if n < self.max_tries:
            self.stats["held"] += 1
            return TryOutcome(HOLD, try_number=n, waited=waited)
        # The last try and no sentence yet: the "still thinking" text; the answer stays queued for
        # the next message (a stray later try of this one gets ``success``).
        self.stats["deferred"] += 1
        await self.store.claim_delivery(key, self.record_ttl, BY_LATER)
        return TryOutcome(PENDING, try_number=n, waited=waited)

    async def _stream_retry(self, key: str, n: int, waited: float) -> TryOutcome:
        """A retry of a try that carried part of the answer (WeChat did not get that reply): the
        same reply again; ``success`` when the answer was kept for the next message instead."""
        reply = await self.store.reply_of(key)
        if reply is not None:
            self.stats["repeated"] += 1
            return TryOutcome(ANSWER, reply, n, waited, repeated=True)
        self.stats["duplicates_suppressed"] += 1
        return TryOutcome(ACK, try_number=n, waited=waited)

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

"""Delivery: getting each message's answer to the user once, within or after WeChat's window.

The webhook (core/access/webhook.py) hands every verified try here. Per try, the answer records'
coordinator (core/state/delivery_records.py) decides to answer, hold or acknowledge; the work runs
once per message (the bot's pipeline). A streamed answer (``StreamedReply``), or any text answer
while others wait for the user, goes into the user's queue piece by piece as it is written: a try
answers with what is ready (older answers first), 「继续」 and the next message take the rest, and
in customer-service mode paragraphs are pushed as they end, with the typing indicator on. A
passive reply too long for one message is cut, the rest queued for 「继续」; an answer that
missed every try is pushed through the customer-service API or queued for the next message.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable

from ..operations.logs import hash_user
from ..processing.context import MessageContext
from ..settings import Settings
from ..settings_schema import ConfigError
from ..state.expiring import ExpiringDict
from ..state.delivery_records import STREAM, DeliveryCoordinator, Taken, TryOutcome, is_stream, take_request
from .messages import Message
from .replies import PIPELINE, Answer, Reply, StreamedReply, TextReply, reply_text
from .textsplit import split_for_wechat, utf8_len
from .wechat_api import AccessTokenManager, CustomerServiceSender, app_secret_from_env
from .wechat_xml import MAX_TEXT_BYTES

if TYPE_CHECKING:
    from ..appkeys import BotHolder
    from ..operations.metrics import Metrics
    from ..processing.bot import Bot

# The message's log line keeps the logger name operators already filter on.
log = logging.getLogger("skillbot.gateway")


def check_customer_service(settings: Settings) -> str:
    """The AppSecret for ``delivery.mode = "customer_service"``; stops start-up when it is missing."""
    secret = app_secret_from_env(settings.wechat.app_secret_env)
    if not settings.wechat.app_id or not secret:
        raise ConfigError("delivery.mode: customer_service needs wechat.app_id and the AppSecret in "
                          f"the environment variable named by wechat.app_secret_env ({settings.wechat.app_secret_env})")
    return secret


def customer_service_sender(bot: Bot) -> CustomerServiceSender:
    """The 客服 sender used when an answer misses WeChat's window (on the bot's HTTP session)."""
    settings = bot.settings
    secret = check_customer_service(settings)
    tokens = AccessTokenManager(bot.http, settings.delivery.api_base, settings.wechat.app_id, secret,
                                settings.delivery.token_endpoint, store=bot.token_store)
    return CustomerServiceSender(bot.http, tokens)


def ends_paragraph(piece: str) -> bool:
    """A piece followed by a blank line ends its paragraph."""
    return "\n\n" in piece[len(piece.rstrip()):]


class _Progress:
    """A streamed answer being written in this process: ``event`` is set (for the pusher) when
    pieces were added or it ended; ``ready`` once it has text or ended (``ready_at``), ``end`` when
    it ended (for the tries waiting to reply)."""

    __slots__ = ("event", "ended", "ready", "ready_at", "end", "stored_bytes")

    def __init__(self) -> None:
        self.stored_bytes = 0  # UTF-8 bytes of the answer stored so far
        self.event = asyncio.Event()
        self.ended = False
        self.ready = asyncio.Event()
        self.ready_at = 0.0
        self.end = asyncio.Event()

    def signal(self, ended: bool = False, stored: bool = True) -> None:
        self.ended = self.ended or ended
        self.event.set()
        if (stored or ended) and not self.ready.is_set():
            self.ready_at = time.monotonic()
            self.ready.set()
        if ended:
            self.end.set()


class Delivery:
    """Answers each message once across its tries, and delivers what missed the window.

    Reads the running bot through ``bots`` (a settings reload swaps it there); the delivery
    settings (``[delivery]``) are restart-only, so they are read once.
    """

    def __init__(self, bots: BotHolder, metrics: Metrics) -> None:
        self.bots = bots
        self.metrics = metrics
        settings = bots.bot.settings
        self.settings = settings.delivery
        self.answers = bots.bot.state.answers
        self.coordinator = DeliveryCoordinator(self.answers, self.settings.mode,
                                               self.settings.try_budget, self.settings.record_ttl,
                                               wechat_wait=self.settings.wechat_wait)
        #: Recent explanations by message key, for the simulators (bounded).
        self.explanations: ExpiringDict[str, dict] = ExpiringDict(maxsize=2048, ttl=600)
        self._push: tuple[Any, CustomerServiceSender] | None = None
        #: One push at a time per user, so parts never overtake each other.
        self._push_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        #: Streamed answers being written here, by message key (for the pusher in this process).
        self._progress: dict[str, _Progress] = {}
        self._names = itertools.count(1)

    async def on_try(self, message: Message, log_id: str, connected: Callable[[], bool]) -> TryOutcome:
        """What to do with one try of ``message`` (see DeliveryCoordinator.on_try)."""
        if self.settings.mode == "customer_service" and not message.is_event:
            # The user wrote: WeChat counts again. Counted in the answer store (every worker's
            # pushes: WeChat refuses a 6th, 45047).
            await self.answers.reset_pushes(message.from_user)
        return await self.coordinator.on_try(
            message.dedup_key, lambda: self.work(message, log_id),
            lambda record: self.deliver_later(message, record), connected=connected,
            take=lambda claim: self.take(message.from_user, claim),
            wait_ready=lambda timeout: self.wait_ready(message.dedup_key, timeout))

    async def wait_ready(self, key: str, timeout: float) -> None:
        """Until a try of streamed answer ``key`` should reply (at most ``timeout`` seconds):
        ``stream_reply_after`` seconds after its first sentence was stored, or when it ended. An
        answer written by another worker has no progress here: its end or the timeout."""
        progress = self._progress.get(key)
        if progress is None:
            await self.answers.wait_closed(key, timeout)
            return
        deadline = time.monotonic() + timeout
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(progress.ready.wait(), timeout)
        pause = min(progress.ready_at + self.settings.stream_reply_after, deadline) - time.monotonic()
        if progress.ready.is_set() and not progress.ended and pause > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(progress.end.wait(), pause)

    async def take(self, user: str, claim: str | None = None, *, max_bytes: int = MAX_TEXT_BYTES,
                   hint: bool = True) -> Taken:
        """What is ready at the head of the user's queue (see AnswerStore.take)."""
        return await self.answers.take(user, take_request(self.settings, claim, max_bytes=max_bytes, hint=hint))

    # ---- the work (once per message) ----------------------------------------------------------

    async def work(self, message: Message, log_id: str) -> dict | None:
        """The message's answer record; None for an answer that went to the user's queue (the
        message's result is then ``STREAM``, stored before the first piece)."""
        bot = self.bots.bot
        ctx = MessageContext(bot=bot, message=message, id=log_id)
        answer = await bot.answer(message, ctx, stream=True)
        reply = answer.reply
        if answer.stage == PIPELINE and not message.is_event and (
                isinstance(reply, StreamedReply)
                or (isinstance(reply, TextReply) and await self.answers.waiting(message.from_user))):
            await self.stream(message, ctx, answer)
            return None
        if isinstance(reply, StreamedReply):  # an event's streamed answer: sent whole
            answer.reply = await reply.collect()
            await ctx.bot.finish_streamed(ctx, answer.reply)
            answer.explanation = ctx.bot.explain(ctx)
        self.message_done(ctx, answer)
        return answer.to_record()

    async def stream(self, message: Message, ctx: MessageContext, answer: Answer) -> None:
        """Put the answer in the user's queue as it is written: each sentence (in customer-service
        mode each paragraph) in pieces of at most one message, then the answer's end."""
        user, key, settings = message.from_user, message.dedup_key, self.settings
        limit = MAX_TEXT_BYTES - utf8_len(settings.continue_hint)
        reply = answer.reply
        # The tries (and in customer-service mode the pusher) in this process follow the writing.
        progress = self._progress[key] = _Progress()
        by_paragraph = settings.mode == "customer_service"
        written = isinstance(reply, TextReply)
        pieces = split_for_wechat(reply.content, limit) if isinstance(reply, TextReply) else []
        try:
            waiting = await self.answers.enqueue(user, key, pieces, settings.pending_ttl, closed=written)
            await self.answers.finish(key, {"type": STREAM, "waiting": waiting}, settings.record_ttl)
            if isinstance(reply, StreamedReply):
                answer.reply = await self._write(key, reply, limit, progress, by_paragraph)
        except Exception:  # the queue's store failed: what was stored stays, the rest is lost
            log.exception("msg=%s: streaming the answer into the user's queue failed", ctx.id)
        finally:
            progress.signal(ended=True)
            if not by_paragraph:  # (the pusher takes it in customer-service mode)
                self._progress.pop(key, None)
        if isinstance(answer.reply, TextReply) and isinstance(reply, StreamedReply):
            await ctx.bot.finish_streamed(ctx, answer.reply)
            answer.explanation = ctx.bot.explain(ctx)
        self.message_done(ctx, answer)
        # A try may have carried the first sentences already: keep its number and timings.
        carried = self.explanations.get(key) or {}
        self.explanations[key] = answer.explained_try(carried.get("try"), carried.get("timings_ms", {}))

    async def _write(self, key: str, reply: StreamedReply, limit: int, progress: _Progress,
                     by_paragraph: bool) -> TextReply:
        """Store the pieces of ``reply`` as they come (``by_paragraph``: whole paragraphs, for the
        pusher), with a heartbeat while the model is quiet."""
        ttl = self.settings.pending_ttl
        texts: list[str] = []
        buffer = ""
        alive = True
        heartbeat = asyncio.ensure_future(self._heartbeat(key))
        try:
            async with contextlib.aclosing(reply.pieces) as pieces:  # type: ignore[type-var]
                async for piece in pieces:
                    texts.append(piece)
                    buffer += piece
                    if not by_paragraph or ends_paragraph(piece) or utf8_len(buffer) >= limit:
                        parts = split_for_wechat(buffer, limit)
                        alive = await self.answers.append(key, parts, ttl)
                        buffer = ""
                        progress.stored_bytes += sum(utf8_len(part) for part in parts)
                        progress.signal(stored=bool(parts))
                        if not alive:
                            log.warning("a streamed answer was ended as abandoned while still written")
                            break
            if alive:
                await self.answers.append(key, split_for_wechat(buffer, limit), ttl, close=True)
        finally:
            heartbeat.cancel()
        return TextReply("".join(texts).strip(), plugin=reply.plugin, intent=reply.intent, record=reply.record)

    async def _heartbeat(self, key: str) -> None:
        """Tell the other workers this answer's producer is alive while the model is quiet."""
        interval = self.settings.stream_stale_after / 3
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self.answers.append(key, [], self.settings.pending_ttl):
                    return
            except Exception:
                log.warning("heartbeat of a streamed answer failed", exc_info=True)

    def message_done(self, ctx: MessageContext, answer: Answer) -> None:
        """Metrics and the message's log line: id, hashed user, intent, plugin, status, time."""
        try:
            status = self.metrics.message_done(ctx, answer)
            user, total = hash_user(ctx.user), round(ctx.elapsed_ms, 1)
            intent, plugin = answer.intent or "-", answer.plugin or "-"
            log.info("msg=%s user=%s type=%s intent=%s plugin=%s status=%s total_ms=%.1f", ctx.id, user,
                     ctx.message.kind, intent, plugin, status, total,
                     extra={"msg_id": ctx.id, "user": user, "intent": intent, "plugin": plugin,
                            "status": status, "total_ms": total})
        except Exception:  # observing must never cost an answer
            log.exception("msg=%s: recording metrics failed", ctx.id, extra={"msg_id": ctx.id})

    # ---- delivering -----------------------------------------------------------------------------

    async def passive_reply(self, message: Message, answer: Answer, repeated: bool = False) -> Reply:
        """The reply a try carries: a text over WeChat's limit is cut, the rest kept for 「继续」
        (once: a ``repeated`` reply's rest was kept by the try that carried it first)."""
        reply = answer.reply
        if isinstance(reply, TextReply) and utf8_len(reply.content) > MAX_TEXT_BYTES:
            hint = self.settings.continue_hint
            parts = split_for_wechat(reply.content, MAX_TEXT_BYTES - utf8_len(hint))
            if not repeated:
                await self.answers.enqueue(message.from_user, f"rest:{message.dedup_key}", parts[1:],
                                           self.settings.pending_ttl, closed=True)
            reply = TextReply(parts[0] + hint, plugin=reply.plugin, intent=reply.intent)
        return reply

    async def keep_missed(self, message: Message, reply: Reply) -> None:
        """The last try's reply reached WeChat too late (the user saw nothing): its text goes back
        to the head of the user's queue, for 「继续」 and their next message, so nothing taken for
        it is lost (WeChat sends no further try that could carry it again)."""
        text = reply_text(reply).removesuffix(self.settings.continue_hint).strip()
        if not text or text in (self.settings.pending_reply, self.settings.continue_wait):
            return
        limit = MAX_TEXT_BYTES - utf8_len(self.settings.continue_hint)
        await self.answers.enqueue(message.from_user, f"missed:{message.dedup_key}:{next(self._names)}",
                                   split_for_wechat(text, limit), self.settings.pending_ttl,
                                   closed=True, front=True)
        log.info("key=%s: the last try's reply came after WeChat's wait; its text is kept for the "
                 "user's next message", message.log_key)

    def pending_reply(self) -> Reply:
        """What WeChat's last try gets while the answer is still being worked on."""
        return TextReply(self.settings.pending_reply, plugin="core", intent="pending")

    def push_sender(self) -> CustomerServiceSender | None:
        """The customer-service sender (``delivery.mode = "customer_service"``), on the running
        bot's HTTP session: made again after a settings reload replaced the bot."""
        if self.settings.mode != "customer_service":
            return None
        bot = self.bots.bot
        if self._push is None or self._push[0] is not bot:
            self._push = (bot, customer_service_sender(bot))
        return self._push[1]

    def _lock(self, user: str) -> asyncio.Lock:
        lock = self._push_locks.get(user)
        if lock is None:
            lock = self._push_locks[user] = asyncio.Lock()
        return lock

    async def deliver_later(self, message: Message, record: dict) -> None:
        """An answer that missed every passive try (or any, in customer-service mode): push it, or
        keep it in the user's queue for 「继续」 and the next message."""
        sender = self.push_sender()
        user = message.from_user
        if is_stream(record):  # already in the queue
            if sender is not None:
                await self.push_queue(message, sender)
            return
        reply = Answer.from_record(record).reply
        if reply.reply_type == "success":
            return
        if sender is not None:
            parts = sender.parts_of(reply)
            async with self._lock(user):
                if await self.answers.reserve_pushes(user, parts, self.settings.push_limit):
                    if await sender.send(user, reply):
                        return
                    await self.answers.release_pushes(user, parts)
        text = reply_text(reply)
        if text:
            limit = MAX_TEXT_BYTES - utf8_len(self.settings.continue_hint)
            await self.answers.enqueue(user, f"kept:{message.dedup_key}", split_for_wechat(text, limit),
                                       self.settings.pending_ttl, closed=True)

    async def push_queue(self, message: Message, sender: CustomerServiceSender) -> None:
        """Customer-service mode: push the user's queue as the answer is written (the typing
        indicator on meanwhile), at most ``push_limit`` messages since the user's last message.
        The answer's first paragraph is pushed as soon as it ends; later ones are gathered
        (``push_gather`` seconds after the previous push, or as soon as a full message is ready,
        or at the end), so WeChat's few messages carry more of a long answer. The last message
        allowed waits for the end and carries the continuation hint if more remains. A refused
        push puts its text back at the head of the queue: the rest is delivered passively
        (「继续」, the next message)."""
        user, key = message.from_user, message.dedup_key
        progress = self._progress.pop(key, None)
        typing = asyncio.ensure_future(self._typing(sender, user)) if progress and not progress.ended else None
        gather, full = self.settings.push_gather, MAX_TEXT_BYTES - utf8_len(self.settings.continue_hint)
        pushed_bytes, last_push = 0, None  # of this answer, by this loop
        try:
            while True:
                if progress is not None and not progress.ended:
                    wait = self.settings.stream_stale_after
                    if (last_push is not None and gather and progress.stored_bytes > pushed_bytes
                            and await self.answers.pushes(user) < self.settings.push_limit - 1):
                        # text waits for the gathering's end (the last push allowed waits for the end)
                        wait = max(min(wait, last_push + gather - time.monotonic()), 0.01)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(progress.event.wait(), wait)
                    progress.event.clear()
                ended = progress is None or progress.ended
                count = await self.answers.pushes(user)
                if count >= self.settings.push_limit:
                    return
                last = count == self.settings.push_limit - 1
                if last and not ended:
                    continue  # the last message WeChat allows carries all that fits, at the end
                if (not ended and last_push is not None and progress is not None
                        and time.monotonic() - last_push < gather and progress.stored_bytes - pushed_bytes < full):
                    continue  # gathering paragraphs for the next push
                async with self._lock(user):
                    if not await self.answers.reserve_pushes(user, 1, self.settings.push_limit):
                        return  # another worker pushed WeChat's last one: the rest waits for 「继续」
                    taken = await self.take(user, max_bytes=MAX_TEXT_BYTES, hint=last)
                    if not taken.text:
                        await self.answers.release_pushes(user, 1)
                        if ended:
                            return
                        continue
                    if not await sender.send(user, TextReply(taken.content)):
                        await self.answers.release_pushes(user, 1)
                        await self.answers.enqueue(user, f"back:{key}:{next(self._names)}", [taken.text],
                                                   self.settings.pending_ttl, closed=True, front=True)
                        return
                    pushed_bytes = min(pushed_bytes + utf8_len(taken.text), progress.stored_bytes) \
                        if progress is not None else 0
                    last_push = time.monotonic()
                if ended and not taken.more:
                    return
                if taken.more and progress is not None:
                    progress.event.set()  # more may be ready already
        finally:
            if typing is not None:
                typing.cancel()
                await asyncio.gather(typing, return_exceptions=True)
                await sender.typing(user, False)

    async def _typing(self, sender: CustomerServiceSender, user: str) -> None:
        """The typing indicator, refreshed before WeChat's ~15 s run out, until cancelled."""
        while True:
            await sender.typing(user, True)
            await asyncio.sleep(self.settings.typing_refresh)

    # ---- explanations -----------------------------------------------------------------------------

    def remember_explanation(self, key: str, answer: Answer, try_number: int,
                             timings_ms: dict[str, float]) -> None:
        known = self.explanations.get(key)
        if not answer.explanation and known:  # part of a streamed answer whose end came first
            answer = Answer(answer.reply, known)
        self.explanations[key] = answer.explained_try(try_number, timings_ms)

    async def explanation_of(self, key: str) -> dict[str, Any] | None:
        """This process's explanation of a message, else the one kept with its answer record
        (with ``--workers`` and Redis the message may have been answered by another worker)."""
        found = self.explanations.get(key)
        if found is None:
            record = await self.answers.wait_result(key, 0)
            if isinstance(record, dict) and not is_stream(record) and record.get("type") != "success":
                answer = Answer.from_record(record)
                found = answer.explained_try(None, {}) if answer.explanation else None
        return found

    async def drain(self) -> None:
        await self.coordinator.drain()

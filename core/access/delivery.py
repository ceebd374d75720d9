"""Delivery: getting each message's answer to the user once, within or after WeChat's window.

The webhook (core/access/webhook.py) hands every verified try here. Per try, the answer records'
coordinator (core/state/delivery_records.py) decides to answer, hold or acknowledge; the work runs
once per message (answers kept from earlier messages first, then the bot's pipeline); a passive
reply too long for one message is cut into parts kept for 「继续」; an answer that missed every
try is pushed through the customer-service API or kept for the user's next message.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

from cachetools import TTLCache

from ..operations.logs import hash_user
from ..processing.context import MessageContext
from ..settings import Settings
from ..settings_schema import ConfigError
from ..state.delivery_records import DeliveryCoordinator, TryOutcome
from .messages import Message
from .replies import PIPELINE, Answer, Reply, TextReply
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


def merge_pending(pending: list[Reply], reply: Reply) -> Reply:
    """Put answers kept from earlier messages before this one's answer (text only)."""
    texts = [r.content for r in pending if isinstance(r, TextReply)]
    if isinstance(reply, TextReply):
        texts.append(reply.content)
        return TextReply("\n\n".join(texts), plugin=reply.plugin, intent=reply.intent)
    if texts:
        return TextReply("\n\n".join(texts), plugin="core", intent="pending")
    return reply


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
                                               self.settings.try_budget, self.settings.record_ttl)
        #: Recent explanations by message key, for the simulators (bounded).
        self.explanations: TTLCache[str, dict] = TTLCache(maxsize=2048, ttl=600)
        self._push: tuple[Any, CustomerServiceSender] | None = None

    async def on_try(self, message: Message, log_id: str, connected: Callable[[], bool]) -> TryOutcome:
        """What to do with one try of ``message`` (see DeliveryCoordinator.on_try)."""
        return await self.coordinator.on_try(
            message.dedup_key, lambda: self.work(message, log_id),
            lambda record: self.deliver_later(message, Answer.from_record(record)), connected=connected)

    # ---- the work (once per message) ----------------------------------------------------------

    async def work(self, message: Message, log_id: str) -> dict:
        """The message's answer record: the bot's answer, after any answers kept for the user."""
        bot = self.bots.bot
        ctx = MessageContext(bot=bot, message=message, id=log_id)
        answer = await bot.answer(message, ctx)
        if answer.stage == PIPELINE and not message.is_event:
            pending = [Answer.from_record(p).reply for p in await self.answers.pop_pending(message.from_user)]
            if pending:
                answer.reply = merge_pending(pending, answer.reply)
        self.message_done(ctx, answer)
        return answer.to_record()

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

    async def passive_reply(self, message: Message, answer: Answer) -> Reply:
        """The reply a try carries: a text over WeChat's limit is cut, the rest kept for 「继续」."""
        reply = answer.reply
        if isinstance(reply, TextReply) and utf8_len(reply.content) > MAX_TEXT_BYTES:
            hint = self.settings.continue_hint
            parts = split_for_wechat(reply.content, MAX_TEXT_BYTES - utf8_len(hint))
            await self.answers.set_parts(message.from_user, parts[1:], self.settings.pending_ttl)
            reply = TextReply(parts[0] + hint, plugin=reply.plugin, intent=reply.intent)
        return reply

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

    async def deliver_later(self, message: Message, answer: Answer) -> None:
        """An answer that missed every passive try: push it, or keep it for the next message."""
        sender = self.push_sender()
        if sender is not None and await sender.send(message.from_user, answer.reply):
            return
        if answer.reply.reply_type == "success":
            return
        await self.answers.push_pending(message.from_user, answer.to_record(explained=False),
                                        self.settings.pending_ttl)

    # ---- explanations -----------------------------------------------------------------------------

    def remember_explanation(self, key: str, answer: Answer, try_number: int,
                             timings_ms: dict[str, float]) -> None:
        self.explanations[key] = answer.explained_try(try_number, timings_ms)

    async def explanation_of(self, key: str) -> dict[str, Any] | None:
        """This process's explanation of a message, else the one kept with its answer record
        (with ``--workers`` and Redis the message may have been answered by another worker)."""
        found = self.explanations.get(key)
        if found is None:
            record = await self.answers.wait_result(key, 0)
            if isinstance(record, dict):
                answer = Answer.from_record(record)
                found = answer.explained_try(None, {}) if answer.explanation else None
        return found

    async def drain(self) -> None:
        await self.coordinator.drain()

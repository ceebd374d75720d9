"""The WeChat webhook: signature and replay checks, decryption, parsing, delivery and rendering.

Every failure maps to a clear status (403 signature/replay, 400 bad XML or ciphertext, 413 too
large, 405 method) with its reason logged; a plugin failure never reaches here as a 500.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from aiohttp import web
from cachetools import TTLCache

from ..operations.metrics import Metrics, hash_user, kind_label
from ..processing.bot import Bot
from ..processing.context import MessageContext, new_message_id
from ..state.delivery_records import ANSWER, HOLD, PENDING, DeliveryCoordinator
from .crypto import CryptoError, MessageCrypto, verify_signature
from .messages import Message, MessageFieldError, build_message
from .replay_guard import message_digest, remember_seconds, signed_query_key
from .replies import Reply, SuccessReply, TextReply, reply_from_dict, reply_to_dict
from .textsplit import split_for_wechat, utf8_len
from .wechat_xml import MAX_TEXT_BYTES, ReplyRenderer, XMLRejected, parse_xml

log = logging.getLogger("skillbot.gateway")


class Rejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Gateway:
    def __init__(self, bot: Bot, answer_store: Any | None = None) -> None:
        self.bot = bot
        settings = bot.settings
        self.wechat = settings.wechat
        self.delivery = settings.delivery
        self.token = settings.wechat.resolved_token()
        self.crypto: MessageCrypto | None = None
        if settings.wechat.resolved_aes_key():
            self.crypto = MessageCrypto(self.token, settings.wechat.resolved_aes_key(),
                                        settings.wechat.app_id)
        self.renderer = ReplyRenderer(
            truncation_marker=settings.pipeline.truncation_marker,
            template_dirs=[settings.resolve_path(settings.pipeline.templates_dir) / "reply"])
        self.answers = answer_store or bot.state.answers
        self.coordinator = DeliveryCoordinator(self.answers, self.delivery.mode,
                                               self.delivery.try_budget, self.delivery.record_ttl)
        #: Sends answers through the customer-service API (set when that mode is configured).
        self.push_sender: Any = None
        #: Recent routing explanations by message key, for the simulators (bounded).
        self.explanations: TTLCache[str, dict] = TTLCache(maxsize=2048, ttl=600)
        self.counters: dict[str, int] = {}
        self.metrics = Metrics()
        self.metrics.gateway = self

    def count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    # ---- checks -------------------------------------------------------------------------------

    def check_signature(self, query: Any) -> None:
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        if not verify_signature(query.get("signature"), self.token, timestamp, nonce):
            raise Rejected(403, "bad signature")
        window = self.wechat.timestamp_window
        try:
            skew = abs(time.time() - int(timestamp))
        except ValueError:
            raise Rejected(403, "timestamp is not a number") from None
        if window > 0 and skew > window:
            raise Rejected(403, f"stale timestamp (skew {skew:.0f}s > {window}s): possible replay")

    async def check_replay(self, query: Any, fields: dict[str, Any]) -> None:
        """A signed query already seen with another message is a replay (core/access/replay_guard.py)."""
        digest = message_digest(fields)
        kept = await self.bot.state.signed_queries.first_message(
            signed_query_key(query), digest, remember_seconds(self.wechat.timestamp_window))
        if kept != digest:
            raise Rejected(403, "signed query already used for another message: replay")

    def open_body(self, query: Any, body: bytes) -> tuple[dict[str, Any], bool]:
        """Parse (and decrypt) the body; returns (fields, was_encrypted)."""
        try:
            outer = parse_xml(body)
        except XMLRejected as exc:
            raise Rejected(400, str(exc)) from None
        encrypted = query.get("encrypt_type", "raw").lower() == "aes"
        if not encrypted:
            if self.wechat.mode == "safe":
                raise Rejected(400, "plaintext message refused in safe mode")
            return outer, False
        if self.crypto is None:
            raise Rejected(400, "encrypted message but no encoding_aes_key configured")
        encrypt = outer.get("Encrypt")
        if not isinstance(encrypt, str) or not encrypt:
            raise Rejected(400, "encrypted message without <Encrypt>")
        if not verify_signature(query.get("msg_signature"), self.token, query.get("timestamp", ""),
                                query.get("nonce", ""), encrypt):
            raise Rejected(403, "bad msg_signature")
        try:
            inner = self.crypto.decrypt(encrypt)
        except CryptoError as exc:
            raise Rejected(400, f"cannot decrypt ({exc.code}: {exc.reason})") from None
        try:
            return parse_xml(inner.encode("utf-8")), True
        except XMLRejected as exc:
            raise Rejected(400, f"decrypted body: {exc}") from None

    # ---- HTTP handlers ------------------------------------------------------------------------

    async def handle_get(self, request: web.Request) -> web.Response:
        try:
            self.check_signature(request.query)
        except Rejected as exc:
            return self.reject(request, exc)
        return web.Response(text=request.query.get("echostr", ""), content_type="text/plain")

    async def handle_post(self, request: web.Request) -> web.StreamResponse:
        log_id = new_message_id()
        started = time.perf_counter()
        timings: dict[str, float] = {}
        try:
            body = await read_whole_body(request, self.bot.settings.server.max_body_bytes)
            t = time.perf_counter()
            self.check_signature(request.query)
            timings["verify"] = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            fields, encrypted = self.open_body(request.query, body)
            await self.check_replay(request.query, fields)
            try:
                message = build_message(fields)
            except MessageFieldError as exc:
                raise Rejected(400, f"invalid message: {exc}") from None
            timings["parse"] = (time.perf_counter() - t) * 1000
        except Rejected as exc:
            return self.reject(request, exc, log_id)
        self.count(f"messages_{kind_label(message.kind)}")
        outcome = await self.coordinator.on_try(
            message.dedup_key, lambda: self.work(message, log_id),
            lambda payload: self.deliver_later(message, payload),
            connected=lambda: request.transport is not None and not request.transport.is_closing())
        # The message's own line comes from work(); a plain first-try answer needs no second one.
        routine = outcome.action == ANSWER and outcome.try_number == 1
        log.log(logging.DEBUG if routine else logging.INFO, "msg=%s key=%s try=%d action=%s", log_id,
                message.log_key, outcome.try_number, outcome.action, extra={"msg_id": log_id})
        if outcome.action == HOLD:
            return await self.hold(request)
        if outcome.action == ANSWER and outcome.payload is not None:
            reply = await self.passive_reply(message, outcome.payload)
        elif outcome.action == PENDING:
            reply = TextReply(self.delivery.pending_reply, plugin="core", intent="pending")
        else:
            reply = SuccessReply()
        t = time.perf_counter()
        response = self.render(request, message, reply, encrypted)
        timings["render"] = (time.perf_counter() - t) * 1000
        timings["total"] = (time.perf_counter() - started) * 1000
        self.metrics.observe_try(timings)
        if outcome.payload and not outcome.repeated:  # a repeated reply keeps the first's
            explain = outcome.payload.get("explain", {})
            explain.setdefault("timings_ms", {}).update({k: round(v, 3) for k, v in timings.items()})
            explain.setdefault("plugin", outcome.payload.get("plugin"))
            explain.setdefault("intent", outcome.payload.get("intent"))
            explain["try"] = outcome.try_number
            self.explanations[message.dedup_key] = explain
        return response

    def reject(self, request: web.Request, exc: Rejected, log_id: str = "-") -> web.Response:
        log.warning("msg=%s rejected %s %s from %s: %s", log_id, exc.status, request.method,
                    request.remote, exc.reason, extra={"msg_id": log_id})
        self.count(f"rejected_{exc.status}")
        return web.Response(status=exc.status, text=_REASONS.get(exc.status, "error"), content_type="text/plain")

    async def hold(self, request: web.Request) -> web.StreamResponse:
        """Leave this try unanswered so WeChat tries again; the work keeps running meanwhile."""
        await asyncio.sleep(self.delivery.hold_seconds)
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=204)

    # ---- the work and its delivery ------------------------------------------------------------

    async def work(self, message: Message, log_id: str) -> dict:
        """Runs once per message (not per try). Returns the reply payload."""
        ctx = MessageContext(bot=self.bot, message=message, id=log_id)
        payload = await self.answer(ctx)
        self.message_done(ctx, payload)
        return payload

    def message_done(self, ctx: MessageContext, payload: dict) -> None:
        """Metrics and the message's log line: id, hashed user, intent, plugin, status, time."""
        try:
            status = self.metrics.message_done(ctx, payload)
            user, total = hash_user(ctx.user), round(ctx.elapsed_ms, 1)
            intent, plugin = payload.get("intent") or "-", payload.get("plugin") or "-"
            log.info("msg=%s user=%s type=%s intent=%s plugin=%s status=%s total_ms=%.1f", ctx.id, user,
                     ctx.message.kind, intent, plugin, status, total,
                     extra={"msg_id": ctx.id, "user": user, "intent": intent, "plugin": plugin,
                            "status": status, "total_ms": total})
        except Exception:  # observing must never cost an answer
            log.exception("msg=%s: recording metrics failed", ctx.id, extra={"msg_id": ctx.id})

    async def answer(self, ctx: MessageContext) -> dict:
        """The reply payload for one message: continuation, rate limit, or the bot's pipeline."""
        message, bot, log_id = ctx.message, ctx.bot, ctx.id
        user = message.from_user
        text = message.text.strip()
        if text and text in self.delivery.continue_words:
            part, remaining = await self.answers.pop_part(user)
            if part is not None:
                content = part + (self.delivery.continue_hint if remaining else "")
                return reply_to_dict(TextReply(content, plugin="core", intent="continue"))
        limits = bot.settings.ratelimit
        if limits.enabled and not message.is_event and not await bot.state.rate_limiter.allow(user):
            self.count("rate_limited")
            log.info("msg=%s user over the rate limit", log_id, extra={"msg_id": log_id})
            return reply_to_dict(TextReply(limits.reply, plugin="core", intent="rate_limited"))
        pending = [reply_from_dict(p) for p in await self.answers.pop_pending(user)] if not message.is_event else []
        reply = await bot.process(message, ctx)
        if pending:
            reply = self.merge_pending(pending, reply)
        payload = reply_to_dict(reply)
        payload["explain"] = bot.explain(ctx)
        return payload

    def merge_pending(self, pending: list[Reply], reply: Reply) -> Reply:
        """Put answers kept from earlier messages before this one's answer (text only)."""
        texts = [r.content for r in pending if isinstance(r, TextReply)]
        if isinstance(reply, TextReply):
            texts.append(reply.content)
            return TextReply("\n\n".join(texts), plugin=reply.plugin, intent=reply.intent)
        if texts:
            return TextReply("\n\n".join(texts), plugin="core", intent="pending")
        return reply

    async def passive_reply(self, message: Message, payload: dict) -> Reply:
        reply = reply_from_dict({k: v for k, v in payload.items() if k != "explain"})
        if isinstance(reply, TextReply) and utf8_len(reply.content) > MAX_TEXT_BYTES:
            hint = self.delivery.continue_hint
            parts = split_for_wechat(reply.content, MAX_TEXT_BYTES - utf8_len(hint))
            await self.answers.set_parts(message.from_user, parts[1:], self.delivery.pending_ttl)
            reply = TextReply(parts[0] + hint, plugin=reply.plugin, intent=reply.intent)
        return reply

    async def deliver_later(self, message: Message, payload: dict) -> None:
        """An answer that missed every passive try: push it, or keep it for the next message."""
        if self.push_sender is not None:
            reply = reply_from_dict({k: v for k, v in payload.items() if k != "explain"})
            if await self.push_sender.send(message.from_user, reply):
                return
        if payload.get("type") == "success":
            return
        await self.answers.push_pending(message.from_user,
                                        {k: v for k, v in payload.items() if k != "explain"},
                                        self.delivery.pending_ttl)

    # ---- rendering ----------------------------------------------------------------------------

    def render(self, request: web.Request, message: Message, reply: Reply, encrypted: bool) -> web.Response:
        if isinstance(reply, SuccessReply):
            return web.Response(text="success", content_type="text/plain")
        xml = self.renderer.render(reply, to_user=message.from_user, from_user=message.to_user,
                                   answering_user_message=not message.is_event)
        if encrypted and self.crypto is not None:
            timestamp = str(int(time.time()))
            nonce = str(secrets.randbelow(10**10))
            cipher = self.crypto.encrypt(xml)
            xml = self.renderer.render_encrypted(cipher, self.crypto.sign(timestamp, nonce, cipher),
                                                 timestamp, nonce)
        return web.Response(text=xml, content_type="application/xml")


async def read_whole_body(request: web.Request, limit: int) -> bytes:
    """The whole request body, however many TCP segments (or chunks) it arrives in.

    ``content.read(n)`` returns whatever has arrived so far, so it is called until the end of the
    body; more than ``limit`` bytes (declared or received) is refused with 413.
    """
    if request.content_length is not None and request.content_length > limit:
        raise Rejected(413, f"body of {request.content_length} bytes exceeds {limit}")
    parts: list[bytes] = []
    size = 0
    while True:
        part = await request.content.read(65536)
        if not part:
            return b"".join(parts)
        size += len(part)
        if size > limit:
            raise Rejected(413, f"body exceeds {limit} bytes")
        parts.append(part)


_REASONS = {400: "bad request", 403: "forbidden", 405: "method not allowed", 413: "payload too large"}

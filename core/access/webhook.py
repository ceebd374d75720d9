"""The WeChat webhook: signature and replay checks, decryption, parsing and rendering; what each
try answers is decided by core/access/delivery.py, the answer itself by the bot's pipeline.

Every failure maps to a clear status (403 signature/replay, 400 bad XML or ciphertext, 413 too
large, 405 method) with its reason logged; a plugin failure never reaches here as a 500.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..operations.metrics import kind_label
from ..processing.context import new_message_id
from ..settings import Settings
from ..state.delivery_records import ANSWER, HOLD, PENDING
from .crypto import CryptoError, MessageCrypto, verify_signature
from .delivery import Delivery
from .messages import Message, MessageFieldError, build_message
from .replay_guard import message_digest, remember_seconds, signed_query_key
from .replies import Answer, Reply, SuccessReply, TextReply
from .wechat_xml import ReplyRenderer, XMLRejected, parse_xml

if TYPE_CHECKING:
    from ..appkeys import BotHolder
    from ..operations.metrics import Metrics
    from ..processing.bot import Bot

log = logging.getLogger("skillbot.gateway")



def connected(request: web.Request) -> bool:
    """Whether the client (WeChat) still holds this request's connection open."""
    return request.transport is not None and not request.transport.is_closing()

class Rejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Gateway:
    """The webhook: HTTP, signature/replay checks, decryption, parsing, rendering. What to answer
    and when is ``delivery``'s (core/access/delivery.py); the running bot is read from ``bots``."""

    def __init__(self, bots: BotHolder, delivery: Delivery, metrics: Metrics) -> None:
        self.bots = bots
        self.delivery = delivery
        self.metrics = metrics
        # [wechat] is restart-only (core/operations/reload.py): read once.
        settings = bots.bot.settings
        self.wechat = settings.wechat
        self.token = settings.wechat.resolved_token()
        self.crypto: MessageCrypto | None = None
        if settings.wechat.resolved_aes_key():
            self.crypto = MessageCrypto(self.token, settings.wechat.resolved_aes_key(),
                                        settings.wechat.app_id)
        self._renderer: tuple[tuple[str, str], ReplyRenderer] | None = None

    @property
    def bot(self) -> Bot:
        """The running bot (read through the holder a settings reload swaps)."""
        return self.bots.bot

    @property
    def renderer(self) -> ReplyRenderer:
        """The reply renderer for the running settings (made again when a reload changed them)."""
        settings = self.bots.bot.settings
        key = (settings.pipeline.truncation_marker, settings.pipeline.templates_dir)
        if self._renderer is None or self._renderer[0] != key:
            self._renderer = (key, renderer_for(settings))
        return self._renderer[1]

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
        self.metrics.requests.inc(kind_label(message.kind))
        # Shielded: a server that cancels the handler when WeChat hangs up must not cancel a try
        # between taking text from the user's queue and keeping it when it was not delivered.
        answering = self.delivery.coordinator.spawn(
            self.answer_try(request, message, log_id, encrypted, started, timings))
        response = await asyncio.shield(answering)
        if response is None:
            return await self.hold(request)
        return response

    async def answer_try(self, request: web.Request, message: Message, log_id: str, encrypted: bool,
                         started: float, timings: dict[str, float]) -> web.Response | None:
        """The response to one try (None: leave it unanswered); on the last try, a text reply
        WeChat cannot have got in time goes back to the user's queue."""
        outcome = await self.delivery.on_try(message, log_id, connected=lambda: connected(request))
        # The message's own line comes from the delivery's work; a plain first-try answer needs no second one.
        routine = outcome.action == ANSWER and outcome.try_number == 1
        log.log(logging.DEBUG if routine else logging.INFO, "msg=%s key=%s try=%d action=%s", log_id,
                message.log_key, outcome.try_number, outcome.action, extra={"msg_id": log_id})
        if outcome.action == HOLD:
            return None
        answer = Answer.from_record(outcome.payload) if outcome.payload is not None else None
        if outcome.action == ANSWER and answer is not None:
            reply = await self.delivery.passive_reply(message, answer, outcome.repeated)
        elif outcome.action == PENDING:
            reply = self.delivery.pending_reply()
        else:
            reply = SuccessReply()
        t = time.perf_counter()
        response = self.render(message, reply, encrypted)
        timings["render"] = (time.perf_counter() - t) * 1000
        timings["total"] = (time.perf_counter() - started) * 1000
        self.metrics.observe_try(timings)
        if (outcome.action == ANSWER and outcome.try_number >= self.delivery.coordinator.max_tries
                and isinstance(reply, TextReply)):
            # No try follows the last one: a reply WeChat did not get in time would be lost.
            if not await self.written_in_time(request, response, started):
                await self.delivery.keep_missed(message, reply)
        if answer is not None and not outcome.repeated:  # a repeated reply keeps the first's
            self.delivery.remember_explanation(message.dedup_key, answer, outcome.try_number, timings)
        return response

    async def written_in_time(self, request: web.Request, response: web.Response, started: float) -> bool:
        """Write ``response`` now; False when WeChat cannot have got it: the connection was closed
        (WeChat hung up) or the try had been here longer than WeChat waits (``delivery.wechat_wait``,
        counted from when this handler started, so never too early)."""
        wait = self.delivery.coordinator.wechat_wait
        if not connected(request) or time.perf_counter() - started > wait:
            return False
        try:
            await response.prepare(request)
            await response.write_eof()
        except (ConnectionError, RuntimeError):  # the connection went away while writing
            return False
        return time.perf_counter() - started <= wait

    def reject(self, request: web.Request, exc: Rejected, log_id: str = "-") -> web.Response:
        log.warning("msg=%s rejected %s %s from %s: %s", log_id, exc.status, request.method,
                    request.remote, exc.reason, extra={"msg_id": log_id})
        self.metrics.rejected.inc(str(exc.status))
        return web.Response(status=exc.status, text=_REASONS.get(exc.status, "error"), content_type="text/plain")

    async def hold(self, request: web.Request) -> web.StreamResponse:
        """Leave this try unanswered so WeChat tries again; the work keeps running meanwhile."""
        await asyncio.sleep(self.delivery.settings.hold_seconds)
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=204)

    # ---- rendering ----------------------------------------------------------------------------

    def render(self, message: Message, reply: Reply, encrypted: bool) -> web.Response:
        if isinstance(reply, SuccessReply):
            return web.Response(text="success", content_type="text/plain")
        xml = self.render_xml(message, reply, encrypted)
        return web.Response(text=xml, content_type="application/xml")

    def render_xml(self, message: Message, reply: Reply, encrypted: bool) -> str:
        """The passive-reply XML for ``reply`` to ``message`` (encrypted when the message was)."""
        xml = self.renderer.render(reply, to_user=message.from_user, from_user=message.to_user,
                                   answering_user_message=not message.is_event)
        if encrypted and self.crypto is not None:
            timestamp = str(int(time.time()))
            nonce = str(secrets.randbelow(10**10))
            cipher = self.crypto.encrypt(xml)
            xml = self.renderer.render_encrypted(cipher, self.crypto.sign(timestamp, nonce, cipher),
                                                 timestamp, nonce)
        return xml


def renderer_for(settings: Settings) -> ReplyRenderer:
    """The reply renderer the settings ask for (truncation marker, operator's reply templates)."""
    return ReplyRenderer(truncation_marker=settings.pipeline.truncation_marker,
                         template_dirs=[settings.resolve_path(settings.pipeline.templates_dir) / "reply"])


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

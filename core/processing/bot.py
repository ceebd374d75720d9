"""The bot: plugins, stores and the message pipeline, independent of HTTP.

Pipeline stages, in order: continuation (「继续」) -> rate limit -> inbound filter -> routing ->
skills -> fallback -> outbound filter. Rendering to XML belongs to the webhook
(core/access/webhook.py), delivery inside WeChat's window to core/access/delivery.py.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import jinja2

from ..access.messages import Message
from ..access.replies import (
    CONTINUATION,
    PIPELINE,
    RATE_LIMIT,
    Answer,
    ImageReply,
    Reply,
    StreamedReply,
    SuccessReply,
    TextReply,
    VideoReply,
    VoiceReply,
    reply_text,
)
from ..settings import Settings
from ..state.cache import Cache
from ..state.delivery_records import take_request
from ..state.conversation import ConversationStore, Turn
from ..state.stores import build_state
from .context import MessageContext
from .intents import Intent, RouteResult
from .plugin_manager import HookCaller, create_plugin_manager, plugin_configs, tracing
from .templating import text_environment

log = logging.getLogger("skillbot.bot")
#: Replies that may name a ``file`` to upload, and WeChat's media type for each.
_MEDIA_KINDS = {ImageReply: "image", VoiceReply: "voice", VideoReply: "video"}


class Bot:
    """One configured bot. Plugins see it as ``ctx.bot`` / the ``bot`` hook argument.

    Attributes for plugins: ``settings``, ``http`` (shared aiohttp session), ``conversations``,
    ``cache(name, ...)``, ``templates(plugin_dir)``, ``tokenize(text)``, ``configs``,
    ``embeddings`` (``core.processing.embeddings.EmbeddingService``: ``await embed_query(text)``,
    ``await embed_set(texts, kind)``), ``cache_dir`` (where computed data may be kept),
    ``media_id(file, kind)``, ``send_template(...)``, ``operator`` (see ``BotServices``).
    """

    def __init__(self, settings: Settings, extra_plugins: dict[str, Any] | None = None,
                 state: Any = None) -> None:
        self.settings = settings
        #: Plugin objects given in code (tests, embedding); a settings reload registers them again.
        self.extra_plugins = dict(extra_plugins or {})
        self.pm, self.available_plugins = create_plugin_manager(settings, extra_plugins)
        self.configs = plugin_configs(self.pm, settings, self.available_plugins)
        order = list(settings.plugins.enabled) + list(extra_plugins or {})
        self.hooks = HookCaller(self.pm, order, settings.pipeline.plugin_timeout, tracing(settings),
                                fallback_timeout=settings.pipeline.fallback_timeout)
        self.http: aiohttp.ClientSession | None = None
        #: A bot given another bot's ``state`` (a settings reload) shares it and neither starts
        #: nor stops it until it is handed over (``owns_state``).
        self.owns_state = state is None
        self.state = state if state is not None else build_state(settings)
        self.conversations: ConversationStore = self.state.conversations
        self.token_store = self.state.token_store
        self._caches: dict[str, Cache] = {}
        self._template_envs: dict[Path, jinja2.Environment] = {}
        self._media: Any = None
        #: The operator's services (status, reload, plugin switches), given by the app that runs
        #: this bot; None for a bot without one (tests, ``run.py check``).
        self.operator: Any = None
        self.intents: list[Intent] = []
        self.segmenter: Any = None
        self.router: Any = None
        #: Metric families the plugins keep (``skillbot_metrics``), rendered by ``GET /metrics``.
        self.metric_families: list[Any] = []
        self.cache_dir = settings.cache_dir
        from .embeddings import EmbeddingService

        self.embeddings = EmbeddingService(settings.semantic, self.cache_dir, lambda: self.http)
        self.started = False

    # ---- services for plugins ---------------------------------------------------------------

    def cache(self, name: str, maxsize: int = 1024, ttl: float = 600) -> Cache:
        """A named cache shared by everything in this bot that asks for the same name."""
        if name not in self._caches:
            self._caches[name] = self.cache_factory(name, maxsize, ttl)
        return self._caches[name]

    def caches(self) -> dict[str, Cache]:
        """Every named cache made so far, by name (for metrics)."""
        return dict(self._caches)

    def release_plugin(self, plugin: Any) -> None:
        """Unregister a plugin object another bot now runs (a settings reload), so stopping this
        bot does not shut it down."""
        self.pm.unregister(plugin)
        self.hooks.forget_implementations()

    def cache_factory(self, name: str, maxsize: int, ttl: float) -> Cache:
        return self.state.cache_factory(name, maxsize, ttl)

    def templates(self, plugin_dir: str | Path) -> jinja2.Environment:
        """Templates for a plugin: the operator's ``pipeline.templates_dir`` first, then the plugin's."""
        plugin_dir = Path(plugin_dir)
        if plugin_dir not in self._template_envs:
            override = self.settings.resolve_path(self.settings.pipeline.templates_dir)
            self._template_envs[plugin_dir] = text_environment(
                override / plugin_dir.name, plugin_dir / "templates")
        return self._template_envs[plugin_dir]

    def tokenize(self, text: str) -> list[str]:
        return self.segmenter.tokenize(text) if text else []

    async def media_id(self, file: str | Path, kind: str = "image") -> str:
        """The media_id of a file (relative to the settings file's folder) for an image, voice or
        video reply: uploaded once as temporary media, then cached until shortly before it expires."""
        from ..access.wechat_api import TEMPORARY_MEDIA_SECONDS, MediaLibrary, wechat_api_for

        if self._media is None:
            api = wechat_api_for(self.settings, self.http, self.token_store)
            self._media = MediaLibrary(api, self.cache("wechat_media", 1024, TEMPORARY_MEDIA_SECONDS))
        return await self._media.media_id(self.settings.resolve_path(file), kind)

    async def send_template(self, openid: str, template_id: str, data: dict[str, str], url: str = "") -> int:
        """Send a template message (WeChat's ``message/template/send``); returns its msgid.
        Raises ``WeChatAPIError`` (``.meaning``, ``.action`` in Chinese) when WeChat refuses."""
        from ..access.wechat_api import wechat_api_for

        api = wechat_api_for(self.settings, self.http, self.token_store)
        return await api.send_template(openid, template_id, data, url)

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open shared clients, start every plugin, build the router. On failure, undo and raise."""
        from .segmenter import Segmenter

        # No connection cap: a slow model must not make the 101st user's request queue behind it.
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30),
                                          connector=aiohttp.TCPConnector(limit=0, limit_per_host=0))
        try:
            if self.owns_state:
                await self.state.start()
            self.segmenter = Segmenter(self.settings.cache_dir / "jieba")
            self.segmenter.initialize()
            # the second embedding model loads on a thread meanwhile: no message waits for it
            self.embeddings.start_loading()
            await self.hooks.startup(self, self.configs)
            await self.build_router()
            self.metric_families = await self.hooks.metrics()
        except BaseException:
            await self.stop()
            raise
        self.started = True

    async def build_router(self) -> None:
        from .router import IntentRouter

        self.segmenter.add_words(await self.hooks.jieba_words())
        self.intents = await self.hooks.intents()
        router = IntentRouter(self.intents, self.segmenter, self.settings.router.threshold,
                              self.settings.router.margin, self.settings.router.max_text_chars)
        await router.embed(self.embeddings)
        self.router = router

    async def understand(self, message: Message, text: str | None) -> tuple[list[str], RouteResult]:
        """Tokens and route of a message: lexical first, then with its embedding unless the
        lexical route is already sure (``semantic.skip_above``), the message is longer than a
        question (``semantic.max_chars``) or no provider answers in time."""
        # A text routed before, when every scorer is declared pure (``Intent.memo_key``): its
        # route again, without the routing thread or the embedding.
        memo_key = self.router.memo_key(message, text)
        memoised = self.router.recall(memo_key)
        if memoised is not None:
            return memoised.tokens, memoised
        # Off the event loop and bounded (core/processing/router.py): a long message stalls nobody.
        route = await self.router.route_off_loop(message, text)
        tokens, norm = route.tokens, route.normalized
        semantic = self.settings.semantic
        if (norm and len(norm) <= semantic.max_chars and self.embeddings.enabled
                and self.router.needs_vectors
                and not any(c.evidence.get("type") for c in route.candidates)
                and (not route.candidates or route.candidates[0].score < semantic.skip_above)):
            try:
                async with asyncio.timeout(semantic.query_timeout):  # no task of its own
                    query = await self.embeddings.embed_query(norm)
            except asyncio.TimeoutError:
                log.warning("embedding took over %.1f s; routed lexically", semantic.query_timeout)
                return tokens, route  # not kept: the next message with this text may get its vector
            if query is None:
                return tokens, route  # no provider answered: not kept either
            route = await self.router.route_off_loop(message, text, tokens, query, route)
        self.router.remember(memo_key, route)
        return tokens, route

    async def stop(self) -> None:
        self.embeddings.stop_loading()
        await self.hooks.shutdown(self)
        if self.http is not None:
            await self.http.close()
            self.http = None
        if self.owns_state:
            await self.state.stop()
        self.started = False

    # ---- the pipeline -------------------------------------------------------------------------

    async def answer(self, message: Message, ctx: MessageContext | None = None, *,
                     stream: bool = False) -> Answer:
        """Run one message through every stage: its reply, explanation and the stage that answered.

        Two stages come before the plugins' and, when they answer, end the message there: the
        user's history is not touched and no plugin hook runs (``skillbot_message_done`` neither).

        A ``StreamedReply`` is collected into a ``TextReply`` unless ``stream``: then the reply is
        returned as it is, its pieces already through the outbound filter, and the caller, after
        the last piece, hands the whole text to ``finish_streamed`` (history,
        ``skillbot_message_done``, ``skillbot_explain``) and reads ``explain(ctx)``.
        """
        ctx = ctx or MessageContext(bot=self, message=message)
        try:
            early = await self.continuation(ctx) or await self.rate_limit(ctx)
        except Exception:
            ctx.log.exception("continuation or rate limit failed; answering with the error reply")
            early = Answer(TextReply(self.settings.pipeline.error_reply, plugin="core", intent="error"))
        if early is not None:
            early.explanation = self.explain(ctx)
            return early
        reply = await self.process_pipeline(ctx)
        if isinstance(reply, StreamedReply):
            if stream:
                return Answer(reply, {}, PIPELINE)
            reply = await reply.collect()
            await self.finish_streamed(ctx, reply)
        return Answer(reply, self.explain(ctx), PIPELINE)

    async def process(self, message: Message, ctx: MessageContext | None = None) -> Reply:
        """Run one message through every stage; always returns a Reply (never raises)."""
        return (await self.answer(message, ctx)).reply

    async def continuation(self, ctx: MessageContext) -> Answer | None:
        """Stage 「继续」: a continue word (``delivery.continue_words``) takes the next part of the
        answers waiting in the user's queue (the delivery keeps them there), or says the answer is
        still being written (``delivery.continue_wait``); None when nothing waits."""
        delivery = self.settings.delivery
        text = ctx.message.text.strip()
        if not text or text not in delivery.continue_words:
            return None
        taken = await self.state.answers.take(ctx.user, take_request(delivery))
        if taken.text:
            content = taken.content
        elif taken.writing:
            content = delivery.continue_wait
        else:
            return None
        return Answer(TextReply(content, plugin="core", intent="continue"), stage=CONTINUATION)

    async def rate_limit(self, ctx: MessageContext) -> Answer | None:
        """Stage rate limit: a user over ``[ratelimit]`` gets its reply (events are never limited)."""
        limits = self.settings.ratelimit
        if not limits.enabled or ctx.message.is_event or await self.state.rate_limiter.allow(ctx.user):
            return None
        ctx.log.info("user over the rate limit")
        return Answer(TextReply(limits.reply, plugin="core", intent="rate_limited"), stage=RATE_LIMIT)

    async def process_pipeline(self, ctx: MessageContext) -> Reply:
        """The plugins' stages: inbound filter -> routing -> skills -> fallback -> outbound filter."""
        try:
            ctx.history = await self.conversations.history(ctx.user)
            ctx.slots = await self.conversations.slots(ctx.user)
            reply = await self._answer(ctx)
            if isinstance(reply, StreamedReply):
                reply.pieces = self._filtered(ctx, reply, reply.pieces)
                return reply
            with ctx.timed("outbound"):
                reply = await self.hooks.outbound_filter(ctx, reply)
            reply = await self.upload_reply_file(ctx, reply)
            await self._record(ctx, reply)
        except Exception:
            ctx.log.exception("pipeline failed; answering with the error reply")
            reply = TextReply(self.settings.pipeline.error_reply, plugin="core", intent="error")
        ctx.extra["reply"] = reply
        await self.hooks.message_done(ctx, reply)
        ctx.explanations = await self.hooks.explain(ctx)
        return reply

    async def _filtered(self, ctx: MessageContext, reply: StreamedReply,
                        pieces: AsyncIterator[str]) -> AsyncIterator[str]:
        """A streamed reply's pieces, each through the outbound filter. A piece the filter replaced
        with a reply kept out of the history (a block) ends the text; a plugin failing mid-way
        ends it with what came (or the error reply, if nothing did)."""
        said = False
        try:
            async with contextlib.aclosing(pieces) as source:  # type: ignore[type-var]
                async for piece in source:
                    with ctx.timed("outbound"):
                        filtered = await self.hooks.outbound_filter(
                            ctx, TextReply(piece, plugin=reply.plugin, intent=reply.intent))
                    text = reply_text(filtered)
                    said = said or bool(text.strip())
                    if not filtered.record:
                        reply.record = False
                    yield text
                    if not filtered.record:
                        return
        except Exception:
            ctx.log.exception("the streamed answer failed")
            if not said:
                reply.record = False
                yield self.settings.pipeline.error_reply

    async def finish_streamed(self, ctx: MessageContext, whole: TextReply) -> None:
        """After the last piece of a streamed reply, with its whole text: finish the message as
        ``process_pipeline`` finishes any other (history, message_done, explain)."""
        try:
            await self._record(ctx, whole)
        except Exception:
            ctx.log.exception("recording the streamed answer in the history failed")
        ctx.extra["reply"] = whole
        await self.hooks.message_done(ctx, whole)
        ctx.explanations = await self.hooks.explain(ctx)

    async def upload_reply_file(self, ctx: MessageContext, reply: Reply) -> Reply:
        """A media reply naming a ``file`` gets its media_id (uploaded once, cached); when WeChat
        or the file refuses, the user gets ``pipeline.error_reply`` and the log says why in Chinese."""
        kind = _MEDIA_KINDS.get(type(reply))
        if kind is None or reply.media_id or not reply.file:  # type: ignore[attr-defined]
            return reply
        from ..access.wechat_api import WeChatAPIError

        file = reply.file  # type: ignore[attr-defined]
        try:
            with ctx.timed("media"):
                reply.media_id = await self.media_id(file, kind)  # type: ignore[attr-defined]
            return reply
        except WeChatAPIError as exc:
            ctx.log.warning("reply file %s was not uploaded: %s %s", file, exc, exc.action)
        except (OSError, aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            ctx.log.warning("reply file %s was not uploaded: %s: %s", file, type(exc).__name__, exc)
        return TextReply(self.settings.pipeline.error_reply, plugin=reply.plugin, intent=reply.intent)

    async def _answer(self, ctx: MessageContext) -> Reply:
        with ctx.timed("inbound"):
            reply, plugin = await self.hooks.inbound_filter(ctx)
        if reply is not None:
            reply.plugin = reply.plugin or plugin
            reply.intent = reply.intent or "filtered"
            return reply
        with ctx.timed("route"):
            ctx.tokens, ctx.route = await self.understand(ctx.message, ctx.message.text)
        logger = ctx.log
        if logger.isEnabledFor(logging.DEBUG):  # the route's explanation is built only to be logged
            logger.debug("route %s", ctx.route.explain())
        with ctx.timed("skill"):
            for candidate in ctx.route.chosen:
                reply, plugin = await self.hooks.handle(ctx, candidate)
                if reply is not None:
                    reply.plugin = reply.plugin or plugin
                    reply.intent = reply.intent or candidate.name
                    return reply
        with ctx.timed("fallback"):
            reply, plugin = await self.hooks.fallback(ctx)
        if reply is not None:
            reply.plugin = reply.plugin or plugin
            reply.intent = reply.intent or "fallback"
            return reply
        return self.default_reply(ctx)

    def default_reply(self, ctx: MessageContext) -> Reply:
        """What nobody answered: text gets the configured reply; events and media get ``success``."""
        if ctx.message.is_event:
            return SuccessReply(plugin="core", intent="none")
        if ctx.message.text:
            return TextReply(self.settings.pipeline.no_answer_reply, plugin="core", intent="none")
        if ctx.message.msg_type in ("image", "video", "shortvideo", "voice", "link", "location"):
            return TextReply(self.settings.pipeline.unsupported_reply, plugin="core", intent="none")
        return SuccessReply(plugin="core", intent="none")

    async def _record(self, ctx: MessageContext, reply: Reply) -> None:
        """Keep the exchange in the user's history, so skills and the model see earlier turns."""
        text = ctx.message.text
        answer = reply_text(reply)
        if not text or not reply.record:
            return
        turns = [Turn("user", text)]
        if answer:
            turns.append(Turn("assistant", answer, plugin=reply.plugin, intent=reply.intent))
        await self.conversations.append(ctx.user, *turns)

    def explain(self, ctx: MessageContext) -> dict[str, Any]:
        """The message's explanation as JSON: timings, routing, who answered, and the plugins'
        own blocks (``skillbot_explain``) as they gave them."""
        route: RouteResult | None = ctx.route
        reply = ctx.extra.get("reply")
        return {"id": ctx.id, "timings_ms": {k: round(v, 3) for k, v in ctx.timings.items()},
                "route": route.explain() if route else None,
                "plugin": getattr(reply, "plugin", None), "intent": getattr(reply, "intent", None),
                "blocks": [{"plugin": plugin, **block.to_dict()}
                           for plugin, block in ctx.explanations]}

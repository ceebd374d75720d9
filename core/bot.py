"""The bot: plugins, stores and the message pipeline, independent of HTTP.

Pipeline stages, in order: inbound filter -> routing -> skills -> fallback -> outbound filter.
Rendering to XML and delivery inside WeChat's window belong to the gateway (core/gateway.py).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import aiohttp
import jinja2

from .cache import Cache
from .context import MessageContext
from .conversation import ConversationStore, Turn
from .intents import Intent, RouteResult
from .messages import Message
from .plugin_manager import HookCaller, create_plugin_manager, plugin_configs
from .replies import Reply, SuccessReply, TextReply, reply_text
from .settings import Settings
from .state import build_state
from .templating import text_environment

log = logging.getLogger("skillbot.bot")


def explain_hit(hit: Any) -> dict[str, Any]:
    """A filter hit as plain JSON fields (a dataclass's fields; anything else as its text)."""
    if dataclasses.is_dataclass(hit) and not isinstance(hit, type):
        return {k: v for k, v in dataclasses.asdict(hit).items() if isinstance(v, (str, int, float, bool))}
    return {"text": str(hit)}


class Bot:
    """One configured bot. Plugins see it as ``ctx.bot`` / the ``bot`` hook argument.

    Attributes for plugins: ``settings``, ``http`` (shared aiohttp session), ``conversations``,
    ``cache(name, ...)``, ``templates(plugin_dir)``, ``tokenize(text)``, ``configs``,
    ``embeddings`` (``core.embeddings.EmbeddingService``: ``await embed_query(text)``,
    ``await embed_set(texts, kind)``), ``cache_dir`` (where computed data may be kept).
    """

    def __init__(self, settings: Settings, extra_plugins: dict[str, Any] | None = None,
                 state: Any = None) -> None:
        self.settings = settings
        #: Plugin objects given in code (tests, embedding); a settings reload registers them again.
        self.extra_plugins = dict(extra_plugins or {})
        self.pm, self.available_plugins = create_plugin_manager(settings, extra_plugins)
        self.configs = plugin_configs(self.pm, settings, self.available_plugins)
        order = list(settings.plugins.enabled) + list(extra_plugins or {})
        trace = settings.logging.trace_hooks or os.environ.get("SKILLBOT_TRACE") == "1"
        self.hooks = HookCaller(self.pm, order, settings.pipeline.plugin_timeout, trace)
        self.http: aiohttp.ClientSession | None = None
        #: A bot given another bot's ``state`` (a settings reload) shares it and neither starts
        #: nor stops it until it is handed over (``owns_state``).
        self.owns_state = state is None
        self.state = state if state is not None else build_state(settings)
        self.conversations: ConversationStore = self.state.conversations
        self.token_store = self.state.token_store
        self._caches: dict[str, Cache] = {}
        self._template_envs: dict[Path, jinja2.Environment] = {}
        self.intents: list[Intent] = []
        self.segmenter: Any = None
        self.router: Any = None
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
            self.segmenter = Segmenter()
            self.segmenter.initialize()
            for impl in self.hooks.impls("skillbot_startup"):
                ok, _ = await self.hooks.call_one(
                    impl, "skillbot_startup", {"bot": self, "config": self.configs.get(impl.plugin_name)},
                    timeout=60)
                if not ok:
                    raise RuntimeError(f"plugin {impl.plugin_name} failed to start (see the log above)")
            await self.build_router()
        except BaseException:
            await self.stop()
            raise
        self.started = True

    async def build_router(self) -> None:
        from .router import IntentRouter

        for _name, words in await self.hooks.each("skillbot_jieba_words", {}):
            self.segmenter.add_words(words or [])
        intents: list[Intent] = []
        for impl in self.hooks.impls("skillbot_intents"):
            ok, declared = await self.hooks.call_one(impl, "skillbot_intents", {})
            for intent in (declared or []) if ok else []:
                intent.plugin = impl.plugin_name
                intents.append(intent)
        self.intents = intents
        router = IntentRouter(intents, self.segmenter, self.settings.router.threshold,
                              self.settings.router.margin, self.settings.router.max_text_chars)
        await router.embed(self.embeddings)
        self.router = router

    async def understand(self, message: Message, text: str | None) -> tuple[list[str], RouteResult]:
        """Tokens and route of a message: lexical first, then with its embedding unless the
        lexical route is already sure (``semantic.skip_above``), the message is longer than a
        question (``semantic.max_chars``) or no provider answers in time."""
        # Off the event loop and bounded (core/router.py): a long message stalls nobody.
        route = await self.router.route_off_loop(message, text)
        tokens, norm = route.tokens, route.normalized
        semantic = self.settings.semantic
        if (norm and len(norm) <= semantic.max_chars and self.embeddings.enabled
                and self.router.needs_vectors
                and not any(c.evidence.get("type") for c in route.candidates)
                and (not route.candidates or route.candidates[0].score < semantic.skip_above)):
            try:
                query = await asyncio.wait_for(self.embeddings.embed_query(norm), semantic.query_timeout)
            except asyncio.TimeoutError:
                log.warning("embedding took over %.1f s; routed lexically", semantic.query_timeout)
                query = None
            if query is not None:
                route = await self.router.route_off_loop(message, text, tokens, query, route)
        return tokens, route

    async def stop(self) -> None:
        await self.hooks.each("skillbot_shutdown", {"bot": self}, timeout=10)
        if self.http is not None:
            await self.http.close()
            self.http = None
        if self.owns_state:
            await self.state.stop()
        self.started = False

    # ---- the pipeline -------------------------------------------------------------------------

    async def process(self, message: Message, ctx: MessageContext | None = None) -> Reply:
        """Run one message through every stage; always returns a Reply (never raises)."""
        ctx = ctx or MessageContext(bot=self, message=message)
        extra = {"msg_id": ctx.id}
        try:
            ctx.history = await self.conversations.history(ctx.user)
            ctx.slots = await self.conversations.slots(ctx.user)
            reply = await self._answer(ctx, extra)
            with ctx.timed("outbound"):
                for impl in self.hooks.impls("skillbot_outbound_filter"):
                    ok, replaced = await self.hooks.call_one(
                        impl, "skillbot_outbound_filter", {"ctx": ctx, "reply": reply}, log_extra=extra)
                    if ok and replaced is not None:
                        replaced.plugin = replaced.plugin or reply.plugin
                        replaced.intent = replaced.intent or reply.intent
                        reply = replaced
            await self._record(ctx, reply)
        except Exception:
            ctx.log.exception("pipeline failed; answering with the error reply")
            reply = TextReply(self.settings.pipeline.error_reply, plugin="core", intent="error")
        ctx.extra["reply"] = reply
        await self.hooks.each("skillbot_message_done", {"ctx": ctx, "reply": reply}, log_extra=extra)
        return reply

    async def _answer(self, ctx: MessageContext, extra: dict) -> Reply:
        with ctx.timed("inbound"):
            reply, plugin = await self.hooks.first_result("skillbot_inbound_filter", {"ctx": ctx},
                                                          log_extra=extra)
        if reply is not None:
            reply.plugin = reply.plugin or plugin
            reply.intent = reply.intent or "filtered"
            return reply
        with ctx.timed("route"):
            ctx.tokens, ctx.route = await self.understand(ctx.message, ctx.message.text)
        ctx.log.debug("route %s", ctx.route.explain())
        with ctx.timed("skill"):
            for candidate in ctx.route.chosen:
                reply, plugin = await self.hooks.first_result(
                    "skillbot_handle", {"ctx": ctx, "candidate": candidate},
                    plugin=candidate.intent.plugin, log_extra=extra)
                if reply is not None:
                    reply.plugin = reply.plugin or plugin
                    reply.intent = reply.intent or candidate.name
                    return reply
        with ctx.timed("fallback"):
            reply, plugin = await self.hooks.first_result(
                "skillbot_fallback", {"ctx": ctx}, log_extra=extra,
                timeout=self.settings.pipeline.fallback_timeout)
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
        route: RouteResult | None = ctx.route
        reply = ctx.extra.get("reply")
        return {"id": ctx.id, "timings_ms": {k: round(v, 3) for k, v in ctx.timings.items()},
                "route": route.explain() if route else None,
                "filter_hits": [explain_hit(h) for h in ctx.filter_hits],
                "plugin": getattr(reply, "plugin", None), "intent": getattr(reply, "intent", None),
                "llm": ctx.extra.get("llm")}

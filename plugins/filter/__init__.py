"""Sensitive-word filter: checks what users send before skills and the LLM see it, and every
reply before it is sent. Chinese-aware (full-width, case, traditional characters, noise between
characters); actions per category: block, mask, log. Lists reload when their files change.

The hits of a message are kept in ``ctx.extra["filter_hits"]`` (``Hit`` objects); the plugin
counts them in ``skillbot_filter_hits_total`` (``skillbot_metrics``) and lists them in the
message's explanation (``skillbot_explain``, worded by ``templates/explain.j2``).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import Any

import jinja2

from core import (
    BotServices,
    Check,
    Counter,
    Explanation,
    MessageContext,
    MusicReply,
    NewsReply,
    Reply,
    TextReply,
    VideoReply,
    hookimpl,
    resolve_path,
)

from .config import Config
from .engine import FilterEngine, Hit, ListError, WordFilter, strictest

HERE = Path(__file__).resolve().parent
log = logging.getLogger("skillbot.filter")
#: Where a message's hits are kept for this plugin's explanation.
HITS_KEY = "filter_hits"

__all__ = ["Plugin", "Config", "FilterEngine", "WordFilter", "Hit", "ListError", "resolve_list_path"]


def resolve_list_path(value: str, settings: Any = None, key: str = "word_files") -> Path:
    """A list file path (core/settings.py, one rule): set in the settings, relative to the
    settings file's folder; the plugin's default lists, relative to this plugin's folder."""
    if settings is None:
        return resolve_path(value, HERE)
    return settings.plugin_path("filter", key, value, HERE)


class Plugin:
    def __init__(self) -> None:
        self.config = Config()
        self.filter: WordFilter | None = None
        self.env: jinja2.Environment | None = None
        self._watcher: asyncio.Task | None = None
        self.hits_total = Counter("skillbot_filter_hits_total",
                                  "Filter list hits, by direction, action and category.",
                                  ("direction", "action", "category"))

    # ---- set-up ---------------------------------------------------------------------------------

    @hookimpl
    def skillbot_config_schema(self) -> type:
        return Config

    @hookimpl
    def skillbot_startup(self, bot: BotServices, config: Config) -> None:
        settings = bot.settings
        self.env = bot.templates(HERE)
        self.env.get_template("explain.j2")  # a broken override stops start-up, with the file named
        word_filter = WordFilter(
            [resolve_list_path(p, settings, "word_files") for p in config.word_files],
            [resolve_list_path(p, settings, "allow_files") for p in config.allow_files],
            actions=dict(config.categories), default_action=config.default_action,
            separators=config.hard_separators)
        try:
            word_filter.load()
        except ListError as exc:
            raise RuntimeError(f"filter: cannot load the word lists: {exc}") from None
        self._stop_watcher()
        self.config = config
        self.filter = word_filter
        self._start_watcher()

    @hookimpl
    async def skillbot_shutdown(self, bot: BotServices) -> None:
        task = self._stop_watcher()
        if task is not None:
            await asyncio.wait([task])  # let the cancellation finish (never raises)

    def _start_watcher(self) -> None:
        if self.config.reload_interval <= 0 or self.filter is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # started outside an event loop (scripts): reload on demand only
            return
        self._watcher = loop.create_task(self._watch(self.filter, self.config.reload_interval),
                                         name="filter-reload")

    def _stop_watcher(self) -> asyncio.Task | None:
        task, self._watcher = self._watcher, None
        if task is not None and not task.done():
            task.cancel()
        return task

    @staticmethod
    async def _watch(word_filter: WordFilter, interval: float) -> None:
        """Check the list files every ``interval`` seconds; rebuild off the event loop."""
        while True:
            await asyncio.sleep(interval)
            try:
                if word_filter.changed():
                    await asyncio.to_thread(word_filter.reload_if_changed)
            except Exception:  # the watcher must outlive any surprise
                log.exception("filter: checking the word lists failed")

    @hookimpl
    def skillbot_health(self, bot: BotServices, probe: bool) -> list[Check] | None:
        """The word lists in use; not ok (the bot is "degraded", still serving with the previous
        lists) while the files on disk are broken."""
        word_filter = self.filter
        if word_filter is None or word_filter.engine is None:
            return None
        engine = word_filter.engine
        if word_filter.last_error:
            return [Check("word lists", False,
                          f"reload failed, previous lists in use: {word_filter.last_error}")]
        return [Check("word lists", True, f"{engine.words} words, {engine.allowed} allowed")]

    def reload_if_changed(self) -> bool:
        """Reload the lists now if a file changed (what the watcher does every reload_interval)."""
        return self.filter.reload_if_changed() if self.filter is not None else False

    @property
    def engine(self) -> FilterEngine | None:
        return self.filter.engine if self.filter is not None else None

    # ---- stage 1: inbound ----------------------------------------------------------------------

    @hookimpl(tryfirst=True)
    def skillbot_inbound_filter(self, ctx: MessageContext) -> Reply | None:
        engine = self.engine
        text = ctx.message.text
        if engine is None or not text:
            return None
        hits = engine.scan(text, "inbound")
        if not hits:
            return None
        self._record(ctx, hits)
        action = strictest(hits)
        self._log(ctx, "inbound", hits, action)
        if action == "block":
            return TextReply(self.config.block_reply, record=False)
        masked = [h for h in hits if h.action == "mask"]
        if masked:
            ctx.message.text = engine.mask(text, masked, self.config.mask_char)
        return None

    # ---- stage 5: outbound ---------------------------------------------------------------------

    @hookimpl(trylast=True)
    def skillbot_outbound_filter(self, ctx: MessageContext, reply: Reply) -> Reply | None:
        engine = self.engine
        if engine is None:
            return None
        found: list[Hit] = []

        def clean(text: str) -> str:
            if not text:
                return text
            hits = [self._outbound(h) for h in engine.scan(text, "outbound")]
            found.extend(hits)
            masked = [h for h in hits if h.action == "mask"]
            return engine.mask(text, masked, self.config.mask_char) if masked else text

        if isinstance(reply, TextReply):
            content = clean(reply.content)
            if not found:  # the usual case: nothing to replace, no copy made
                return None
            replacement: Reply = dataclasses.replace(reply, content=content)
        elif isinstance(reply, NewsReply):
            replacement = dataclasses.replace(reply, articles=[
                dataclasses.replace(a, title=clean(a.title), description=clean(a.description))
                for a in reply.articles])
        elif isinstance(reply, (VideoReply, MusicReply)):
            replacement = dataclasses.replace(reply, title=clean(reply.title),
                                              description=clean(reply.description))
        else:
            return None
        if not found:
            return None
        self._record(ctx, found)
        action = strictest(found)
        self._log(ctx, "outbound", found, action)
        if action == "block":
            return TextReply(self.config.outbound_block_reply, plugin=reply.plugin,
                             intent=reply.intent, record=False)
        return replacement if action == "mask" else None

    # ---- what it found: metrics and the explanation --------------------------------------------

    def _record(self, ctx: MessageContext, hits: list[Hit]) -> None:
        ctx.extra.setdefault(HITS_KEY, []).extend(hits)
        for hit in hits:
            self.hits_total.inc(hit.direction, hit.action, hit.category)

    @hookimpl
    def skillbot_metrics(self) -> list[Counter]:
        return [self.hits_total]

    @hookimpl
    def skillbot_explain(self, ctx: MessageContext) -> Explanation | None:
        hits: list[Hit] = ctx.extra.get(HITS_KEY) or []
        if not hits or self.env is None:
            return None
        template = self.env.get_template("explain.j2")
        fields = [{"word": h.word, "category": h.category, "action": h.action,
                   "direction": h.direction, "start": h.start, "end": h.end} for h in hits]
        return Explanation(title=template.render(part="title").strip(),
                           summary=template.render(part="summary", hits=hits).strip(),
                           items=[template.render(part="item", hit=h).strip() for h in hits],
                           data={"hits": fields})

    def _outbound(self, hit: Hit) -> Hit:
        action = "log" if hit.action == "log" else self.config.outbound_action
        return hit if action == hit.action else dataclasses.replace(hit, action=action)

    @staticmethod
    def _log(ctx: MessageContext, direction: str, hits: list[Hit], action: str | None) -> None:
        ctx.log.info("filter %s: %s -> %s", direction,
                     ", ".join(f"{h.word!r}[{h.category or '-'}]@{h.start}:{h.end}" for h in hits),
                     action)

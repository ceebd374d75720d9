"""The FAQ skill: answers the operator's frequently asked questions from an editable TOML file.

The plugin declares one intent, ``faq``, scored by the plugin itself (``Intent.scorer``): the
router calls ``score(text, tokens)`` for every text message, which retrieves the best entry and
returns its normalised score with the slots ``faq_id``, ``question`` (the stored phrasing that
matched best) and ``alternatives`` (other entries above the threshold). ``skillbot_handle`` renders
that entry's Jinja2 answer. See docs/faq.md.

Caches: lookups are memoised per normalised question in an in-process TTL cache (the router calls
scorers synchronously, so they cannot await the bot's async cache); rendered answers that use no
per-message variable are kept in ``bot.cache("faq")``. Both use ``cache_size`` and ``cache_ttl``
and are keyed by the file's content hash, so an edited file never serves an old answer.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jinja2
from cachetools import TTLCache

from core import BotServices, Candidate, Intent, MessageContext, TextReply, hookimpl

from .config import Config
from .engine import FaqData, FaqError, FaqIndex, load_faq

HERE = Path(__file__).parent
INTENT = "faq"
log = logging.getLogger("skillbot.plugins.faq")


class Plugin:
    def __init__(self) -> None:
        self.config = Config()
        self.bot: BotServices | None = None
        self.env: jinja2.Environment | None = None
        self.data: FaqData | None = None
        self.index: FaqIndex | None = None
        self.lookups: TTLCache = TTLCache(maxsize=self.config.cache_size, ttl=self.config.cache_ttl)
        self.last_error: str | None = None
        self._file_state: tuple[int, int] | None = None
        self._reload_lock = threading.Lock()
        self._watcher: asyncio.Task | None = None

    # ---- hooks ------------------------------------------------------------------------------

    @hookimpl
    def skillbot_config_schema(self) -> type:
        return Config

    @hookimpl
    async def skillbot_startup(self, bot: BotServices, config: Config) -> None:
        self.bot = bot
        self.config = config
        self.env = bot.templates(HERE)
        self.lookups = TTLCache(maxsize=self.config.cache_size, ttl=self.config.cache_ttl)
        path = self.config.resolved_path(bot.settings)
        try:
            self._load(path)
        except FaqError as exc:
            if self.data is None:  # nothing to keep: the operator must fix the file
                raise RuntimeError(f"FAQ file unusable: {exc}") from None
            self.last_error = str(exc)
            log.error("FAQ file %s not reloaded, keeping %d entries: %s", path, len(self.data.entries), exc)
        self._stop_watcher()
        if self.config.reload_interval > 0:
            self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="faq-reload")

    @hookimpl
    async def skillbot_shutdown(self, bot: BotServices) -> None:
        self._stop_watcher()

    @hookimpl
    def skillbot_jieba_words(self) -> list[str]:
        return self.data.jieba_words() if self.data else []

    @hookimpl
    def skillbot_intents(self) -> list[Intent]:
        # Built here, not at start-up: by now every plugin's jieba words are in the dictionary,
        # so stored questions are cut exactly as messages will be.
        if self.data is not None and (self.index is None or self.index.data is not self.data):
            self._build_index(self.data)
        return [Intent(INTENT, scorer=self.score, priority=self.config.priority)]

    @hookimpl
    async def skillbot_handle(self, ctx: MessageContext, candidate: Candidate) -> TextReply | None:
        data = self.data
        entry = data.entries.get(candidate.slots.get("faq_id", "")) if data else None
        if entry is None:  # the file changed between routing and now: let the next one try
            return None
        ctx.extra["faq_id"] = entry.id
        key = f"{data.version}:{entry.id}:{''.join(ctx.tokens)}"
        cache = self.bot.cache("faq", maxsize=self.config.cache_size, ttl=self.config.cache_ttl)
        if not entry.dynamic:
            try:
                cached = await cache.get(key)
            except Exception as exc:  # a cache outage must not cost the answer
                ctx.log.warning("FAQ answer cache unavailable (%s); rendering", exc)
                cached = None
            if isinstance(cached, str) and cached:
                return TextReply(cached)
        now = datetime.now(timezone(timedelta(hours=self.config.utc_offset)))
        variables = {**data.variables, **self.config.variables, "user": ctx.user,
                     "nickname": ctx.slots.get("nickname"), "now": now,
                     "date": now.strftime("%Y-%m-%d")}
        try:
            answer = entry.template.render(variables).strip()
        except Exception:
            ctx.log.exception("FAQ entry %s: answer template failed; declining", entry.id)
            return None
        if not answer:
            return None
        if not entry.dynamic:
            try:
                await cache.set(key, answer)
            except Exception as exc:
                ctx.log.warning("FAQ answer cache unavailable (%s); not cached", exc)
        return TextReply(answer)

    # ---- retrieval ------------------------------------------------------------------------------

    def score(self, text: str, tokens: list[str]) -> tuple[float, dict[str, Any]]:
        """The router's scorer: (normalised score of the best entry, slots), memoised."""
        index = self.index
        if index is None or not tokens:
            return 0.0, {}
        key = f"{index.data.version}:{''.join(tokens)}"
        found = self.lookups.get(key)
        if found is None:
            found = self.lookup(index, text, tokens)
            self.lookups[key] = found
        return found[0], dict(found[1])

    def lookup(self, index: FaqIndex, text: str, tokens: list[str]) -> tuple[float, dict[str, Any]]:
        matches = index.search(text, tokens, limit=3, min_score=self.config.threshold)
        if not matches:
            return 0.0, {}
        best = matches[0]
        alternatives = [m.entry_id for m in matches[1:]]
        return best.score, {"faq_id": best.entry_id, "question": best.question,
                            "alternatives": alternatives}

    # ---- loading and reloading --------------------------------------------------------------

    def _file_signature(self, path: Path) -> tuple[int, int] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def _load(self, path: Path) -> None:
        signature = self._file_signature(path)
        assert self.env is not None
        data = load_faq(path, self.env)
        self._file_state = signature
        self.data = data
        self.last_error = None
        if self.index is not None and self.bot is not None:
            self._add_words(data)
            self._build_index(data)
        log.info("FAQ loaded: %d entries from %s (version %s)", len(data.entries), path, data.version)

    def _add_words(self, data: FaqData) -> None:
        segmenter = self.bot.segmenter
        new = [w for w in data.jieba_words() if w not in segmenter.user_words]
        if new:
            segmenter.add_words(new)

    def _build_index(self, data: FaqData) -> None:
        self.index = FaqIndex(data, self.bot.segmenter)
        self.lookups = TTLCache(maxsize=self.config.cache_size, ttl=self.config.cache_ttl)

    def reload_if_changed(self) -> bool:
        """Reload the FAQ file if it changed since it was loaded. Returns True when reloaded.

        A file that fails to load keeps the current entries; the reason is logged (once per
        version of the file) and kept in ``last_error``.
        """
        path = self.config.resolved_path(getattr(getattr(self, "bot", None), "settings", None))
        with self._reload_lock:
            signature = self._file_signature(path)
            if signature == self._file_state:
                return False
            try:
                self._load(path)
            except FaqError as exc:
                self._file_state = signature  # do not retry the same broken version every tick
                self.last_error = str(exc)
                kept = len(self.data.entries) if self.data else 0
                log.error("FAQ file %s not reloaded, keeping %d entries: %s", path, kept, exc)
                return False
            return True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.config.reload_interval)
            try:
                await asyncio.to_thread(self.reload_if_changed)
            except Exception:  # never let the watcher die silently
                log.exception("FAQ reload check failed")

    def _stop_watcher(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

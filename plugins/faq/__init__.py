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
import time
from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from cachetools import TTLCache

from core import BotServices, Candidate, Intent, MessageContext, TextReply, hookimpl, load_general_questions

from .config import Config
from .assist import picked_number
from .decline import DeclineModel, RawScores, pair_features, without_content
from .register import REGISTER_PATH, RegisterModel
from .rerank import RERANK_PATH, Reranker
from .engine import DenseFaq, FaqData, FaqError, FaqIndex, load_faq
from .question_log import QuestionLog

HERE = Path(__file__).parent
#: Recent hybrid decisions kept for the question log (messages in flight at once, with margin).
UNSURE_KEPT = 1024
INTENT = "faq"
#: The router's largest priority nudge (core/processing/router.py PRIORITY_CAP).
PRIORITY_CAP = 0.05
log = logging.getLogger("skillbot.plugins.faq")


class Plugin:
    def __init__(self) -> None:
        self.config = Config()
        self.bot: BotServices | None = None
        self.env: jinja2.Environment | None = None
        self.data: FaqData | None = None
        self.index: FaqIndex | None = None
        #: Embeddings of the loaded version (None: lexical only, or not computed yet).
        self.dense: DenseFaq | None = None
        self.question_log: QuestionLog | None = None
        #: The learned answer-or-decline model (plugins/faq/data/decline_model.json).
        self.decline_model = DeclineModel.load()
        #: The message's register, one of its features (plugins/faq/data/register_model.json;
        #: without that file, as while scripts/train_faq_decline.py first fits it, undecided).
        self.register = RegisterModel.load() if REGISTER_PATH.exists() else None
        #: Chooses among the few best entries (plugins/faq/data/rerank_model.json; without
        #: that file, as while scripts/train_faq_decline.py first fits it, by probability alone).
        self.reranker = Reranker.load() if RERANK_PATH.exists() else None
        #: Unsure decisions of recent messages, by route key, for ``skillbot_message_done``:
        #: written in the router's thread, read on the event loop, hence the lock.
        self._unsure: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._unsure_lock = threading.Lock()
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
        self.question_log = (QuestionLog(Path(bot.settings.data_dir) / "faq" / "questions.tsv",
                                         self.config.question_log_size)
                             if self.config.question_log_size > 0 else None)
        await self._embed()
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
        return [Intent(INTENT, scorer=self.score, semantic_scorer=self.semantic_score,
                       priority=self.config.priority, memo_key=self.memo_key)]

    def memo_key(self) -> tuple[str | None, str | None, int]:
        """What the scorers' answer depends on besides the text: the FAQ file's version, whether
        its embeddings are ready (until then it is scored lexically) and the re-ranker in use."""
        index, dense = self.index, self.dense
        return (index.data.version if index else None, dense.version if dense else None,
                id(self.reranker))

    @hookimpl
    async def skillbot_handle(self, ctx: MessageContext, candidate: Candidate) -> TextReply | None:
        data = self.data
        entry_id = candidate.slots.get("faq_id", "")
        if data is not None and self.config.assist and entry_id:
            entry_id = await self.assisted_choice(ctx, candidate.slots)
            if entry_id is None:
                return None
        entry = data.entries.get(entry_id) if data else None
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

    @hookimpl
    async def skillbot_message_done(self, ctx: Any, reply: Any) -> None:
        """Record questions the FAQ declined narrowly or answered with low confidence."""
        route, index, qlog = ctx.route, self.index, self.question_log
        if qlog is None or route is None or not route.model or index is None:
            return
        key = f"{index.data.version}:{route.model}:{route.normalized}"
        with self._unsure_lock:
            found = self._unsure.pop(key, None)
        if not found:  # a route the router kept for a text seen before: the scorer was not called
            found = self.lookups.get(key)
        if not found:
            return
        score, slots = found
        cfg = self.config
        plugin = reply.plugin or ""
        # the probability (with a trusted lexical score) the decision compared with the threshold
        fused = slots.get("fused", slots.get("probability", score))
        if score <= 0 and fused >= cfg.semantic_threshold - cfg.question_log_band:
            kind, nearest = "declined", slots.get("nearest", "")
        elif plugin == "faq" and 0 < score and fused < cfg.semantic_threshold + cfg.question_log_band:
            kind, nearest = "low", slots.get("faq_id", "")
        else:
            return
        await asyncio.to_thread(qlog.append, kind, route.normalized, nearest, fused, plugin)

    async def assisted_choice(self, ctx: Any, slots: dict[str, Any]) -> str | None:
        """The entry to answer with when the best ones are close: the model's pick among them,
        None when it says none fits, the best-scored one when it cannot answer in time."""
        best = slots["faq_id"]
        ranking = slots.get("ranking") or []
        cfg = self.config
        if len(ranking) < 2 or ranking[0][1] - ranking[1][1] >= cfg.assist_margin:
            return best
        if self.data is None or self.bot is None:
            return best
        shortlist = [row[0] for row in ranking[:cfg.assist_candidates] if row[0] in self.data.entries]
        prompt = self.env.get_template("assist_prompt.j2").render(
            message=ctx.message.text,
            candidates=[self.data.entries[e].questions[0] for e in shortlist])
        started = time.monotonic()
        # the model the llm plugin is configured with (skillbot_ask_model): None = no model, or
        # no answer in time; then the scores decide
        text = await self.bot.hooks.ask_model([{"role": "user", "content": prompt}], cfg.assist_timeout)
        if text is None:
            ctx.extra["faq_assist"] = {"outcome": "kept best (no model answer)",
                                       "ms": round((time.monotonic() - started) * 1000)}
            return best
        pick = picked_number(text)
        ms = round((time.monotonic() - started) * 1000)
        if pick == 0:
            ctx.extra["faq_assist"] = {"outcome": "none", "ms": ms}
            return None
        chosen = shortlist[pick - 1] if 1 <= pick <= len(shortlist) else best
        ctx.extra["faq_assist"] = {"outcome": chosen, "ms": ms, "shortlist": shortlist}
        return chosen

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
        score = best.score
        slots = {"faq_id": best.entry_id, "question": best.question, "alternatives": alternatives}
        # A lexical hit sure enough to skip the embedding must be about this entry, not share one
        # word with it: 台湾有多少人口 holds the keyword 台湾 of "台湾澳门能送吗" but 人口 is in
        # none of the entry's words. Below ``sure_coverage`` the score stays under
        # semantic.skip_above, so the message is embedded and the decline model decides.
        skip_above = self._skip_above()
        # the router adds the priority nudge before comparing with skip_above
        nudge = min(PRIORITY_CAP, max(0.0, 0.01 * self.config.priority))
        if skip_above is not None and score + nudge >= skip_above:
            cover = float(index.coverage(text, tokens)[0][index.entry_ids.index(best.entry_id)])
            slots["coverage"] = round(cover, 4)
            if cover < self.config.sure_coverage:
                score = max(0.0, skip_above - 0.01 - nudge)
        return score, slots

    def _skip_above(self) -> float | None:
        """semantic.skip_above when this FAQ's embeddings are ready (None: lexical only)."""
        if (self.bot is None or self.dense is None or self.index is None
                or self.dense.version != self.index.data.version):
            return None
        return self.bot.settings.semantic.skip_above

    def semantic_score(self, text: str, tokens: list[str], query: Any) -> tuple[float, dict[str, Any]]:
        """The router's scorer when the message's embedding is known: the decline model's
        probability of the best entry, with a trusted lexical score fused (``rank``)."""
        index, dense = self.index, self.dense
        if index is None:
            return 0.0, {}
        if dense is None or dense.version != index.data.version:
            return self.score(text, tokens)
        key = f"{index.data.version}:{query.model}:{text}"
        found = self.lookups.get(key)
        if found is None:
            found = self.hybrid_lookup(index, dense, text, tokens, query)
            self.lookups[key] = found
        if self.question_log is not None:
            with self._unsure_lock:
                self._unsure[key] = found
                while len(self._unsure) > UNSURE_KEPT:
                    self._unsure.popitem(last=False)
        return found[0], dict(found[1])

    def raw_scores(self, index: FaqIndex, dense: DenseFaq, text: str, tokens: list[str],
                   query: Any) -> RawScores | None:
        """What the decline model reads about a message, per entry (``index.entry_ids`` order)."""
        cosines = dense.entry_cosines(query.model, query.vector, index.entry_ids)
        if cosines is None:
            return None
        general = dense.general(query.model, query.vector, self.config.general_calibration)
        general_raw = dense.general(query.model, query.vector, 0.0)
        if general is None:  # no anchors: nothing to compare with, the entries alone decide
            general = general_raw = float(np.min(cosines[0]))
        matches = {m.entry_id: m for m in index.search(text, tokens, limit=len(index.entry_ids))}
        cover_q, cover_a, cover_all, content = index.coverages(text, tokens)
        centroid = dense.centroid(query.model, query.vector)
        # the second model's view (None: e5's cosines stand in, decline.pair_features)
        u_cos, uj_cos, u_general = (dense.second_cosines(getattr(query, "second", None), index.entry_ids)
                                    or (None, None, None))
        return RawScores(u_cos=u_cos, uj_cos=uj_cos, u_general=u_general,
                         q_cos=cosines[0], a_cos=cosines[1], s_cos=cosines[2], j_cos=cosines[3],
                         cover_all=cover_all, c_cos=-1.0 if centroid is None else centroid,
                         anchors=dense.anchor_z(query.model), content=content,
                         register=self.register.logit(query.model, query.vector) if self.register else 0.0,
                         lexical=np.array([matches[e].score if e in matches else 0.0 for e in index.entry_ids]),
                         cover_q=cover_q, cover_a=cover_a, general=general,
                         general_raw=general_raw, chars=len(text),
                         questions={e: m.question for e, m in matches.items()})

    def probabilities(self, index: FaqIndex, dense: DenseFaq, text: str, tokens: list[str],
                      query: Any) -> tuple[RawScores, np.ndarray, np.ndarray] | None:
        """The raw scores, each entry's probability of answering the message (the decline model,
        with a trusted lexical score fused) and which lexical scores are trusted (``rank``)."""
        raw = self.raw_scores(index, dense, text, tokens, query)
        if raw is None:
            return None
        probabilities = without_content(raw, self.decline_model.probabilities(pair_features(raw)))
        # a strong lexical hit is evidence the dense features do not see (a shop's keywords)
        # when the entry's words cover the message (sure_coverage; one shared keyword does not)
        # or the message is nearer to the entry's questions than to any general question
        cfg = self.config
        trusted = (raw.lexical >= cfg.lexical_trust) & (
            (raw.cover_q >= cfg.sure_coverage) | (raw.q_cos - raw.general >= cfg.lexical_general_margin))
        lexical = np.where(trusted, raw.lexical, 0.0)
        return raw, 1.0 - (1.0 - probabilities) * (1.0 - lexical), trusted

    def rank(self, index: FaqIndex, dense: DenseFaq, text: str, tokens: list[str],
             query: Any) -> tuple[list[tuple[float, str, float, float, str, float]], RawScores | None]:
        """Every entry, best first: (probability, id, lexical score, dense cosine, question,
        best question's cosine); and the raw scores they came from (``raw_scores``).

        The probability that an entry answers the message comes from the learned decline model
        (``plugins/faq/decline.py``, fitted on the tuning sets by scripts/train_faq_decline.py)
        over the entry's features; the shipped model's are the cosine of the entry's questions
        and answer embedded as one passage, how far its best question (and its best question or
        answer sentence) stands above every other entry's, the share of the message its answer
        holds, and the message's register (``register.py``: does it read like a customer's
        question to a business at all). A lexical score of at least ``lexical_trust`` is fused with it as a noisy OR when the
        entry's questions and keywords cover at least ``sure_coverage`` of the message, or its
        best question is ``lexical_general_margin`` nearer to the message than the nearest
        general question (weaker overlaps, or one keyword shared with a general question,
        mislead more than they help once the embedding is known). The dense
        cosine shown is the mean of the best question's and the answer's.

        The first entry is then the re-ranker's choice among the few most probable
        (``plugins/faq/rerank.py``; never against a trusted lexical hit), so it may have a
        lower probability than the second: whether the FAQ answers is decided by the highest.
        """
        scored = self.probabilities(index, dense, text, tokens, query)
        if scored is None:
            return [], None
        raw, probabilities, trusted = scored
        ranked = []
        for n, entry_id in enumerate(index.entry_ids):
            q_cos, a_cos = float(raw.q_cos[n]), float(raw.a_cos[n])
            cos = (q_cos + a_cos) / 2 if a_cos > -1.0 else q_cos
            ranked.append((float(probabilities[n]), entry_id, float(raw.lexical[n]), cos,
                           raw.questions.get(entry_id) or index.data.entries[entry_id].questions[0], q_cos))
        ranked.sort(key=lambda r: (-r[0], -r[3], r[1]))
        position = {entry_id: n for n, entry_id in enumerate(index.entry_ids)}
        order = [position[r[1]] for r in ranked]
        chosen = self.reranker.choose(probabilities, raw, order, trusted) if self.reranker else order[0]
        if chosen != order[0]:
            ranked.insert(0, ranked.pop(order.index(chosen)))
        return ranked, raw

    def hybrid_lookup(self, index: FaqIndex, dense: DenseFaq, text: str, tokens: list[str],
                      query: Any) -> tuple[float, dict[str, Any]]:
        ranked, raw = self.rank(index, dense, text, tokens, query)
        if not ranked or raw is None:
            return 0.0, {}
        general = raw.general
        _, entry_id, lex, cos, question, q_cos = ranked[0]
        # the re-ranker chooses which entry answers; whether one does is the best probability's call
        probability = max(r[0] for r in ranked)
        ranking = [(r[1], round(r[0], 4), round(r[2], 4), round(r[3], 4)) for r in ranked[:5]]
        # No "similarity" slot: the FAQ has compared the message with the general questions
        # itself (calibrated to this FAQ), so the router's uncalibrated rule must not again.
        explained = {"lexical": round(lex, 4), "dense": round(cos, 4), "question_cosine": round(q_cos, 4),
                     "general": round(general, 4) if general is not None else None,
                     "probability": round(probability, 4),
                     # the message and the business as a whole: its cosine with the FAQ's
                     # centroid and the share of its words found anywhere in the FAQ
                     "centroid": round(raw.c_cos, 4), "faq_coverage": round(raw.cover_all, 4),
                     # the message alone: the log-odds that it reads like a customer's question
                     "register": round(raw.register, 3)}
        threshold = self.config.semantic_threshold
        if probability < threshold:
            return 0.0, {**explained, "nearest": entry_id, "fused": round(probability, 4), "ranking": ranking}
        explained["fused"] = round(probability, 4)
        # against other skills the FAQ claims as strongly as its lexical evidence alone would
        # (天气预报这个APP怎么退款: the weather skill's keyword must not outrank the refund entry)
        strength = max(probability, lex if lex >= self.config.lexical_trust else 0.0)
        return self.router_score(strength), {
            "faq_id": entry_id, "question": question, **explained,
            "alternatives": [r[1] for r in ranked[1:3] if r[0] >= threshold], "ranking": ranking}

    def router_score(self, probability: float) -> float:
        """The router's score of an accepted entry: its probability mapped from
        ``semantic_threshold`` .. 1 to 0.5 .. 1 (a claim as strong as one keyword, or more)."""
        t = self.config.semantic_threshold
        return 0.5 + 0.5 * (probability - t) / max(1e-9, 1.0 - t)

    async def _embed(self) -> None:
        """Embed the loaded FAQ's questions and answers (disk-cached by content)."""
        data = self.data
        embeddings = self.bot.embeddings if self.bot is not None else None
        if data is None or embeddings is None or not embeddings.enabled:
            return
        if self.dense is not None and self.dense.version == data.version:
            return
        self.dense = await DenseFaq.build(data, embeddings, load_general_questions())
        self.lookups = TTLCache(maxsize=self.config.cache_size, ttl=self.config.cache_ttl)

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
                if await asyncio.to_thread(self.reload_if_changed):
                    await self._embed()
            except Exception:  # never let the watcher die silently
                log.exception("FAQ reload check failed")

    def _stop_watcher(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

"""The intent router: scores every declared intent for a message and ranks the candidates.

Scoring (every feature is precomputed when the router is built; see docs/routing.md):

* Non-text messages: an intent whose ``msg_types`` holds the message type, or whose ``events``
  holds the event name (case-insensitive; for CLICK also ``event_keys`` when given), scores 1.0.
* Text, from four kinds of evidence, each a strength in [0, 1]:

  - keywords: a declared word (or synonym) found in the message. Single-character words must be a
    whole jieba token (冷 matches 好冷 only if jieba cuts 冷 alone); longer words also match as a
    substring of the normalised text, because jieba may glue them to a neighbour (天气预报 holds
    天气). A word inside another matched word counts once. Strength: 0.5 for one keyword,
    +0.1 for each further distinct keyword, at most 0.8.
  - patterns: the first regular expression (Python ``re``, searched in the raw text) that matches
    gives 0.7; its named groups become slots.
  - examples: similarity s to the closest example utterance (``SimilarityIndex``), rescaled to
    ``(s - 0.3) / 0.7`` so that sharing a word like 今天 with an example ("今天会下雨吗") is
    no evidence at all; alone an example needs s >= 0.55 to clear the default threshold.
  - scorer: the intent's own ``scorer(text, tokens)`` (the FAQ's retrieval), in [0, 1].

  The strengths are combined as a noisy OR, ``1 - prod(1 - s)``: any one piece of evidence
  counts alone and agreeing evidence adds up, never past 1.
* Priority nudges a score that is already above 0 by ``0.01 * priority`` (at most +-0.05).
* With the message's embedding (second pass, see below), two more pieces of evidence:

  - example similarity: the best cosine between the message and the intent's examples (all
    embedded once when the router is built), rescaled to ``(cos - DENSE_FLOOR) / (DENSE_CEIL -
    DENSE_FLOOR)``: the fine-tuned e5's cosines between unrelated sentences sit far lower than
    the base model's (0.80-0.85), close paraphrases still above 0.9;
  - a ``semantic_scorer`` replaces the intent's ``scorer`` (the FAQ fuses its lexical and dense
    scores there) and may report its best cosine as the slot ``similarity`` (one that compares
    the message with the general questions itself, as the FAQ does, reports none).

  General questions: the router also embeds a list of questions meant for the model
  (``core/processing/data/general_questions.txt``: science, history, how-to, chit-chat, many of them with a
  weather or shopping word in them). A skill whose own best cosine is below the message's best
  cosine with those anchors by ``GENERAL_MARGIN`` or more is not chosen, unless a pattern or
  a message type matched or the skill's own lexical scorer is sure (``SCORER_TRUST``):
  台风是怎么形成的 holds the weather word 台风, but it is far closer to
  彩虹是怎么形成的 than to any weather example.

Two passes: the bot routes lexically first; when the best score is below ``semantic.skip_above``
it embeds the message (off the event loop, cached) and routes again with the vector.

Bounds: routing reads only the first ``max_text_chars`` characters of a text (``[router]
max_text_chars``), so a 60 KB message costs what a 500-character one does. ``route_off_loop``
runs tokenising and scoring of a text in the process's single routing thread, never on the event
loop: jieba's HMM is pure Python and grows faster than linearly with the length of a run of
characters, and even bounded work must not hold every other user's request. One thread (not a
pool) keeps the skills' scorers single-threaded, as they were written.

Kept routes (docs/routing.md): per short text the router keeps its analysis (normalised text,
tokens, weighted terms, each intent's keyword and example evidence), the answers of scorers
declared pure (``Intent.memo_key``) and, when every scorer is, the text's final route
(``memo_key`` / ``recall`` / ``remember``, used by ``Bot.understand``). A text whose analysis is
kept costs no jieba and is scored on the event loop while the routing thread is idle.

Decision: candidates with a score at or above ``threshold`` are ``chosen`` and tried in order of
score. When the best two chosen candidates are less than ``margin`` apart, the result is
``ambiguous`` and the near-tie group (every chosen candidate within ``margin`` of the best) is
tried in order of priority first (higher first), then score; candidates below the group follow
by score. So noise between near-equal scores never decides between skills of different
priority; between equal priorities the score order stands. Every skill in ``chosen`` may still
decline, and the pipeline then tries the next one, and finally the fallback.
"""
from __future__ import annotations

import asyncio
import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Hashable, Iterable

import numpy as np

from .intents import Candidate, Intent, RouteResult
from .normalizer import normalize_text

log = logging.getLogger("skillbot.router")

KEYWORD_BASE = 0.5
KEYWORD_STEP = 0.1
KEYWORD_MAX = 0.8
PATTERN_SCORE = 0.7
EXAMPLE_FLOOR = 0.3
PRIORITY_STEP = 0.01
PRIORITY_CAP = 0.05
#: Cosines (e5, "query: " on both sides) mapped to strength 0 and 1. Set for the fine-tuned
#: model by quantile: the base model's 0.86 and 0.95 sit at the 0.408 and 0.979 quantiles of each
#: weather and general tuning message's best cosine with the weather examples (the messages of
#: session 5's mapping, so the mapping does not move with the files added since); the same
#: quantiles of session 7's fine-tuned model are 0.485 and 0.934 (``experiment_finetune_e5.py
#: cosines``; session 5's model: 0.48 and 0.936, session 6's: 0.462 and 0.919). Checked through
#: the bot in docs/routing.md.
DENSE_FLOOR = 0.485
DENSE_CEIL = 0.934
#: A skill this much less similar to the message than the general-question anchors is not chosen.
#: The base model's 0.01 mapped the same way (the 0.458 quantile of the anchor-minus-example
#: cosine on those messages; session 5's model: 0.097, session 6's: 0.121).
GENERAL_MARGIN = 0.096
#: A lexical scorer at least this sure exempts its skill from the general-question rule.
SCORER_TRUST = 0.6
GENERAL_QUESTIONS = Path(__file__).parent / "data" / "general_questions.txt"


def dense_strength(cos: float) -> float:
    return min(1.0, max(0.0, (cos - DENSE_FLOOR) / (DENSE_CEIL - DENSE_FLOOR)))


def load_general_questions(path: Path = GENERAL_QUESTIONS) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]

class RoutingThread:
    """The one thread that tokenises and scores texts for every router in the process (see
    above), and whether it is idle: nothing submitted that has not returned (counted until the
    routed function returns, not until its caller resumes, so a cancelled caller does not make it
    look idle while it still scores)."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="skillbot-routing")
        self._lock = threading.Lock()
        self._busy = 0

    def idle(self) -> bool:
        return self._busy == 0

    async def run(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            self._busy += 1
        try:
            future = self.executor.submit(fn, *args)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        return await asyncio.wrap_future(future)

    def _done(self, _future: Any) -> None:
        with self._lock:
            self._busy -= 1


_ROUTING_THREAD = RoutingThread()
#: Texts whose analysis and whole route a router keeps, and answers each pure scorer keeps
#: (``Intent.memo_key``); only texts of at most ``MEMO_MAX_CHARS`` characters (questions; a long
#: text is rarely sent twice and would hold much memory).
MEMO_TEXTS = 1024
MEMO_MAX_CHARS = 64


class Memo:
    """A bounded map read on the event loop and written in the routing thread.

    ``get`` and ``put`` are single dictionary operations (atomic under the GIL), so neither
    thread locks; when full, the oldest entry goes (a frequent text comes back at its next use).
    """

    def __init__(self, size: int = MEMO_TEXTS) -> None:
        self.size = size
        self.data: dict[Hashable, Any] = {}

    def __len__(self) -> int:
        return len(self.data)

    def get(self, key: Hashable) -> Any:
        return self.data.get(key)

    def put(self, key: Hashable, value: Any) -> None:
        data = self.data
        if len(data) >= self.size:
            try:
                del data[next(iter(data))]
            except (KeyError, RuntimeError, StopIteration):  # the other thread changed it meanwhile
                pass
        data[key] = value


class SimilarityIndex:
    """How much of a stored text a query contains, and how much of the query it explains.

    Texts are weighted term sets (``Segmenter.features``: tokens, sub-words and characters with
    IDF weights). For a query q and a stored text d, with shared = sum over common terms of the
    smaller of the two weights, and W(x) the summed weights of x:

        contained = shared / W(d)     (how much of the stored text the query says)
        explained = shared / W(q)     (how much of the query the stored text covers)
        score     = contained ** alpha * explained ** (1 - alpha)

    With ``alpha = 0.5`` and equal weights this is the cosine of the two sets' square-root-IDF
    vectors; the default 0.6 leans toward containment, since a user's message often wraps a
    stored question in extra words ("请问一下，你们怎么退款呀"). The weights come from a fixed,
    external IDF table, so a score depends only on the two texts, never on how many others are
    stored: the same threshold means the same thing for a 10-entry and a 5,000-entry FAQ.

    Queries walk an inverted index, so their cost grows with the stored texts that share a term,
    not with the number stored.
    """

    def __init__(self, alpha: float = 0.6) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError("alpha must be in [0, 1]")
        self.alpha = alpha
        self.keys: list[Hashable] = []
        self.totals: list[float] = []
        #: term -> [(weight in the stored texts, [their indexes])]: a term has few distinct
        #: weights (word, sub-word, character), so a query adds one number per group.
        self.postings: dict[str, list[tuple[float, list[int]]]] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, key: Hashable, features: dict[str, float]) -> None:
        """Store one text under ``key`` (several texts may share a key: an entry's phrasings)."""
        total = sum(features.values())
        if total <= 0:
            return
        doc = len(self.keys)
        self.keys.append(key)
        self.totals.append(total)
        for term, weight in features.items():
            groups = self.postings.setdefault(term, [])
            for group_weight, docs in groups:
                if group_weight == weight:
                    docs.append(doc)
                    break
            else:
                groups.append((weight, [doc]))

    def overlaps(self, query: dict[str, float], min_weight: float = 0.0) -> dict[int, float]:
        """Shared weight per stored text that shares at least one term with the query.

        Query terms lighter than ``min_weight`` are not walked (they still count in the query's
        total, so skipping them only ever lowers a score).
        """
        acc: dict[int, float] = {}
        get = acc.get
        postings = self.postings
        for term, weight in query.items():
            if weight < min_weight:
                continue
            groups = postings.get(term)
            if groups:
                for doc_weight, docs in groups:
                    add = weight if weight < doc_weight else doc_weight
                    for doc in docs:
                        acc[doc] = get(doc, 0.0) + add
        return acc

    def bounds(self, threshold: float, query_total: float) -> tuple[float, float]:
        """(shared >= a, shared >= b * total(d)) must both hold for a score >= threshold.

        Since contained and explained are at most 1, score >= t needs explained >= t ** (1 / (1 -
        alpha)) and contained >= t ** (1 / alpha): a cheap filter before computing scores.
        """
        if threshold <= 0:
            return 0.0, 0.0
        need_explained = threshold ** (1.0 / (1.0 - self.alpha)) if self.alpha < 1 else 0.0
        need_contained = threshold ** (1.0 / self.alpha) if self.alpha > 0 else 0.0
        return need_explained * query_total, need_contained

    def score(self, shared: float, query_total: float, doc: int) -> float:
        contained = min(1.0, shared / self.totals[doc])
        explained = min(1.0, shared / query_total)
        return contained ** self.alpha * explained ** (1.0 - self.alpha)

    def best(self, query: dict[str, float]) -> tuple[float, int]:
        """The best score over every stored text and that text's index (-1 when none shares a term)."""
        query_total = sum(query.values())
        top, top_doc = 0.0, -1
        if query_total <= 0:
            return top, top_doc
        for doc, shared in self.overlaps(query).items():
            s = self.score(shared, query_total, doc)
            if s > top:
                top, top_doc = s, doc
        return top, top_doc


def noisy_or(strengths: Iterable[float]) -> float:
    miss = 1.0
    for s in strengths:
        miss *= 1.0 - min(1.0, max(0.0, s))
    return 1.0 - miss


class _Analysis:
    """A text as scoring reads it (``IntentRouter._analyse``)."""

    __slots__ = ("text", "norm", "tokens", "token_set", "features", "lexical")

    def __init__(self, text: str, norm: str, tokens: tuple[str, ...], features: dict[str, float]) -> None:
        self.text, self.norm, self.tokens, self.features = text, norm, tokens, features
        self.token_set = frozenset(tokens)
        #: per compiled intent: (keyword hits, best example (score, index)), filled as scored
        self.lexical: dict[Any, tuple[list[str], tuple[float, int]]] = {}


class _CompiledIntent:
    """An intent with everything the router needs precomputed."""

    def __init__(self, intent: Intent, segmenter: Any) -> None:
        self.intent = intent
        where = f"intent {intent.name!r}" + (f" (plugin {intent.plugin})" if intent.plugin else "")
        self.single: dict[str, str] = {}   # one-character word -> canonical
        self.multi: dict[str, str] = {}    # longer word -> canonical
        if isinstance(intent.keywords, dict):
            groups = [(canon, [canon, *(syns or [])]) for canon, syns in intent.keywords.items()]
        else:
            groups = [(word, [word]) for word in intent.keywords]
        for canon, words in groups:
            for word in words:
                if not isinstance(word, str):
                    raise ValueError(f"{where}: keyword {word!r} is not a string")
                norm = normalize_text(word)
                if norm:
                    (self.single if len(norm) == 1 else self.multi)[norm] = canon
        self.patterns: list[re.Pattern[str]] = []
        for pattern in intent.patterns:
            if "\\b" in pattern:
                log.warning("%s: pattern %r uses \\b, which does not separate Chinese words",
                            where, pattern)
            try:
                self.patterns.append(re.compile(pattern))
            except re.error as exc:
                raise ValueError(f"{where}: bad pattern {pattern!r}: {exc}") from None
        #: (text, tokens, memo key) -> the lexical scorer's answer, when the intent declares ``memo_key``.
        self.scorer_memo: Memo | None = Memo() if intent.memo_key is not None else None
        self.examples = SimilarityIndex()
        for i, example in enumerate(intent.examples):
            self.examples.add(i, segmenter.features(segmenter.tokenize(normalize_text(example))))
        #: model -> matrix of the examples' embeddings (filled by ``IntentRouter.embed``).
        self.example_vectors: dict[str, np.ndarray] = {}
        self.msg_types = {t.lower() for t in intent.msg_types}
        self.events = {e.lower() for e in intent.events}
        self.event_keys = set(intent.event_keys)
        self.nudge = max(-PRIORITY_CAP, min(PRIORITY_CAP, PRIORITY_STEP * intent.priority))

    def type_match(self, message: Any) -> str | None:
        if message is None:
            return None
        msg_type = str(getattr(message, "msg_type", "")).lower()
        if msg_type and msg_type in self.msg_types:
            return f"msg_type={msg_type}"
        if getattr(message, "is_event", False):
            event = str(getattr(message, "event", "")).lower()
            if event and event in self.events:
                if event == "click" and self.event_keys and getattr(message, "key", None) not in self.event_keys:
                    return None
                return f"event={event}"
        return None

    def keyword_hits(self, norm: str, token_set: set[str]) -> list[str]:
        found = [w for w in self.multi if w in norm]
        found += [w for w in self.single if w in token_set]
        if len(found) > 1:
            found = [w for w in found if not any(w != o and w in o for o in found)]
        canon: list[str] = []
        for w in found:
            c = self.single.get(w) if len(w) == 1 else self.multi.get(w)
            if c not in canon:
                canon.append(c)
        return canon


class IntentRouter:
    """Ranks every declared intent for a message (see the module docstring for the scoring)."""

    def __init__(self, intents: list[Intent], segmenter: Any, threshold: float = 0.35,
                 margin: float = 0.05, max_text_chars: int = 500) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("router threshold must be in [0, 1]")
        if not 0.0 <= margin <= 1.0:
            raise ValueError("router margin must be in [0, 1]")
        if max_text_chars < 1:
            raise ValueError("router max_text_chars must be at least 1")
        self.max_text_chars = max_text_chars
        self.segmenter = segmenter
        self.threshold = threshold
        self.margin = margin
        self.intents = list(intents)
        self._compiled = [_CompiledIntent(intent, segmenter) for intent in self.intents]
        #: model -> matrix of the general-question anchors' embeddings.
        self.general_vectors: dict[str, np.ndarray] = {}
        scoring = [ci.intent for ci in self._compiled if ci.intent.scorer or ci.intent.semantic_scorer]
        #: Whether a text's whole route is a function of the text and the intents' memo keys.
        self.memoisable = all(intent.memo_key is not None for intent in scoring)
        self._memo_keys = [intent.memo_key for intent in scoring]
        self._routes = Memo()
        self._analyses = Memo()

    async def embed(self, embeddings: Any, general_questions: list[str] | None = None) -> None:
        """Embed every intent's examples and the general-question anchors (disk-cached)."""
        if embeddings is None or not embeddings.enabled:
            return
        texts: list[str] = []
        spans: list[tuple[_CompiledIntent, int, int]] = []
        for ci in self._compiled:
            if ci.intent.examples:
                spans.append((ci, len(texts), len(texts) + len(ci.intent.examples)))
                texts.extend(ci.intent.examples)
        if texts:
            matrices = await embeddings.embed_set(texts, "query")
            for ci, start, end in spans:
                ci.example_vectors = {model: m[start:end] for model, m in matrices.items()}
        general = load_general_questions() if general_questions is None else general_questions
        if general and self.needs_vectors:
            self.general_vectors = await embeddings.embed_set(general, "query")

    @property
    def needs_vectors(self) -> bool:
        """Whether a message's embedding can change a route: some intent has embedded examples
        or a semantic scorer (the general-question anchors alone only ever demote those)."""
        return any(ci.example_vectors or ci.intent.semantic_scorer for ci in self._compiled)

    def memo_key(self, message: Any, text: str | None) -> Hashable | None:
        """The key under which a text message's final route may be kept (``remember``), or None
        when it may not: some intent's scorer is not declared pure, or the message has no text
        or is an event."""
        if (not self.memoisable or not text or len(self.bounded(text)) > MEMO_MAX_CHARS
                or getattr(message, "is_event", False)):
            return None
        try:
            keys = tuple(key() for key in self._memo_keys)
        except Exception:
            log.exception("an intent's memo_key raised; the route is not memoised")
            return None
        return (self.bounded(text), str(getattr(message, "msg_type", "")), keys)

    def recall(self, key: Hashable | None) -> RouteResult | None:
        """A copy of the route kept under ``key``, if any (on the event loop: no thread)."""
        if key is None:
            return None
        route = self._routes.get(key)
        return route.copy() if route is not None else None

    def remember(self, key: Hashable | None, route: RouteResult) -> None:
        """Keep a message's final route (after both passes) for the next message with its text."""
        if key is not None:
            self._routes.put(key, route.copy())

    def _analyse(self, raw: str, tokens: list[str] | None) -> "_Analysis":
        """What scoring reads of a text besides the intents' own scorers (normalised text, jieba
        tokens, weighted terms): a pure function of the text for this router, kept per text."""
        keep = len(raw) <= MEMO_MAX_CHARS
        found = self._analyses.get(raw) if keep else None
        if found is not None and (tokens is None or found.tokens == tuple(tokens)):
            return found
        text = normalize_text(raw)
        if tokens is None:
            tokens = self.segmenter.tokenize(text) if text else []
        else:
            keep = False  # a caller's own tokens are not the text's analysis
        norm = self.segmenter.normalize(text) if text else ""
        analysis = _Analysis(text, norm, tuple(tokens), self.segmenter.features(tokens) if text else {})
        if keep:
            self._analyses.put(raw, analysis)
        return analysis

    def bounded(self, text: str | None) -> str:
        """The part of a text that routing reads: its first ``max_text_chars`` characters."""
        return (text or "")[:self.max_text_chars]

    async def route_off_loop(self, message: Any, text: str | None, tokens: list[str] | None = None,
                             query: Any = None, previous: RouteResult | None = None) -> RouteResult:
        """``route`` of the bounded text, tokenised and scored in the routing thread.

        Messages without text (events, media) are routed here directly: matching a type costs
        nothing. The result's ``tokens`` are those of the bounded, normalised text.
        """
        text = self.bounded(text)
        if not text:
            return self.route(message, "", [])
        if _ROUTING_THREAD.idle() and self.analysed(text, tokens):
            # A short text seen before costs no jieba: scored here, while the routing thread is
            # idle (so no scorer ever runs in two threads at once), without the two thread hops.
            return self.route(message, text, tokens, query, previous)
        return await _ROUTING_THREAD.run(self.route, message, text, tokens, query, previous)

    def analysed(self, text: str, tokens: list[str] | None = None) -> bool:
        """Whether a (bounded) text's analysis is kept, so routing it again costs no tokenising."""
        found = self._analyses.get(text)
        return found is not None and (tokens is None or found.tokens == tuple(tokens))

    def route(self, message: Any, text: str | None, tokens: list[str] | None = None,
              query: Any = None, previous: RouteResult | None = None) -> RouteResult:
        """Rank the intents for a message; ``query`` is its embedding (``Embedded``) if computed.

        ``previous``: the lexical route of the same text, whose lexical scorers' answers are
        reused (a second pass costs the dense part only).

        The text is cut to ``max_text_chars`` first, then normalised (``normalize_text``);
        patterns search the cut raw text, everything else the normalised one.
        """
        raw = self.bounded(text)
        analysis = self._analyse(raw, tokens)
        text, norm, features = analysis.text, analysis.norm, analysis.features
        tokens = list(analysis.tokens)  # the caller's own list: a skill may change ctx.tokens
        candidates: list[Candidate] = []
        vector = getattr(query, "vector", None)
        model = getattr(query, "model", "")
        general: float | None = None
        if vector is not None and model in self.general_vectors:
            general = float(np.max(self.general_vectors[model] @ vector))
        demoted: set[int] = set()
        scored: dict[str, tuple[float, dict[str, Any]]] = {}
        token_set = analysis.token_set
        for ci in self._compiled:
            intent = ci.intent
            strengths: list[float] = []
            slots: dict[str, Any] = {}
            evidence: dict[str, Any] = {}
            matched_type = ci.type_match(message)
            if matched_type:
                evidence["type"] = matched_type
                strengths.append(1.0)
            if text and not matched_type:
                lexical = analysis.lexical.get(ci)
                if lexical is None:  # the intent's declared words and examples: pure, kept per text
                    lexical = analysis.lexical[ci] = (
                        ci.keyword_hits(norm, token_set) if (ci.single or ci.multi) else [],
                        ci.examples.best(features) if len(ci.examples) else (0.0, -1))
                hits = list(lexical[0])
                lexical_strengths: list[float] = []
                if hits:
                    evidence["keywords"] = hits
                    strengths.append(min(KEYWORD_MAX, KEYWORD_BASE + KEYWORD_STEP * (len(hits) - 1)))
                    lexical_strengths.append(strengths[-1])
                for pattern in ci.patterns:
                    match = pattern.search(raw)
                    if match:
                        evidence["pattern"] = pattern.pattern
                        slots.update({k: v for k, v in match.groupdict().items() if v is not None})
                        strengths.append(PATTERN_SCORE)
                        break
                similarity: float | None = None
                if vector is not None and model in ci.example_vectors:
                    similarity = float(np.max(ci.example_vectors[model] @ vector))
                    evidence["example_similarity"] = round(similarity, 4)
                    if dense_strength(similarity) > 0:
                        strengths.append(dense_strength(similarity))
                if len(ci.examples):
                    sim, doc = lexical[1]
                    if sim > 0:
                        evidence["example"] = intent.examples[ci.examples.keys[doc]]
                        evidence["example_score"] = round(sim, 4)
                        if sim > EXAMPLE_FLOOR:
                            strengths.append((sim - EXAMPLE_FLOOR) / (1.0 - EXAMPLE_FLOOR))
                            lexical_strengths.append(strengths[-1])
                scorer = intent.scorer
                args: tuple = (text, tokens)
                if vector is not None and intent.semantic_scorer is not None:
                    scorer, args = intent.semantic_scorer, (text, tokens, query)
                if scorer is not None:
                    if scorer is intent.scorer and previous is not None and intent.name in previous.scored:
                        # the second pass: a lexical scorer's answer cannot have changed
                        own, own_slots = previous.scored[intent.name]
                    else:
                        memo, found = None, None
                        if ci.scorer_memo is not None and scorer is intent.scorer and len(raw) <= MEMO_MAX_CHARS:
                            try:
                                memo = ci.scorer_memo, (text, tuple(tokens), intent.memo_key())  # type: ignore[misc]
                            except Exception:
                                log.exception("intent %s (plugin %s): memo_key raised",
                                              intent.name, intent.plugin)
                            else:
                                found = memo[0].get(memo[1])
                        if found is not None:
                            own, own_slots = found[0], dict(found[1])
                        else:
                            try:
                                own, own_slots = scorer(*args)
                            except Exception:
                                log.exception("intent %s (plugin %s): scorer raised; scored 0",
                                              intent.name, intent.plugin)
                                own, own_slots, memo = 0.0, {}, None
                            if memo is not None:
                                memo[0].put(memo[1], (own, dict(own_slots or {})))
                        if scorer is intent.scorer:
                            scored[intent.name] = (own, own_slots)
                    own = min(1.0, max(0.0, float(own)))
                    evidence["scorer"] = round(own, 4)
                    own_slots = dict(own_slots or {})
                    if isinstance(own_slots.get("similarity"), (int, float)):
                        cos = float(own_slots["similarity"])
                        similarity = cos if similarity is None else max(similarity, cos)
                    if own > 0:
                        strengths.append(own)
                        slots.update(own_slots)
                # a skill's own lexical reading that is sure of the message is not overruled by
                # embeddings (pinyin and English weather questions are far from Chinese examples)
                trusted = scorer is intent.scorer and evidence.get("scorer", 0.0) >= SCORER_TRUST
                # ... nor is one whose declared words and examples alone are that sure
                lexical_strength = noisy_or(lexical_strengths)
                trusted = trusted or lexical_strength >= SCORER_TRUST
                if (general is not None and similarity is not None and "pattern" not in evidence
                        and not trusted and general - similarity >= GENERAL_MARGIN):
                    evidence["general_wins"] = round(general - similarity, 4)
                    demoted.add(id(intent))
            score = noisy_or(strengths)
            if score <= 0:
                continue
            if ci.nudge:
                score = min(1.0, max(0.0, score + ci.nudge))
            candidates.append(Candidate(intent=intent, score=score, slots=slots, evidence=evidence))
        candidates.sort(key=lambda c: -c.score)
        result = RouteResult(tokens=tokens, candidates=candidates, threshold=self.threshold,
                             margin=self.margin, normalized=text, model=model if vector is not None else "",
                             general=general, scored=scored)
        chosen = [c for c in candidates if c.score >= self.threshold and id(c.intent) not in demoted]
        if len(chosen) >= 2 and chosen[0].score - chosen[1].score < self.margin:
            result.ambiguous = True
            top = chosen[0].score
            group = [c for c in chosen if top - c.score < self.margin]
            rest = chosen[len(group):]
            group.sort(key=lambda c: (-c.intent.priority, -c.score))
            chosen = group + rest
        result.chosen = chosen
        if log.isEnabledFor(logging.DEBUG):
            log.debug("route %r -> %s%s; candidates %s", text[:60],
                      [c.name for c in chosen] or "fallback", " (ambiguous)" if result.ambiguous else "",
                      [(c.name, round(c.score, 3), c.slots, c.evidence) for c in candidates])
        return result

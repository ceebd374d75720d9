"""The FAQ engine: the operator's TOML file, its validation, and retrieval over jieba tokens.

Retrieval (details and the reasoning in docs/faq.md): every stored phrasing and every keyword of
every entry is a weighted term set (``Segmenter.features``: tokens, their dictionary sub-words and
characters, IDF weights from jieba's table). A message is compared with each of them by
``SimilarityIndex`` (containment and coverage of IDF mass, in [0, 1], independent of how many
entries exist); an entry's score is that of its best phrasing or keyword. Synonyms from the file's
``[synonyms]`` table are folded into their canonical word on both sides. An entry keyword found
in the message is also evidence on its own, of the strength the router gives a skill's keyword
(``KEYWORD_STRENGTH``); the two combine as a noisy OR, like the router's evidence. The result
stays in [0, 1] and still depends only on the message and the entry.
"""
from __future__ import annotations

import hashlib
import heapq
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ahocorasick
import jinja2
import jinja2.meta
import numpy as np

from core import KEYWORD_BASE, SimilarityIndex, noisy_or, normalize_text

#: Evidence strength of an entry keyword found in the message (the router's keyword strength).
KEYWORD_STRENGTH = KEYWORD_BASE
#: Query terms lighter than this are not looked up (see ``SimilarityIndex.overlaps``).
MIN_QUERY_WEIGHT = 0.0

#: Template variables that change per message; answers using them are never cached rendered.
PER_MESSAGE_VARIABLES = frozenset({"user", "nickname", "now", "date"})
ENTRY_KEYS = {"id", "questions", "answer", "keywords"}
TOP_KEYS = {"entry", "variables", "synonyms"}
ID_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


class FaqError(ValueError):
    """The FAQ file cannot be used; the message says where and why."""


@dataclass
class Entry:
    id: str
    questions: list[str]
    answer: str
    keywords: list[str]
    template: jinja2.Template = field(repr=False)
    #: The answer uses a per-message variable (user, nickname, now, date).
    dynamic: bool = False


@dataclass
class FaqData:
    entries: dict[str, Entry]
    #: variant -> canonical word
    synonyms: dict[str, str]
    variables: dict[str, str]
    #: Content hash of the file: cache keys include it, so an edited file never serves old answers.
    version: str
    source: str = ""

    def jieba_words(self) -> list[str]:
        """Keywords and synonyms, to keep whole when segmenting."""
        words: dict[str, None] = {}
        for entry in self.entries.values():
            for kw in entry.keywords:
                if len(kw) > 1:
                    words.setdefault(kw)
        for variant, canon in self.synonyms.items():
            for w in (variant, canon):
                if len(w) > 1:
                    words.setdefault(w)
        return list(words)


def _str_list(value: Any, where: str, allow_empty: bool = True) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FaqError(f"{where}: expected a list of strings")
    items = [v.strip() for v in value if v.strip()]
    if not items and not allow_empty:
        raise FaqError(f"{where}: must not be empty")
    return items


def parse_faq(raw: bytes, env: jinja2.Environment, source: str = "faq.toml") -> FaqData:
    """Validate and compile a FAQ file's content. Raises ``FaqError`` naming the problem."""
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise FaqError(f"{source}: not UTF-8 ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise FaqError(f"{source}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise FaqError(f"{source}: unknown key {unknown[0]!r} (known: {', '.join(sorted(TOP_KEYS))})")
    variables = data.get("variables", {})
    if not isinstance(variables, dict) or not all(isinstance(v, (str, int, float)) for v in variables.values()):
        raise FaqError(f"{source}: [variables] must map names to strings or numbers")
    synonyms: dict[str, str] = {}
    table = data.get("synonyms", {})
    if not isinstance(table, dict):
        raise FaqError(f"{source}: [synonyms] must be a table of word = [variants]")
    for canon, variants in table.items():
        for variant in _str_list(variants, f"{source}: synonyms.{canon}"):
            variant = normalize_text(variant)
            if variant in synonyms and synonyms[variant] != normalize_text(canon):
                raise FaqError(f"{source}: synonym {variant!r} listed under both "
                               f"{synonyms[variant]!r} and {canon!r}")
            synonyms[variant] = normalize_text(canon)
    raw_entries = data.get("entry", [])
    if not isinstance(raw_entries, list) or not raw_entries:
        raise FaqError(f"{source}: no [[entry]] tables")
    entries: dict[str, Entry] = {}
    for n, item in enumerate(raw_entries, 1):
        where = f"{source}: entry #{n}"
        if not isinstance(item, dict):
            raise FaqError(f"{where}: expected a table")
        entry_id = item.get("id")
        if not isinstance(entry_id, str) or not ID_RE.match(entry_id):
            raise FaqError(f"{where}: id must be letters, digits, '_', '-' or '.' (got {entry_id!r})")
        where = f"{source}: entry {entry_id!r}"
        if entry_id in entries:
            raise FaqError(f"{where}: duplicate id")
        extra = sorted(set(item) - ENTRY_KEYS)
        if extra:
            raise FaqError(f"{where}: unknown key {extra[0]!r} (known: {', '.join(sorted(ENTRY_KEYS))})")
        questions = _str_list(item.get("questions"), f"{where}: questions", allow_empty=False)
        keywords = [normalize_text(k) for k in _str_list(item.get("keywords", []), f"{where}: keywords")]
        answer = item.get("answer")
        if not isinstance(answer, str) or not answer.strip():
            raise FaqError(f"{where}: answer is missing or empty")
        try:
            parsed = env.parse(answer)
            template = env.from_string(parsed)
        except jinja2.TemplateSyntaxError as exc:
            raise FaqError(f"{where}: answer template line {exc.lineno}: {exc.message}") from None
        used = jinja2.meta.find_undeclared_variables(parsed)
        entries[entry_id] = Entry(entry_id, questions, answer.strip(), keywords, template,
                                  dynamic=bool(used & PER_MESSAGE_VARIABLES))
    return FaqData(entries=entries, synonyms=synonyms,
                   variables={k: str(v) for k, v in variables.items()},
                   version=hashlib.sha1(raw).hexdigest()[:12], source=source)


def load_faq(path: Path, env: jinja2.Environment) -> FaqData:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FaqError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_faq(raw, env, source=path.name)


@dataclass
class Match:
    """One entry's score for a message."""

    entry_id: str
    score: float
    #: The stored phrasing that matched best (the entry's first one when a keyword did).
    question: str
    #: Entry keywords found in the message.
    keywords: list[str]


class FaqIndex:
    """Retrieval over one loaded FAQ, built with the bot's segmenter (after plugin words are added)."""

    def __init__(self, data: FaqData, segmenter: Any) -> None:
        self.data = data
        self.segmenter = segmenter
        self._multi = ahocorasick.Automaton()
        self._single_syn: dict[str, str] = {}
        self._keyword_entries: dict[str, list[str]] = {}
        for variant, canon in data.synonyms.items():
            if len(variant) == 1:
                self._single_syn[variant] = canon
            else:
                self._multi.add_word(variant, ("syn", variant, canon))
        for entry in data.entries.values():
            for kw in entry.keywords:
                self._keyword_entries.setdefault(kw, []).append(entry.id)
        for kw, ids in self._keyword_entries.items():
            if len(kw) > 1:
                if self._multi.exists(kw):
                    kind, variant, canon = self._multi.get(kw)
                    self._multi.add_word(kw, ("both", variant, canon))
                else:
                    self._multi.add_word(kw, ("kw", kw, kw))
        self._has_multi = len(self._multi) > 0
        if self._has_multi:
            self._multi.make_automaton()
        # Every phrasing is a stored text; so is every keyword (a message containing the keyword
        # then contains that whole "text", and how much of the message it explains decides).
        self.index = SimilarityIndex()
        self._questions: list[str] = []
        for entry in data.entries.values():
            for text in (*entry.questions, *entry.keywords):
                # stored texts are read like messages: 營業時間 in the file meets 营业时间 typed
                norm = normalize_text(text)
                features, _ = self.features(norm, segmenter.tokenize(norm))
                before = len(self.index)
                self.index.add(entry.id, features)
                if len(self.index) > before:
                    self._questions.append(text if text in entry.questions else entry.questions[0])
        # How much of a message an entry's own words cover: all its questions and keywords as
        # one text, and its answer (whether a lexical hit may skip the embedding; features of
        # the learned decline model, plugins/faq/decline.py).
        self.entry_ids = list(data.entries)
        self.question_cover = SimilarityIndex()
        self.answer_cover = SimilarityIndex()
        # ... and how much of it the FAQ as a whole covers (every question, keyword and answer as
        # one text): a message sent to a business is about the business far more often than not
        self.faq_cover = SimilarityIndex()
        everything: dict[str, float] = {}
        for n, entry in enumerate(data.entries.values()):
            merged: dict[str, float] = {}
            for text in (*entry.questions, *entry.keywords):
                norm = normalize_text(text)
                for term, weight in self.features(norm, segmenter.tokenize(norm))[0].items():
                    merged[term] = max(weight, merged.get(term, 0.0))
            self.question_cover.add(n, merged)
            norm = normalize_text(answer_text(entry))
            answer_terms = self.features(norm, segmenter.tokenize(norm))[0]
            self.answer_cover.add(n, answer_terms)
            for term, weight in (*merged.items(), *answer_terms.items()):
                everything[term] = max(weight, everything.get(term, 0.0))
        self.faq_cover.add(0, everything)

    def features(self, text: str, tokens: list[str]) -> tuple[dict[str, float], dict[str, list[str]]]:
        """Weighted terms of a text after folding synonyms, and the entry keywords it contains."""
        norm = self.segmenter.normalize(text)
        folded = [self.data.synonyms.get(t, t) for t in tokens]
        hits: dict[str, list[str]] = {}

        def hit(word: str) -> None:
            for entry_id in self._keyword_entries.get(word, ()):
                words = hits.setdefault(entry_id, [])
                if word not in words:
                    words.append(word)

        if self._has_multi:
            spans: list[tuple[int, int, str]] = []
            for end, (kind, word, canon) in self._multi.iter(norm):
                if kind != "kw" and canon not in folded:
                    folded.append(canon)
                if kind != "syn":
                    spans.append((end - len(word) + 1, end, word))
            for start, end, word in spans:
                # a keyword inside a longer matched keyword (运费 in 免运费) does not count
                if not any(s <= start and end <= e and (e - s) > (end - start) for s, e, _ in spans):
                    hit(word)
        for i, token in enumerate(folded):
            if token in self._single_syn:
                folded[i] = token = self._single_syn[token]
            if token in self._keyword_entries:
                hit(token)
        return self.segmenter.features(folded), hits

    def coverage(self, text: str, tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per entry (``entry_ids`` order): the share of the message's term weight found in its
        questions and keywords, and in its answer."""
        return self.coverages(text, tokens)[:2]

    def coverages(self, text: str, tokens: list[str]) -> tuple[np.ndarray, np.ndarray, float, float]:
        """``coverage``, the share of the message's term weight found anywhere in the FAQ, and
        that weight itself (0: no content term, only stop words and chat filler)."""
        features, _ = self.features(text, tokens)
        total = sum(features.values())
        n = len(self.entry_ids)
        cover_q, cover_a = np.zeros(n), np.zeros(n)
        cover_all = 0.0
        if total > 0:
            for cover, index in ((cover_q, self.question_cover), (cover_a, self.answer_cover)):
                for doc, shared in index.overlaps(features).items():
                    cover[index.keys[doc]] = min(1.0, shared / total)
            for shared in self.faq_cover.overlaps(features).values():
                cover_all = min(1.0, shared / total)
        return cover_q, cover_a, cover_all, total

    def search(self, text: str, tokens: list[str], limit: int = 3, min_score: float = 0.0) -> list[Match]:
        """The best ``limit`` entries scoring at least ``min_score``, best first.

        With a ``min_score`` the stored texts that cannot reach it are skipped before scoring
        (``SimilarityIndex.bounds``), which is what keeps a 1,000-entry FAQ fast.
        """
        features, hits = self.features(text, tokens)
        query_total = sum(features.values())
        sims: dict[str, tuple[float, int]] = {}
        if query_total > 0:
            index = self.index
            # texts that cannot reach min_score are skipped before scoring; an entry with a
            # keyword in the message may get there with less similarity, so its texts never are
            floor_shared, floor_contained = index.bounds(min_score, query_total)
            totals, keys, score = index.totals, index.keys, index.score
            for doc, shared in index.overlaps(features, MIN_QUERY_WEIGHT).items():
                key = keys[doc]
                if (shared < floor_shared or shared < floor_contained * totals[doc]) and key not in hits:
                    continue
                s = score(shared, query_total, doc)
                if s > sims.get(key, (0.0, -1))[0]:
                    sims[key] = (s, doc)
        matches = []
        for entry_id in sims.keys() | hits.keys():
            sim, doc = sims.get(entry_id, (0.0, -1))
            kws = hits.get(entry_id, [])
            total = noisy_or((sim, KEYWORD_STRENGTH if kws else 0.0))
            if total <= 0 or total < min_score:
                continue
            question = self._questions[doc] if doc >= 0 else self.data.entries[entry_id].questions[0]
            matches.append(Match(entry_id, total, question, kws))
        return heapq.nsmallest(limit, matches, key=lambda m: (-m.score, m.entry_id))


_JINJA_MARKUP = re.compile(r"\{[{%#].*?[}%#]\}", re.S)


def answer_text(entry: Entry) -> str:
    """An answer as a passage to embed: its template markup removed."""
    return _JINJA_MARKUP.sub(" ", entry.answer)


def joint_text(entry: Entry) -> str:
    """An entry's questions and answer as one passage (the joint passage the FAQ embeds)."""
    return " ".join((*entry.questions, answer_text(entry)))


_SENTENCE_END = re.compile(r"[。！？；!?;\n]+")


def answer_sentences(answer: str) -> list[str]:
    """An answer's sentences with some content (at least 4 characters), in order."""
    return [part.strip() for part in _SENTENCE_END.split(answer) if len(part.strip()) >= 4]


def best_per_entry(row_entries: list[str], matrix: Any, vector: Any, entry_ids: list[str]) -> np.ndarray:
    """Per entry of ``entry_ids``, the best cosine of ``vector`` with the rows of ``matrix`` that
    belong to it (``row_entries``: each row's entry); -1 for an entry with no row, or no matrix."""
    best = np.full(len(entry_ids), -1.0)
    if matrix is None:
        return best
    position = {e: n for n, e in enumerate(entry_ids)}
    for entry_id, cos in zip(row_entries, (matrix @ vector).tolist()):
        n = position.get(entry_id)
        if n is not None and cos > best[n]:
            best[n] = cos
    return best


@dataclass
class DenseFaq:
    """Embeddings of one FAQ version: every stored question ("query: ") and every answer
    ("passage: "), one matrix per model, and which entry each row belongs to; and the
    general-question anchors (questions meant for the model, ``core/processing/data/
    general_questions.txt``) with how close each anchor sits to this FAQ.

    The anchors' offsets are this FAQ's own calibration, computed at load: an anchor's best
    cosine with the FAQ's questions minus the median of those over all anchors. An anchor far
    above the median ("你住在哪里" next to a FAQ asking "诊所地址在哪") says little about whether a
    message is for this FAQ or for the model, so ``general`` lowers it by ``calibration`` times
    its offset (docs/faq.md).
    """

    version: str
    question_entries: list[str]
    question_vectors: dict[str, Any]
    answer_entries: list[str]
    answer_vectors: dict[str, Any]
    general_vectors: dict[str, Any] = field(default_factory=dict)
    #: model -> per-anchor offset (see above)
    general_offsets: dict[str, Any] = field(default_factory=dict)
    #: The answers' sentences, each embedded as a question would be ("query: "): what an answer
    #: states is often what a customer asks (营业时间 8:30-18:30 for 几点关门).
    sentence_entries: list[str] = field(default_factory=list)
    sentence_vectors: dict[str, Any] = field(default_factory=dict)
    #: Each entry's questions and answer as one passage ("passage: ").
    joint_vectors: dict[str, Any] = field(default_factory=dict)
    #: model -> the FAQ as a whole: the normalised mean of its questions' and answer sentences'
    #: vectors (what the business is about, compared with a message in one product).
    centroid_vectors: dict[str, Any] = field(default_factory=dict)
    #: model -> how the general-question anchors score against this FAQ: the mean and standard
    #: deviation, over the anchors, of their best question's, best answer sentence's, best joint
    #: passage's and centroid cosines (``ANCHOR_STATS`` order). A message's cosine is compared
    #: with them (``anchor_z``): the same cosine means more for a FAQ that general questions
    #: stay far from than for one they all come near.
    anchor_stats: dict[str, Any] = field(default_factory=dict)
    #: The second model's vectors (``core/processing/second_model.py``; None when it is off):
    #: the questions, the joint passages (entry order) and the general-question anchors.
    second_question_vectors: Any = None
    second_joint_vectors: Any = None
    second_general_vectors: Any = None

    @classmethod
    async def build(cls, data: FaqData, embeddings: Any, general: list[str] | None = None) -> "DenseFaq":
        q_entries = [e.id for e in data.entries.values() for _ in e.questions]
        questions = [q for e in data.entries.values() for q in e.questions]
        a_entries = [e.id for e in data.entries.values()]
        answers = [answer_text(e) for e in data.entries.values()]
        dense = cls(data.version, q_entries, await embeddings.embed_set(questions, "query"),
                    a_entries, await embeddings.embed_set(answers, "passage"))
        sentences = [(e.id, part) for e, answer in zip(data.entries.values(), answers)
                     for part in answer_sentences(answer)]
        if sentences:
            dense.sentence_entries = [entry_id for entry_id, _ in sentences]
            dense.sentence_vectors = await embeddings.embed_set([t for _, t in sentences], "query")
        joint = [joint_text(e) for e in data.entries.values()]
        dense.joint_vectors = await embeddings.embed_set(joint, "passage")
        for model, qm in dense.question_vectors.items():
            parts = [qm] + ([dense.sentence_vectors[model]] if model in dense.sentence_vectors else [])
            mean = np.mean(np.vstack(parts), axis=0)
            dense.centroid_vectors[model] = mean / (np.linalg.norm(mean) or 1.0)
        if general:
            dense.general_vectors = await embeddings.embed_set(general, "query")
            for model, anchors in dense.general_vectors.items():
                qm = dense.question_vectors.get(model)
                if qm is not None:
                    closest = np.max(anchors @ qm.T, axis=1)
                    dense.general_offsets[model] = closest - float(np.median(closest))
                    columns = [closest]
                    for matrix in (dense.sentence_vectors.get(model), dense.joint_vectors.get(model)):
                        columns.append(np.max(anchors @ matrix.T, axis=1) if matrix is not None
                                       else np.full(len(anchors), -1.0))
                    columns.append(anchors @ dense.centroid_vectors[model])
                    stacked = np.stack(columns)
                    dense.anchor_stats[model] = (stacked.mean(axis=1), stacked.std(axis=1) + 1e-6)
        embed_second = getattr(embeddings, "embed_set_second", None)
        if embed_second is not None:
            dense.second_question_vectors = await embed_second(questions, "query")
            if dense.second_question_vectors is not None:
                dense.second_joint_vectors = await embed_second(joint, "passage")
                if general:
                    dense.second_general_vectors = await embed_second(general, "query")
        return dense

    def second_cosines(self, vector: Any, entry_ids: list[str]) -> tuple[Any, Any, float | None] | None:
        """The second model's view, per entry of ``entry_ids``: its best question's cosine and
        its joint passage's; and the message's best general-anchor cosine (None without
        anchors). None without the second model's vectors (of the FAQ or of the message)."""
        qm, jm = self.second_question_vectors, self.second_joint_vectors
        if vector is None or qm is None or jm is None:
            return None
        u = best_per_entry(self.question_entries, qm, vector, entry_ids)
        uj = best_per_entry(self.answer_entries, jm, vector, entry_ids)
        anchors = self.second_general_vectors
        return u, uj, None if anchors is None else float(np.max(anchors @ vector))

    def similarities(self, model: str, vector: Any) -> dict[str, tuple[float, float]]:
        """entry id -> (best question cosine, answer cosine) for a query vector of ``model``."""
        out: dict[str, tuple[float, float]] = {}
        qm = self.question_vectors.get(model)
        if qm is None:
            return out
        for entry_id, cos in zip(self.question_entries, (qm @ vector).tolist()):
            best = out.get(entry_id)
            if best is None or cos > best[0]:
                out[entry_id] = (cos, -1.0)
        am = self.answer_vectors.get(model)
        if am is not None:
            for entry_id, cos in zip(self.answer_entries, (am @ vector).tolist()):
                q = out.get(entry_id, (-1.0, -1.0))[0]
                out[entry_id] = (q, cos)
        return out

    def entry_cosines(self, model: str, vector: Any, entry_ids: list[str]) -> tuple[Any, ...] | None:
        """Per entry of ``entry_ids``: its best question's cosine, its answer's, its best answer
        sentence's and its joint passage's (None without vectors of ``model``; -1 where an
        entry has no such vector)."""
        sims = self.similarities(model, vector)
        if not sims:
            return None
        q = np.array([sims.get(e, (-1.0, -1.0))[0] for e in entry_ids])
        a = np.array([sims.get(e, (-1.0, -1.0))[1] for e in entry_ids])
        s = best_per_entry(self.sentence_entries, self.sentence_vectors.get(model), vector, entry_ids)
        j = best_per_entry(self.answer_entries, self.joint_vectors.get(model), vector, entry_ids)
        return q, a, s, j

    def anchor_z(self, model: str) -> tuple[Any, Any] | None:
        """(means, deviations) of the anchors' best question, sentence, joint and centroid
        cosines against this FAQ (None without anchors for ``model``)."""
        return self.anchor_stats.get(model)

    def centroid(self, model: str, vector: Any) -> float | None:
        """The message's cosine with the FAQ as a whole (None without vectors of ``model``)."""
        centroid = self.centroid_vectors.get(model)
        return None if centroid is None else float(centroid @ vector)

    def general(self, model: str, vector: Any, calibration: float) -> float | None:
        """The message's best cosine with a general-question anchor, each anchor lowered by
        ``calibration`` times its offset; None without anchors for ``model``."""
        anchors = self.general_vectors.get(model)
        if anchors is None:
            return None
        cos = anchors @ vector
        offsets = self.general_offsets.get(model)
        if offsets is not None and calibration:
            cos = cos - calibration * offsets
        return float(np.max(cos))

"""Hybrid retrieval: the passages that answer a question, with their scores, or none.

Candidates come from both sides of the store: full-text matches of the question's words and
bigrams, and the nearest vectors (a chunk is stored as itself, with its title and heading path,
and as each of its sentences: its best row counts, so one sentence that answers lifts its chunk).
Each candidate gets

* a lexical score: the share of the question's term weight its terms hold (``terms.coverage``);
* a dense score: how far its cosine stands above the mean cosine of every stored row for this
  question (a vague question is close to everything), in units of ``dense_gap``;

and a relevance score ``dense + lexical_weight * lexical`` (``lexical / lexical_alone`` when the
question has no vector to compare). ``threshold`` (1.0) is the line a logistic fit on the tuning
questions (tests/data/knowledge/tuning_questions.tsv and corpus.py's) drew between the covered and
the uncovered ones (docs/knowledge.md; learned re-rankers and decisions on more features did no
better in cross-validation, tests/knowledge_fit.py). The best passage decides:
under the line the question gets no passage; on or above it, the best ``top_k`` passages are kept
(the next ones even under the line). Near-duplicates (the same paragraph in two files, a page
repeated) collapse to the best-scored one.

With the answer check on (``answer_check``, ``answer_check.py``), a pair model reads the question
and the best passage together and its logit, not the fused score, decides: the passages are kept
when it is above ``answer_check_line``.

Optionally (``asked_part_weight`` > 0) the best passage is checked for holding what is asked: the
question's words it does not hold ("多大年纪" of "王磊老师多大年纪") are embedded on their own,
and when their nearest stored row lies in another passage, the shortfall of this passage's nearest
row is taken off its score before the line decides (``asked``, a cosine difference <= 0).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from core import normalize_text

from .homophones import correct
from .store import KnowledgeStore, StoredChunk
from .terms import TermAnalyzer, coverage, search_terms

#: Candidates fetched from each side before scoring.
CANDIDATES = 40


@dataclass
class Passage:
    chunk: StoredChunk
    score: float
    lexical: float
    dense: float
    cosine: float
    #: The best passage only, when checked (``asked_part_weight``): how far its nearest row to the
    #: question's words it does not hold falls under their nearest row anywhere (cosine, <= 0).
    asked: float | None = None
    #: The best passage only, with the answer check on: the pair model's logit that it answers.
    answers: float | None = None

    def explain(self) -> dict[str, Any]:
        out = {"document": self.chunk.path, "title": self.chunk.title, "heading": self.chunk.heading,
               "score": round(self.score, 4), "lexical": round(self.lexical, 4),
               "dense": round(self.dense, 4), "cosine": round(self.cosine, 4),
               "text": self.chunk.text[:120]}
        if self.asked is not None:
            out["asked"] = round(self.asked, 4)
        if self.answers is not None:
            out["answers"] = round(self.answers, 4)
        return out


def passage_text(chunk: StoredChunk) -> str:
    """What the answer check reads of a passage: its document title, heading path and text."""
    return " ".join(x for x in (chunk.title, chunk.heading, chunk.text) if x)


def shingles(text: str, size: int = 3) -> set[str]:
    text = "".join(normalize_text(text).split())
    return {text[i:i + size] for i in range(max(1, len(text) - size + 1))}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


class Retriever:
    def __init__(self, store: KnowledgeStore, analyzer: TermAnalyzer, embeddings: Any, config: Any,
                 answer_check: Any = None) -> None:
        self.store = store
        self.analyzer = analyzer
        self.embeddings = embeddings
        self.config = config
        #: The pair model (``answer_check.AnswerCheck``) when ``answer_check`` is on, else None.
        self.answer_check = answer_check

    async def search(self, question: str, *, top_k: int | None = None,
                     threshold: float | None = None) -> tuple[list[Passage], list[Passage]]:
        """(the best ``top_k`` passages when the best reaches the threshold, else none; every
        scored candidate best first, for explanations and ``run.py kb search``). With the answer
        check on and no ``threshold`` of the caller's own, the pair model decides instead."""
        cfg = self.config
        top_k = cfg.top_k if top_k is None else top_k
        check = self.answer_check if threshold is None else None
        threshold = cfg.threshold if threshold is None else threshold
        norm = normalize_text(question)
        if not norm:
            return [], []
        # with the check, the passages are ranked with no line and the pair model decides
        line = float("-inf") if check is not None else threshold
        kept, scored = await self._search(norm, top_k, line)
        read = norm
        # A homophone typo (学肥 for 学费) read as the candidates' word that sounds the same, kept
        # when that reading matches the documents better than the question as written.
        vocabulary = set().union(*(p.chunk.terms for p in scored)) if scored else set()
        corrected = await asyncio.to_thread(correct, norm, vocabulary, self.analyzer.segmenter.in_dictionary)
        if corrected != norm:
            fixed = await self._search(corrected, top_k, line)
            if fixed[1] and (not scored or fixed[1][0].score > scored[0].score):
                kept, scored = fixed
                read = corrected
        if check is not None:
            return await self._checked(question, kept, scored, threshold), scored
        if kept and cfg.asked_part_weight > 0:
            best = scored[0]
            best.asked = await self.asked_shortfall(read, best)
            if best.score + cfg.asked_part_weight * best.asked / cfg.dense_gap < threshold:
                kept = []
        return kept, scored

    async def _checked(self, question: str, kept: list[Passage], scored: list[Passage],
                       threshold: float) -> list[Passage]:
        """``kept`` when the pair model's logit of the question and the best passage is above
        ``answer_check_line``, else none; the fused line decides when the model cannot run."""
        if not scored:
            return []
        best = scored[0]
        logits = await self.answer_check.logits(question, [passage_text(best.chunk)])
        if logits is None:
            return kept if best.score >= threshold else []
        best.answers = logits[0]
        return kept if best.answers > self.config.answer_check_line else []

    async def asked_shortfall(self, norm: str, passage: Passage) -> float:
        """How far the nearest row of ``passage`` to the question's words it does not hold falls
        under their nearest row anywhere (a cosine difference, <= 0): 0 when it holds them all,
        when they are nearest to one of its own rows, or without a vector to compare."""
        embeddings = self.embeddings
        if embeddings is None or not embeddings.enabled:
            return 0.0
        segmenter = self.analyzer.segmenter
        tokens = await asyncio.to_thread(self.analyzer.tokens, norm)
        missing = [t for t in dict.fromkeys(tokens) if t not in passage.chunk.terms and segmenter.weight(t) > 0]
        if not missing:
            return 0.0
        query = await embeddings.embed_query("".join(missing))
        if query is None:
            return 0.0
        cosines = await self.store.best_row_cosines(query.model, query.vector, passage.chunk.id)
        return 0.0 if cosines is None else min(0.0, cosines[0] - cosines[1])

    async def _search(self, norm: str, top_k: int, threshold: float) -> tuple[list[Passage], list[Passage]]:
        cfg = self.config
        features = await asyncio.to_thread(self.analyzer.question_features, norm)
        lexical_ids = await self.store.lexical_candidates(search_terms(features), CANDIDATES) if features else []
        dense_hits: list[tuple[int, float]] = []
        mean = 0.0
        embeddings = self.embeddings
        if embeddings is not None and embeddings.enabled:
            query = await embeddings.embed_query(norm)
            if query is not None:
                dense_hits, mean = await self.store.dense_candidates(query.model, query.vector, CANDIDATES)
        cosines = dict(dense_hits)
        chunks = await self.store.chunks(lexical_ids + [i for i, _ in dense_hits])
        scored: list[Passage] = []
        for chunk_id, chunk in chunks.items():
            lex = coverage(features, chunk.terms)
            cos = cosines.get(chunk_id)
            if dense_hits:
                dense = 0.0 if cos is None else max(0.0, cos - mean) / cfg.dense_gap
                score = dense + cfg.lexical_weight * lex
            else:  # no vectors to compare: the lexical evidence alone
                dense, score = 0.0, lex / cfg.lexical_alone
            scored.append(Passage(chunk, score, lex, dense, cos if cos is not None else 0.0))
        scored.sort(key=lambda p: (-p.score, p.chunk.id))
        kept: list[Passage] = []
        seen: list[set[str]] = []
        if not scored or scored[0].score < threshold:
            return kept, scored
        # The best passage decides whether the documents answer the question; once it does, the
        # next ones (up to top_k) are kept with it even under the line: the answer is often in the
        # second or third (the model reads them all; without one the best passage answers).
        for passage in scored:
            if len(kept) >= top_k:
                break
            marks = shingles(passage.chunk.text)
            if any(jaccard(marks, other) >= cfg.duplicate_similarity for other in seen):
                continue
            kept.append(passage)
            seen.append(marks)
        return kept, scored

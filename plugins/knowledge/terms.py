"""Lexical terms of passages and questions: jieba tokens, the words inside them, characters and
character bigrams, weighted by the bot segmenter's corpus-independent IDF.

A passage is indexed as the set of its terms (``passage_terms``). A question becomes weighted
features (``question_features``); a passage's lexical score is the share of the question's weight
it contains (``coverage``), 0..1, so one threshold means the same in a 3-page and a 1,000-page
folder. Bigrams catch what jieba cut differently in the question and the document (营业时间 /
营业 时间).
"""
from __future__ import annotations

from typing import Any, Iterable

from core import normalize_text

#: A bigram counts this fraction of the mean weight of its two characters.
BIGRAM_FACTOR = 0.5


def _is_cjk(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff"


def cjk_bigrams(tokens: Iterable[str]) -> list[str]:
    """Character bigrams across the Chinese runs of a token sequence."""
    text = "".join(t if all(_is_cjk(c) for c in t) else " " for t in tokens)
    out: list[str] = []
    for run in text.split():
        out.extend(run[i:i + 2] for i in range(len(run) - 1))
    return out


class TermAnalyzer:
    """Terms of text as the bot's segmenter cuts it (``bot.segmenter``)."""

    def __init__(self, segmenter: Any) -> None:
        self.segmenter = segmenter

    def tokens(self, text: str) -> list[str]:
        return self.segmenter.tokenize(normalize_text(text))

    def passage_terms(self, text: str) -> list[str]:
        tokens = self.tokens(text)
        terms: dict[str, None] = {}
        for token in tokens:
            terms[token] = None
            for sub in self.segmenter.subwords(token):
                terms[sub] = None
            if len(token) > 1 and _is_cjk(token[0]):
                for ch in token:
                    terms[ch] = None
        for bigram in cjk_bigrams(tokens):
            terms[bigram] = None
        return list(terms)

    def question_features(self, text: str) -> dict[str, float]:
        tokens = self.tokens(text)
        features = dict(self.segmenter.features(tokens))
        weight = self.segmenter.weight
        for bigram in cjk_bigrams(tokens):
            if bigram in features:
                continue
            w = BIGRAM_FACTOR * (weight(bigram[0]) + weight(bigram[1])) / 2
            if w > 0:
                features[bigram] = w
        return {t: w for t, w in features.items() if w > 0}


def coverage(features: dict[str, float], terms: set[str] | frozenset[str]) -> float:
    """Share of the question's weight found in a passage's terms (0..1)."""
    total = sum(features.values())
    if total <= 0:
        return 0.0
    return sum(w for t, w in features.items() if t in terms) / total


def search_terms(features: dict[str, float], most: int = 32) -> list[str]:
    """The question's terms worth a full-text lookup: words and bigrams, heaviest first."""
    words = [t for t in features if len(t) > 1 or not _is_cjk(t)]
    words.sort(key=lambda t: -features[t])
    return words[:most] or sorted(features, key=lambda t: -features[t])[:most]

"""Homophone typos in questions (学肥 for 学费, 请家 for 请假): what a pinyin input method makes
when the user picks the wrong candidate.

A character pair of the question that no candidate passage holds and no dictionary knows is read
as the documents' word that sounds the same (same toneless pinyin) and shares one of its two
characters, when exactly one such word exists. Dictionary words are never changed, and the
retriever keeps the corrected reading only when it matches the documents better than the
question as written, so a question about something the documents lack stays that question.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Iterable

from pypinyin import lazy_pinyin


def _is_cjk(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff"


@lru_cache(maxsize=65536)
def sound(pair: str) -> str:
    """Toneless pinyin of a character pair (both readings of a polyphone are not tried)."""
    return " ".join(lazy_pinyin(pair))


def correct(text: str, vocabulary: Iterable[str], known: Callable[[str], bool]) -> str:
    """``text`` with each pair of characters the dictionary (``known``) does not know replaced by
    the one dictionary word of ``vocabulary`` that sounds the same and shares one of its
    characters, when there is exactly one (pairs taken left to right, never overlapping)."""
    words = {w for w in vocabulary if len(w) == 2 and _is_cjk(w[0]) and _is_cjk(w[1]) and known(w)}
    by_sound: dict[str, set[str]] = {}
    for word in words:
        by_sound.setdefault(sound(word), set()).add(word)
    out = list(text)
    i = 0
    while i < len(text) - 1:
        pair = text[i:i + 2]
        if _is_cjk(pair[0]) and _is_cjk(pair[1]) and not known(pair):
            matches = [w for w in by_sound.get(sound(pair), ()) if (w[0] == pair[0]) != (w[1] == pair[1])]
            if len(matches) == 1:
                out[i:i + 2] = matches[0]
                i += 2
                continue
        i += 1
    return "".join(out)

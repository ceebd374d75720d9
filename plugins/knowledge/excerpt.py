"""The part of a passage a reply without a model shows: the whole passage when it fits, otherwise
the run of whole sentences nearest the question.

A passage is cut into sentences line by line (a list item or a table row is a line), and each
sentence is weighed by the share of the question's term weight it holds (``terms.coverage``).
Of the runs of consecutive sentences that fit in the limit, the one holding the heaviest sentence
wins, then the heaviest run, then the earliest; so a passage none of whose sentences shares a word
with the question is shown from its start, as before. A heaviest sentence longer than the limit
is cut and marked. Line breaks are kept: a table's rows stay one to a line.
"""
from __future__ import annotations

from typing import Callable

from .chunking import split_sentences

#: Marks a sentence cut short (one sentence longer than the whole limit).
CUT = "…"


def sentences_by_line(text: str) -> list[tuple[int, str]]:
    """(line number, sentence) for every sentence of ``text``, in order."""
    return [(n, s) for n, line in enumerate(text.split("\n")) for s in split_sentences(line)]


def join_sentences(units: list[tuple[int, str]]) -> str:
    """Sentences back into text: one line's sentences side by side, lines on lines of their own."""
    out = ""
    for i, (line, sentence) in enumerate(units):
        out += ("\n" if i and line != units[i - 1][0] else "") + sentence
    return out


def excerpt(text: str, limit: int, weigh: Callable[[str], float] | None = None) -> str:
    """``text`` within ``limit`` characters, cut at sentence ends around the sentences ``weigh``
    scores highest (from the start when none scores above 0, or without ``weigh``)."""
    if len(text) <= limit:
        return text
    units = sentences_by_line(text)
    if not units:
        return text[:limit].rstrip() + CUT
    weights = [weigh(s) if weigh is not None else 0.0 for _, s in units]
    best: tuple[float, float, int] | None = None
    window = (0, 0)
    for start in range(len(units)):
        end, length = start, -1
        while end < len(units) and length + 1 + len(units[end][1]) <= limit:
            length += 1 + len(units[end][1])  # with its separator (a line break at most)
            end += 1
        if end == start:
            continue  # this sentence alone is longer than the limit
        key = (max(weights[start:end]), sum(weights[start:end]), -start)
        if best is None or key > best:
            best, window = key, (start, end)
    heaviest = max(range(len(units)), key=lambda i: (weights[i], -i))
    if best is None or best[0] < weights[heaviest]:  # the heaviest sentence is longer than the limit
        return units[heaviest][1][:limit - len(CUT)].rstrip() + CUT
    return join_sentences(units[window[0]:window[1]])

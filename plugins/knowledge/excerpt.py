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

from .chunking import sentence_spans

#: Marks a sentence cut short (one sentence longer than the whole limit).
CUT = "…"


def sentences_by_line(lines: list[str]) -> list[tuple[int, int, int]]:
    """(line number, start, end) of every sentence of ``lines``, in order (offsets in its line)."""
    return [(n, start, end) for n, line in enumerate(lines) for start, end in sentence_spans(line)]


def join_sentences(lines: list[str], units: list[tuple[int, int, int]]) -> str:
    """Consecutive sentences of ``lines`` back into text as written there: one line's sentences with
    what stood between them, lines on lines of their own."""
    parts: list[str] = []
    for line in dict.fromkeys(n for n, _, _ in units):
        on_line = [(start, end) for n, start, end in units if n == line]
        parts.append(lines[line][on_line[0][0]:on_line[-1][1]])
    return "\n".join(parts)


def excerpt(text: str, limit: int, weigh: Callable[[str], float] | None = None) -> str:
    """``text`` within ``limit`` characters, cut at sentence ends around the sentences ``weigh``
    scores highest (from the start when none scores above 0, or without ``weigh``)."""
    if len(text) <= limit:
        return text
    lines = text.split("\n")
    units = sentences_by_line(lines)
    if not units:
        return text[:limit].rstrip() + CUT
    sentences = [lines[n][start:end] for n, start, end in units]
    weights = [weigh(s) if weigh is not None else 0.0 for s in sentences]
    # what joins sentence i to the one before it: a line break, or what stood between them
    gaps = [0] + [1 if units[i][0] != units[i - 1][0] else units[i][1] - units[i - 1][2] for i in range(1, len(units))]
    best: tuple[float, float, int] | None = None
    window = (0, 0)
    for start in range(len(units)):
        end, length = start, 0
        while end < len(units) and length + (gaps[end] if end > start else 0) + len(sentences[end]) <= limit:
            length += (gaps[end] if end > start else 0) + len(sentences[end])
            end += 1
        if end == start:
            continue  # this sentence alone is longer than the limit
        key = (max(weights[start:end]), sum(weights[start:end]), -start)
        if best is None or key > best:
            best, window = key, (start, end)
    heaviest = max(range(len(units)), key=lambda i: (weights[i], -i))
    if best is None or best[0] < weights[heaviest]:  # the heaviest sentence is longer than the limit
        return sentences[heaviest][:limit - len(CUT)].rstrip() + CUT
    return join_sentences(lines, units[window[0]:window[1]])

"""Cutting long reply text into parts that fit WeChat's byte limits, at sentence boundaries."""
from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[。！？!?；;…\n])")


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _hard_cut(text: str, limit: int) -> list[str]:
    parts, current = [], ""
    for char in text:
        if utf8_len(current + char) > limit:
            parts.append(current)
            current = ""
        current += char
    if current:
        parts.append(current)
    return parts


def split_text(text: str, limit: int = 2047) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` UTF-8 bytes, preferring sentence ends.

    A sentence longer than the limit is cut at a character boundary; no character is split.
    """
    if utf8_len(text) <= limit:
        return [text]
    parts: list[str] = []
    current = ""
    for sentence in (s for s in _SENTENCE_END.split(text) if s):
        if utf8_len(current + sentence) <= limit:
            current += sentence
            continue
        if current:
            parts.append(current)
            current = ""
        if utf8_len(sentence) > limit:
            pieces = _hard_cut(sentence, limit)
            parts.extend(pieces[:-1])
            current = pieces[-1]
        else:
            current = sentence
    if current:
        parts.append(current)
    return [p.strip("\n") or p for p in parts]

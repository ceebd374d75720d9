"""Split long text into parts that each fit WeChat's per-message byte limit.

WeChat rejects a text message whose content is longer than 2048 bytes of UTF-8 (the limit counts
bytes, so a Chinese character costs three and most emoji four). ``split_for_wechat`` cuts at the
last sentence end that fits, else at a character boundary, so no part ever carries half a
character and every part is at most ``max_bytes`` bytes.
"""
from __future__ import annotations

#: Characters after which a cut reads naturally, strongest first is not needed: any of them ends a
#: sentence (or a line) well enough.
SENTENCE_ENDS = frozenset("。！？!?；;\n")
#: Closing quotes/brackets that belong to the sentence they end (``他说：“好。”`` cuts after ``”``).
_CLOSERS = frozenset("”’」』）)】》\"'")
#: Where a cut is acceptable when no sentence end fits (weaker than a sentence end).
_SOFT_BREAKS = frozenset("，,、：: \t")


def _utf8_len(ch: str) -> int:
    code = ord(ch)
    if code < 0x80:
        return 1
    if code < 0x800:
        return 2
    if code < 0x10000:
        return 3
    return 4


def _byte_offsets(text: str) -> list[int]:
    """``offsets[i]`` is the UTF-8 byte length of ``text[:i]``."""
    offsets = [0] * (len(text) + 1)
    total = 0
    for i, ch in enumerate(text):
        # Lone surrogates cannot be encoded; count them as the 3 bytes "surrogatepass" would use.
        total += _utf8_len(ch)
        offsets[i + 1] = total
    return offsets


def _cut_point(text: str, start: int, limit: int, offsets: list[int]) -> int:
    """The character index (exclusive) where the part beginning at ``start`` should end.

    ``limit`` is the largest index whose byte length from ``start`` fits. Prefer the last
    sentence end (plus any closing quotes after it), then the last soft break, then ``limit``.
    """
    # Only look back over the second half of the window: a cut very early would make a tiny part.
    floor = start + max(1, (limit - start) // 2)
    for i in range(limit, floor - 1, -1):
        if text[i - 1] in SENTENCE_ENDS:
            end = i
            while end < limit and text[end] in _CLOSERS:
                end += 1
            return end
        if text[i - 1] in _CLOSERS and i - 2 >= start and text[i - 2] in SENTENCE_ENDS:
            return i
    for i in range(limit, floor - 1, -1):
        if text[i - 1] in _SOFT_BREAKS:
            return i
    return limit


def split_for_wechat(text: str, max_bytes: int = 2047) -> list[str]:
    """Split ``text`` into parts of at most ``max_bytes`` UTF-8 bytes each.

    Cuts at sentence ends (``。！？!?；`` and newlines), else at a comma or space, else between
    two characters. Whitespace at the cut is dropped from both sides; no empty parts are returned
    (an empty or all-whitespace ``text`` gives ``[]``). Text that fits is returned unchanged as
    the only part.
    """
    if max_bytes < 4:
        raise ValueError("max_bytes must be at least 4 (the size of one UTF-8 character)")
    if not text or not text.strip():
        return []
    offsets = _byte_offsets(text)
    if offsets[-1] <= max_bytes:
        return [text]
    parts: list[str] = []
    start = 0
    n = len(text)
    while start < n:
        # Skip whitespace carried over from the previous cut.
        while start < n and text[start].isspace():
            start += 1
        if start >= n:
            break
        if offsets[n] - offsets[start] <= max_bytes:
            end = n
        else:
            # Largest ``limit`` with offsets[limit] - offsets[start] <= max_bytes (binary search).
            lo, hi = start + 1, n
            budget = offsets[start] + max_bytes
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if offsets[mid] <= budget:
                    lo = mid
                else:
                    hi = mid - 1
            end = _cut_point(text, start, lo, offsets)
        part = text[start:end].rstrip()
        if part:
            parts.append(part)
        start = end
    return parts


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))

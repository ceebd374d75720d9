"""Text normalisation for matching, with a map from normalised characters back to the original.

Every code point is folded on its own, through one table shared by the word lists and the
messages, so a word and a message that look alike fold to the same string:

1. noise (spaces, controls, zero-width and other format characters, punctuation, symbols,
   emoji, combining marks, private-use and unassigned code points) folds to nothing, except
   symbols whose NFKC form has letters or digits (``Ⓢ`` -> ``s``, ``㍿`` -> ``株式会社``);
2. a configured *hard separator* (full-width clause punctuation, line breaks) folds to
   ``SEPARATOR``, which no word can bridge;
3. anything else goes through NFKC (full-width to half-width, ligatures, circled digits...),
   case folding, removal of the combining marks NFKC leaves (accents), and traditional to
   simplified Chinese through OpenCC's single-character table.

The fold is applied per code point rather than to whole strings, so that one ``str.translate``
(C speed) gives the normalised text and another, over the length of each folded string, maps
positions back to the original (``Normaliser.origins``); ``normalise_with_map`` is the plain
Python reference both are tested against. Folding per code point also means NFKC composition
never joins a base letter with a following combining mark; marks are dropped on both sides
anyway, so precomposed é and e followed by U+0301 both fold to ``e``.
"""
from __future__ import annotations

import re
import threading
import unicodedata
from bisect import bisect_right
from itertools import accumulate

from core import t2s_table

#: What a hard separator folds to. Word lists fold through the same table, so a word never
#: contains it unless the operator listed a separator inside a word.
SEPARATOR = "\n"

#: Unicode general categories treated as noise between the characters of a word.
NOISE_CATEGORIES = frozenset({
    "Zs", "Zl", "Zp",                    # spaces and line/paragraph separators
    "Cc", "Cf", "Cs", "Co", "Cn",        # controls, format (zero-width...), surrogates, private, unassigned
    "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po",   # punctuation
    "Sm", "Sc", "Sk", "So",              # symbols: + $ ￥ ^ and emoji
    "Mn", "Mc", "Me",                    # combining marks (accents, variation selectors)
})

#: Default hard separators: clause punctuation of Chinese prose as typed by an IME (full-width,
#: before NFKC) and line breaks. Noise skipping does not join characters across these, so
#: "他不傻，逼急了也会反抗" is not read as containing 傻逼.
DEFAULT_SEPARATORS = "，。！？；：、…\n\r\u2028\u2029"

#: Cap on cached code points per table (a flood of distinct rare characters cannot grow it).
MAX_CACHED = 200_000


def is_noise(ch: str) -> bool:
    return unicodedata.category(ch) in NOISE_CATEGORIES


def fold_char(ch: str) -> str:
    """The normalised form of one code point: '' for noise, else one or more characters."""
    compatible = unicodedata.normalize("NFKC", ch)
    if compatible == ch and unicodedata.category(ch) in NOISE_CATEGORIES:
        return ""
    # NFKC first: some symbols stand for letters (Ⓢ -> S, ㍿ -> 株式会社, ™ -> TM).
    folded = unicodedata.normalize("NFKC", compatible.casefold())
    t2s = t2s_table()
    kept = [t2s.get(c, c) for c in unicodedata.normalize("NFD", folded)
            if unicodedata.category(c) not in NOISE_CATEGORIES]
    return unicodedata.normalize("NFC", "".join(kept))


class NormTable(dict):
    """A ``str.translate`` table filled lazily: code point -> folded string, or None for noise.

    Only code points actually looked up are computed (a few µs each, once); beyond the Basic
    Multilingual Plane (which ``Normaliser`` fills up front) memory stays proportional to the
    characters in use.
    """

    def __init__(self, separators: str = DEFAULT_SEPARATORS) -> None:
        super().__init__()
        self.separators = frozenset(separators)
        self._lock = threading.Lock()

    def __missing__(self, cp: int) -> str | None:
        ch = chr(cp)
        value = SEPARATOR if ch in self.separators else (fold_char(ch) or None)
        if len(self) < MAX_CACHED:
            with self._lock:
                self[cp] = value
        return value


ASTRAL = re.compile("[\U00010000-\U0010FFFF]")


class Normaliser:
    """Folds whole texts with ``str.translate`` over a list indexed by code point.

    The list is filled for the whole Basic Multilingual Plane up front (about 0.1 s, once per
    process) and grows on demand for characters beyond it (emoji, rare CJK) the first time a
    text contains them, so translating never meets a code point it has not computed. A list
    is about twice as fast as a dict table here. ``lengths`` is the same for the length of each
    folded string, which maps normalised positions back to the original in C speed.
    """

    def __init__(self, separators: str = DEFAULT_SEPARATORS) -> None:
        self.table = NormTable(separators)
        self.codes: list[str | None] = [self.table[cp] for cp in range(0x10000)]
        self.lengths: list[str] = [chr(len(v)) if v else "\x00" for v in self.codes]
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, text: str) -> str:
        if ASTRAL.search(text) is not None:
            self.prepare(text)
        return text.translate(self.codes)

    def prepare(self, text: str) -> None:
        """Compute the entries of the characters beyond the BMP in ``text`` that are still missing."""
        for ch in ASTRAL.findall(text):
            if ch not in self._known:
                with self._lock:
                    cp = ord(ch)
                    if cp >= len(self.codes):
                        grow = cp + 1 - len(self.codes)
                        self.codes.extend([None] * grow)
                        self.lengths.extend(["\x00"] * grow)
                    folded = self.table[cp]
                    self.codes[cp] = folded
                    self.lengths[cp] = chr(len(folded)) if folded else "\x00"
                    self._known.add(ch)

    def fold(self, ch: str) -> str | None:
        """The folded form of one code point (None for noise)."""
        return self.table[ord(ch)]

    def origins(self, text: str, positions: list[int]) -> list[int]:
        """For each position in ``self(text)``, the index in ``text`` of the code point it came from.

        A code point that NFKC expands (``㈱`` -> ``株``, ``ﬁ`` -> ``fi``) owns every character it
        produced. ``text`` must have been normalised (or prepared) before.
        """
        prefix = list(accumulate(text.translate(self.lengths).encode("latin-1")))
        return [bisect_right(prefix, p) for p in positions]

    def with_map(self, text: str) -> tuple[str, list[int]]:
        """Reference implementation (a Python loop): the normalised text and every origin."""
        return normalise_with_map(text, self.table)


_NORMALISERS: dict[frozenset[str], Normaliser] = {}
_NORMALISERS_LOCK = threading.Lock()


def normaliser_for(separators: str = DEFAULT_SEPARATORS) -> Normaliser:
    """The shared normaliser for a set of hard separators (built once, about 0.1 s)."""
    key = frozenset(separators)
    normaliser = _NORMALISERS.get(key)
    if normaliser is None:
        with _NORMALISERS_LOCK:
            normaliser = _NORMALISERS.get(key)
            if normaliser is None:
                normaliser = _NORMALISERS[key] = Normaliser(separators)
    return normaliser


def normalise_with_map(text: str, table: NormTable) -> tuple[str, list[int]]:
    """The normalised text and, for each of its characters, the index of the original code point.

    A code point that NFKC expands (``㈱`` -> ``(株)`` -> ``株``, ``ﬁ`` -> ``fi``) maps every
    character it produced to itself.
    """
    out: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        folded = table[ord(ch)]
        if folded:
            out.append(folded)
            if len(folded) == 1:
                index.append(i)
            else:
                index.extend([i] * len(folded))
    return "".join(out), index


# ---- grapheme helpers (spans and mask length) -----------------------------------------------------

# What a code point does to the characters a reader sees (cached per code point).
_PLAIN, _EXTEND, _ZERO, _PICTO, _FLAG = range(5)
_KINDS: dict[str, int] = {}


def _classify(ch: str) -> int:
    cp = ord(ch)
    category = unicodedata.category(ch)
    if (category in ("Mn", "Mc", "Me") or cp == 0x200D      # marks, zero-width joiner
            or 0x1F3FB <= cp <= 0x1F3FF                      # emoji skin-tone modifiers
            or 0xE0020 <= cp <= 0xE007F):                    # emoji tag characters
        return _EXTEND
    if category in ("Cf", "Cc"):
        return _ZERO
    if 0x1F1E6 <= cp <= 0x1F1FF:
        return _FLAG
    if category == "So":
        return _PICTO
    return _PLAIN


def _kind(ch: str) -> int:
    kind = _KINDS.get(ch)
    if kind is None:
        kind = _classify(ch)
        if len(_KINDS) < MAX_CACHED:
            _KINDS[ch] = kind
    return kind


def cluster_end(text: str, i: int) -> int:
    """The end (exclusive) of the character at ``i`` with the marks and joiners attached to it
    (UAX #29 Extend and ZWJ, roughly: combining marks, variation selectors, ZWJ, skin tones, tags)."""
    n = len(text)
    j = i + 1
    while j < n and _kind(text[j]) == _EXTEND:
        j += 1
    return j


def cluster_start(text: str, i: int) -> int:
    """The index of the base character that the code point at ``i`` attaches to."""
    while i > 0 and _kind(text[i]) == _EXTEND:
        i -= 1
    return i


def visible_length(text: str) -> int:
    """How many characters a reader sees: base characters, not marks, joiners or zero-width.

    Approximates extended grapheme clusters: combining marks, variation selectors, skin tones,
    tags, zero-width and control characters add nothing; an emoji joined by ZWJ to the one
    before it adds nothing; a pair of regional indicators (a flag) counts once.
    """
    kinds = [_kind(ch) for ch in text]
    if not any(kinds):
        return len(text)
    count = 0
    after_zwj = False
    pending_flag = False
    for ch, kind in zip(text, kinds):
        joined, after_zwj = after_zwj, ch == "\u200d"
        if kind == _EXTEND or kind == _ZERO or (kind == _PICTO and joined):
            continue
        if kind == _FLAG:
            pending_flag = not pending_flag
            if not pending_flag:
                continue
        else:
            pending_flag = False
        count += 1
    return count


def is_word_char(ch: str) -> bool:
    """A letter or digit of a script written with spaces between words (below the CJK blocks).

    List entries that begin or end with such a character only match at a word boundary, so
    ``sb`` is not found inside ``husband`` or across ``was bored``.
    """
    return ch.isalnum() and ord(ch) < 0x2E80

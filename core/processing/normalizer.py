"""The text every understanding step reads: one normal form for what users type many ways.

``normalize_text`` turns 你們幾點開門？？😀 into 你们几点开门? — the router, the FAQ and the
embedding cache all start from it, so traditional characters, full-width letters, emoji and
shouting in capitals neither miss a stored phrasing nor fill the caches with copies:

* NFKC: full-width letters, digits and punctuation become their ASCII forms (ＡＢＣ１２３ -> abc123,
  ？ -> ?), compatibility characters their plain ones (① -> 1);
* traditional -> simplified Chinese, character by character, from OpenCC's ``TSCharacters``
  table (shipped by opencc-python-reimplemented; where OpenCC lists several simplified forms the
  first, the usual one, is taken);
* lower case;
* weather pictographs read as the word they show, from the words of their Unicode names
  (``symbol_word``: ☔ UMBRELLA WITH RAIN DROPS -> 雨, 🌂 CLOSED UMBRELLA -> 雨伞, 🥶 FREEZING FACE
  -> 冷), so 明天🌂要带吗 asks what 明天雨伞要带吗 asks;
* noise removed: other emoji and pictographs, symbols, invisible format characters (zero-width
  spaces, joiners, variation selectors) and control characters; runs of the same punctuation
  mark are kept once (?? -> ?), and runs of white space become one space.

The table is built lazily per code point and kept, so normalising costs one ``str.translate``.
"""
from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache
from pathlib import Path

#: Unicode categories dropped as noise: other symbols (emoji, dingbats, ★), modifier symbols,
#: format characters (ZWSP, ZWJ), controls, surrogates, private use, and combining marks (the
#: variation selectors that follow emoji; Chinese has none).
NOISE_CATEGORIES = frozenset({"So", "Sk", "Cf", "Cc", "Cs", "Co", "Mn", "Me"})
#: Kept although a control character: they separate words.
WHITESPACE_CONTROLS = frozenset("\t\n\r\x0b\x0c")
#: Cap on cached code points (a flood of distinct rare characters cannot grow the table).
MAX_CACHED = 100_000

#: Words of a symbol's Unicode name and the Chinese word the symbol then shows, first match
#: wins (so CLOUD WITH RAIN is 雨, SUN BEHIND CLOUD 多云). Whole name words only: RAINBOW,
#: SUNFLOWER and SNOWBOARDER are not weather. Reading names, not listing code points, covers
#: every weather emoji Unicode has or adds (🌦 🌨 🌩 🌪 🌫 🌬 ...).
SYMBOL_NAME_WORDS = (
    ("THUNDER", "雷阵雨"), ("LIGHTNING", "雷阵雨"), ("SNOWFLAKE", "雪"), ("SNOWMAN", "雪"),
    ("SNOW", "雪"), ("RAIN", "雨"), ("UMBRELLA", "雨伞"), ("FOG", "雾"), ("TORNADO", "台风"),
    ("CYCLONE", "台风"), ("WIND", "风"), ("THERMOMETER", "气温"), ("FREEZING", "冷"),
    ("OVERHEATED", "热"), ("CLOUD", "多云"), ("SUN", "晴"),
)
_REPEATED_PUNCT = re.compile(r"([^\w\s])\1+")
_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=1)
def t2s_table() -> dict[str, str]:
    """Traditional -> simplified single characters from OpenCC's ``TSCharacters`` dictionary."""
    import opencc

    path = Path(opencc.__file__).resolve().parent / "dictionary" / "TSCharacters.txt"
    table: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2:
                continue
            source, targets = parts[0], parts[1].split(" ")
            if len(source) == 1 and targets and len(targets[0]) == 1 and targets[0] != source:
                table[source] = targets[0]
    return table


@lru_cache(maxsize=4096)
def symbol_word(ch: str) -> str | None:
    """The word a weather pictograph shows (☔ -> 雨, ⛅ -> 多云), None for any other character."""
    if unicodedata.category(ch) != "So":
        return None
    words = set(unicodedata.name(ch, "").split())
    for name_word, word in SYMBOL_NAME_WORDS:
        if name_word in words:
            return word
    return None


def fold_char(ch: str) -> str:
    """The normal form of one code point ('' for noise)."""
    if ch in WHITESPACE_CONTROLS:
        return " "
    if unicodedata.category(ch) in NOISE_CATEGORIES:
        return symbol_word(ch) or ""
    folded = unicodedata.normalize("NFKC", ch).lower()
    t2s = t2s_table()
    return "".join(t2s.get(c, c) for c in folded
                   if unicodedata.category(c) not in NOISE_CATEGORIES or c in WHITESPACE_CONTROLS)


class _FoldTable(dict):
    """A ``str.translate`` table filled on first use of each code point."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def __missing__(self, cp: int) -> str:
        value = fold_char(chr(cp))
        if len(self) < MAX_CACHED:
            with self._lock:
                self[cp] = value
        return value


_TABLE = _FoldTable()


def normalize_text(text: str) -> str:
    """The normal form of a message or a stored phrasing (see the module docstring)."""
    if not text:
        return ""
    folded = text.translate(_TABLE)
    folded = _REPEATED_PUNCT.sub(r"\1", folded)
    return _SPACES.sub(" ", folded).strip()

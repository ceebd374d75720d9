"""Chinese word segmentation (jieba) shared by the router and every plugin.

Each ``Segmenter`` wraps a private ``jieba.Tokenizer`` rather than jieba's global one, so words one
bot (or one test) adds never leak into another. The cost, measured on the 2-core development
machine (see docs/routing.md):

* the first instance in a process loads jieba's prefix dictionary from a marshal cache under
  ``<cache dir>/jieba/`` (``[paths] cache_dir``, by default ~/.cache/skillbot; about 0.45 s; jieba writes the cache on the very first start, building it
  from ``dict.txt`` takes about 0.5 s) and the IDF table below (about 0.17 s): ~120 MB resident
  with the pristine copy of the dictionary kept for later instances;
* later instances copy that pristine dictionary (a ~500,000-key dict): ~10 ms and ~15 MB each.

Besides tokens, the segmenter provides the term weights the router and the FAQ use for
similarity: the inverse document frequencies jieba ships for its TF-IDF keyword extractor
(``jieba/analyse/idf.txt``, MIT licensed, ~270,000 words), loaded once per process. They are
corpus-independent, which is what lets one similarity threshold work on FAQs of any size.
"""
from __future__ import annotations

import logging
import math
import tempfile
import threading
import time
import unicodedata
from pathlib import Path
from typing import Any, Iterable

import jieba

log = logging.getLogger("skillbot.segmenter")
logging.getLogger("jieba").setLevel(logging.WARNING)
jieba.setLogLevel(logging.WARNING)

from ..settings import default_cache_dir

IDF_PATH = Path(jieba.__file__).resolve().parent / "analyse" / "idf.txt"

#: Words whose IDF is below this carry no topic (的, 了, 是, 我, 有, 可以, 能...): no feature.
STOP_IDF = 4.0
#: Weight of a pure number token (order numbers, quantities): low, they rarely decide a topic.
NUMBER_WEIGHT = 1.0
#: Weight of a token jieba's HMM invented (not in any dictionary, like 钱能 or 我要): its
#: characters carry the meaning, so the token itself counts little.
INVENTED_WEIGHT = 3.0
#: Dictionary words inside a longer token (开发票 -> 发票) count this fraction of their weight.
SUB_FACTOR = 0.5
#: Characters of a dictionary word count this fraction of their own weight (退款 -> 退, 款), so
#: "能退吗" still meets "退款", a little.
CHAR_FACTOR = 0.35
#: IDF estimated from jieba's word frequency for dictionary words missing from the IDF table:
#: log(total / freq) - FREQ_TO_IDF (fitted on words present in both).
FREQ_TO_IDF = 4.5
#: Conversational filler that jieba's IDF table (built from written text) rates as informative,
#: and sentence-final particles: they say nothing about the topic of a chat message.
FILLER_WORDS = frozenset({
    "你好", "您好", "请问", "麻烦", "谢谢", "一下", "想问", "问一下", "请教", "哈哈", "在吗",
    "你们", "我们", "我的", "你们家", "一个", "这个", "那个", "亲",
    "吗", "呢", "吧", "啊", "呀", "么", "嘛", "哈", "啦", "喔", "哦", "嗯", "呗", "哇", "诶",
})

# Process-wide, read-only after loading: jieba's pristine prefix dictionary and the IDF table.
_PRISTINE: tuple[dict[str, int], int] | None = None
_IDF: tuple[dict[str, float], float] | None = None
_LOCK = threading.Lock()


def _load_idf() -> tuple[dict[str, float], float]:
    """jieba's IDF table, parsed once per process (~0.17 s; a marshal copy loads no faster)."""
    global _IDF
    with _LOCK:
        if _IDF is None:
            table: dict[str, float] = {}
            with open(IDF_PATH, encoding="utf-8") as fh:
                for line in fh:
                    word, _, value = line.rstrip("\n").partition(" ")
                    if value:
                        table[word] = float(value)
            values = sorted(table.values())
            _IDF = (table, values[len(values) // 2])
        return _IDF


def _writable_dir(preferred: Path) -> str:
    try:
        preferred.mkdir(parents=True, exist_ok=True)
        probe = preferred / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
        return str(preferred)
    except OSError:
        return tempfile.gettempdir()


def _keep(token: str) -> bool:
    """A token is kept when it has at least one letter, digit or CJK character."""
    return any(ch.isalnum() for ch in token)


class Segmenter:
    """Tokens and term features for Chinese (and mixed) text.

    ``initialize()`` loads the dictionaries; call it at start-up so the first message does not pay
    for it. ``add_words()`` keeps plugin terms whole. ``tokenize()`` is what plugins see as
    ``ctx.tokens``; ``features()`` is what similarity is computed on.
    """

    def __init__(self, cache_dir: str | Path | None = None, hmm: bool = True) -> None:
        self.hmm = hmm
        #: Where jieba keeps its dictionary cache: never the source tree (see core/settings.py).
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir() / "jieba"
        self._tk = jieba.Tokenizer()
        self._tk.tmp_dir = None
        self.user_words: set[str] = set()
        self.init_seconds: float | None = None
        self._idf: dict[str, float] = {}
        self._median_idf = 10.0

    # ---- set-up -----------------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return self._tk.initialized and bool(self._idf)

    def initialize(self) -> float:
        """Load jieba's dictionary and the IDF table now; returns the seconds it took."""
        global _PRISTINE
        if self.initialized:
            return 0.0
        start = time.perf_counter()
        with _LOCK:
            pristine = _PRISTINE
        cache_dir = Path(_writable_dir(self.cache_dir))
        if pristine is None:
            self._tk.tmp_dir = str(cache_dir)
            self._tk.initialize()
            with _LOCK:
                if _PRISTINE is None and not self.user_words:
                    _PRISTINE = (dict(self._tk.FREQ), self._tk.total)
        else:
            with self._tk.lock:
                self._tk.FREQ = dict(pristine[0])
                self._tk.total = pristine[1]
                self._tk.initialized = True
        self._idf, self._median_idf = _load_idf()
        self.init_seconds = time.perf_counter() - start
        log.info("jieba ready in %.3f s (%d dictionary entries)", self.init_seconds, len(self._tk.FREQ))
        return self.init_seconds

    def add_words(self, items: Iterable[Any]) -> int:
        """Add words so segmentation keeps them whole; returns how many were added.

        Each item is ``"word"`` or ``(word, freq, tag)`` (freq and tag may be None; without a
        frequency jieba picks one high enough to keep the word in one piece).
        """
        if isinstance(items, (str, tuple)):
            items = [items]
        self.initialize()
        added = 0
        for item in items:
            if isinstance(item, str):
                word, freq, tag = item, None, None
            elif isinstance(item, (tuple, list)) and item and isinstance(item[0], str):
                word = item[0]
                freq = item[1] if len(item) > 1 else None
                tag = item[2] if len(item) > 2 else None
            else:
                raise TypeError(f"jieba word must be a str or (word, freq, tag), got {item!r}")
            word = self.normalize(word).strip()
            if not word or any(ch.isspace() for ch in word):
                continue
            if freq is not None and (not isinstance(freq, int) or freq < 1):
                raise ValueError(f"jieba word {word!r}: frequency must be a positive integer")
            self._tk.add_word(word, freq, tag)
            self.user_words.add(word)
            added += 1
        return added

    # ---- tokens ------------------------------------------------------------------------------

    @staticmethod
    def normalize(text: str) -> str:
        """NFKC (full-width letters and digits become ASCII) and lower case."""
        return unicodedata.normalize("NFKC", text).lower()

    def cut(self, text: str) -> list[str]:
        """Raw jieba tokens of normalised text, punctuation and spaces included."""
        self.initialize()
        return list(self._tk.cut(self.normalize(text), HMM=self.hmm))

    def tokenize(self, text: str) -> list[str]:
        """Lower-cased tokens without whitespace and punctuation."""
        if not text:
            return []
        self.initialize()
        return [t for t in self._tk.cut(self.normalize(text), HMM=self.hmm) if _keep(t)]

    def in_dictionary(self, word: str) -> bool:
        return bool(self._tk.FREQ.get(word))

    # ---- weights and features -----------------------------------------------------------------

    def weight(self, term: str) -> float:
        """How much a term says about the topic: its IDF, 0 for stop words and filler."""
        if term in FILLER_WORDS:
            return 0.0
        if term.isdigit():
            return NUMBER_WEIGHT
        idf = self._idf.get(term)
        if idf is None:
            freq = self._tk.FREQ.get(term)
            if not freq:
                return INVENTED_WEIGHT if len(term) > 1 and term[0] >= "\u3400" else self._median_idf
            if term in self.user_words:
                # a plugin's word (人工客服, 没更新): as informative as its best part, else rare
                parts = [self.weight(p) for p in self.subwords(term)]
                idf = max(parts) if parts else self._median_idf
            else:
                idf = min(self._median_idf, math.log(self._tk.total / freq) - FREQ_TO_IDF)
        return idf if idf >= STOP_IDF else 0.0

    def subwords(self, token: str) -> list[str]:
        """Dictionary words inside a longer token (开发票 -> 开发, 发票), for partial matches."""
        n = len(token)
        if n < 3 or token[0] < "\u3400":
            return []
        freq = self._tk.FREQ
        out = []
        for size in range(2, min(n, 5)):
            for i in range(n - size + 1):
                piece = token[i:i + size]
                if freq.get(piece):
                    out.append(piece)
        return out

    def features(self, tokens: Iterable[str]) -> dict[str, float]:
        """The weighted term set of a text, stop words dropped.

        Terms: each token (its weight), the dictionary words inside long tokens (their weight),
        and the characters of Chinese tokens: ``CHAR_FACTOR`` of their weight for dictionary
        words, their full weight for words jieba's HMM invented. A term seen twice keeps its
        highest weight.
        """
        out: dict[str, float] = {}
        weight = self.weight
        freq = self._tk.FREQ
        for token in tokens:
            w = weight(token)
            if w > out.get(token, 0.0):
                out[token] = w
            if len(token) < 2 or token[0] < "\u3400" or token in FILLER_WORDS:
                continue
            for sub in self.subwords(token):
                w = weight(sub) * SUB_FACTOR
                if w > out.get(sub, 0.0):
                    out[sub] = w
            factor = CHAR_FACTOR if freq.get(token) else 1.0
            for ch in token:
                w = weight(ch) * factor
                if w > out.get(ch, 0.0):
                    out[ch] = w
        return out

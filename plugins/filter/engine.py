"""The sensitive-word engine: word lists, the Aho-Corasick automaton, matching and masking.

``FilterEngine`` is immutable once built (safe to share between the event loop and a reload
thread); ``WordFilter`` owns the list files and swaps in a new engine when they change.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import ahocorasick_rs

from .normalize import (
    ASTRAL,
    DEFAULT_SEPARATORS,
    SEPARATOR,
    Normaliser,
    cluster_end,
    cluster_start,
    is_word_char,
    normaliser_for,
    visible_length,
)

_ASTRAL_SEARCH = ASTRAL.search

log = logging.getLogger("skillbot.filter")

#: Actions in increasing severity.
ACTIONS = ("log", "mask", "block")
SEVERITY = {action: rank for rank, action in enumerate(ACTIONS)}


class ListError(Exception):
    """A word-list file that cannot be used (unreadable, not UTF-8, malformed line)."""


@dataclass(frozen=True)
class Entry:
    """One line of a word list."""

    word: str
    category: str = ""
    source: str = ""


@dataclass(slots=True)
class Hit:
    """A listed word found in a text; ``start:end`` is the span of the original text."""

    word: str
    category: str
    action: str
    start: int
    end: int
    text: str
    direction: str = "inbound"


# ---- list files -------------------------------------------------------------------------------

def _decode(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ListError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ListError(f"{path}:{line}: not valid UTF-8 (byte {exc.start})") from None
    if "\x00" in text:
        line = text[:text.index("\x00")].count("\n") + 1
        raise ListError(f"{path}:{line}: NUL character (a binary file?)")
    return text


def _lines(path: Path) -> Iterable[tuple[int, list[str]]]:
    for lineno, line in enumerate(_decode(path).split("\n"), 1):
        line = line.rstrip("\r")
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        yield lineno, line.split("\t")


def read_word_list(path: str | Path) -> list[Entry]:
    """Entries of a word list: ``word`` or ``word<TAB>category`` per line, ``#`` comments."""
    path = Path(path)
    entries = []
    for lineno, parts in _lines(path):
        if len(parts) > 2:
            raise ListError(f"{path}:{lineno}: more than one tab (expected word<TAB>category)")
        word = parts[0].strip()
        category = parts[1].strip() if len(parts) == 2 else ""
        if not word:
            raise ListError(f"{path}:{lineno}: empty word before the tab")
        if any(c.isspace() for c in category):
            raise ListError(f"{path}:{lineno}: category {category!r} contains spaces")
        entries.append(Entry(word, category, f"{path.name}:{lineno}"))
    return entries


def read_allow_list(path: str | Path) -> list[Entry]:
    """Entries of an allow list: one word per line (anything after a tab is a free note)."""
    path = Path(path)
    entries = []
    for lineno, parts in _lines(path):
        word = parts[0].strip()
        if word:
            entries.append(Entry(word, "", f"{path.name}:{lineno}"))
    return entries


# ---- the engine --------------------------------------------------------------------------------

class _Key:
    """What the automaton stores for one normalised key."""

    __slots__ = ("entry", "action", "allowed", "start_boundary", "end_boundary")

    def __init__(self) -> None:
        self.entry: Entry | None = None
        self.action = ""
        self.allowed = False
        self.start_boundary = False
        self.end_boundary = False


class FilterEngine:
    """Finds listed words in text over normalised characters and maps them back to the original.

    ``actions`` maps a category to ``block``/``mask``/``log``; entries without a category or with
    a category not in the map get ``default_action``. When the same word is listed twice the
    strictest action wins. A hit is dropped when an allow-list match covers it.
    """

    def __init__(self, entries: Iterable[Entry], allow: Iterable[Entry] = (),
                 actions: dict[str, str] | None = None, default_action: str = "block",
                 separators: str = DEFAULT_SEPARATORS) -> None:
        actions = actions or {}
        for action in (default_action, *actions.values()):
            if action not in SEVERITY:
                raise ValueError(f"unknown action {action!r} (use one of {', '.join(ACTIONS)})")
        self.normalise: Normaliser = normaliser_for(separators)
        self.skipped: list[Entry] = []
        keys: dict[str, _Key] = {}
        for entry in entries:
            key = self._key(entry, keys)
            if key is None:
                continue
            action = actions.get(entry.category, default_action)
            if key.entry is None or SEVERITY[action] > SEVERITY[key.action]:
                key.entry, key.action = entry, action
        allowed = 0
        for entry in allow:
            key = self._key(entry, keys)
            if key is not None:
                key.allowed = True
                allowed += 1
        self.words = sum(1 for k in keys.values() if k.entry is not None and not k.allowed)
        self.allowed = allowed
        self.patterns = list(keys)
        self._keys = list(keys.values())
        # Overlapping matches (MATCHKIND_STANDARD): every listed word, so the allow list and the
        # strictest action can be applied. Indexes come back as str (code point) offsets.
        self.automaton = ahocorasick_rs.AhoCorasick(self.patterns) if keys else None
        self._find = self.automaton.find_matches_as_indexes if self.automaton else None
        self._codes = self.normalise.codes  # grows in place, never replaced
        if self.skipped:
            log.warning("filter: %d list entries fold to nothing and were skipped (first: %s %r)",
                        len(self.skipped), self.skipped[0].source, self.skipped[0].word)

    def _key(self, entry: Entry, keys: dict[str, _Key]) -> _Key | None:
        text = self.normalise(entry.word).strip(SEPARATOR)
        if not text:
            self.skipped.append(entry)
            return None
        key = keys.get(text)
        if key is None:
            key = keys[text] = _Key()
            key.start_boundary = is_word_char(text[0])
            key.end_boundary = is_word_char(text[-1])
        return key

    def scan(self, text: str, direction: str = "inbound") -> list[Hit]:
        """Every listed word in ``text`` (overlaps included), in order of their end."""
        find = self._find
        if find is None or not text:
            return []
        # Fast path: normalise with str.translate and scan; most texts stop here.
        if _ASTRAL_SEARCH(text) is not None:
            self.normalise.prepare(text)
        found = find(text.translate(self._codes), overlapping=True)
        if not found:
            return []
        normalise = self.normalise
        keys = self._keys
        banned = []
        allowed = []
        for number, start, end in found:
            key = keys[number]
            if key.allowed:
                allowed.append((start, end))
            elif key.entry is not None:
                banned.append((start, end, key))
        if allowed and banned:
            banned = [b for b in banned if not any(a0 <= b[0] and b[1] <= a1 for a0, a1 in allowed)]
        if not banned:
            return []
        # Slow path (only texts with a candidate hit): map back to the original characters.
        origins = normalise.origins(text, [p for b in banned for p in (b[0], b[1] - 1)])
        hits = []
        for number, (start, end, key) in enumerate(banned):
            span_start = origins[2 * number]
            span_end = cluster_end(text, origins[2 * number + 1])
            if key.start_boundary and not self._boundary_before(text, span_start):
                continue
            if key.end_boundary and not self._boundary_after(text, span_end):
                continue
            entry = key.entry
            hits.append(Hit(entry.word, entry.category, key.action, span_start, span_end,
                            text[span_start:span_end], direction))
        return hits

    def _boundary_before(self, text: str, start: int) -> bool:
        if start == 0:
            return True
        folded = self.normalise.fold(text[cluster_start(text, start - 1)])
        return not folded or not is_word_char(folded[-1])

    def _boundary_after(self, text: str, end: int) -> bool:
        if end >= len(text):
            return True
        folded = self.normalise.fold(text[end])
        return not folded or not is_word_char(folded[0])

    @staticmethod
    def mask(text: str, hits: Sequence[Hit], mask_char: str = "*") -> str:
        """``text`` with each hit's original span replaced by one ``mask_char`` per visible character.

        Overlapping and touching spans are merged; everything outside the spans is kept as is.
        """
        if len(hits) == 1:
            hit = hits[0]
            return (text[:hit.start] + mask_char * max(1, visible_length(text[hit.start:hit.end]))
                    + text[hit.end:])
        spans = sorted((h.start, h.end) for h in hits)
        merged: list[list[int]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        pieces = []
        position = 0
        for start, end in merged:
            pieces.append(text[position:start])
            pieces.append(mask_char * max(1, visible_length(text[start:end])))
            position = end
        pieces.append(text[position:])
        return "".join(pieces)


def strictest(hits: Iterable[Hit]) -> str | None:
    """The most severe action among ``hits`` (None when there are none)."""
    best = None
    for hit in hits:
        if best is None or SEVERITY[hit.action] > SEVERITY[best]:
            best = hit.action
    return best


# ---- files that reload -------------------------------------------------------------------------

Signature = tuple[tuple[str, int, int], ...]


class WordFilter:
    """The current engine for a set of list files, rebuilt when any of the files changes.

    ``load()`` raises ``ListError`` (used at start-up: a broken list stops the bot with the file
    and line named). ``reload_if_changed()`` never raises: a broken file is logged and the
    previous engine stays in service until the files change again.
    """

    def __init__(self, word_files: Sequence[str | Path], allow_files: Sequence[str | Path] = (),
                 actions: dict[str, str] | None = None, default_action: str = "block",
                 separators: str = DEFAULT_SEPARATORS) -> None:
        self.word_files = [Path(p) for p in word_files]
        self.allow_files = [Path(p) for p in allow_files]
        self.actions = dict(actions or {})
        self.default_action = default_action
        self.separators = separators
        self.engine: FilterEngine | None = None
        self.loaded_signature: Signature | None = None
        self.failed_signature: Signature | None = None
        self.last_error: str | None = None
        self._lock = threading.Lock()

    def signature(self) -> Signature:
        """(path, mtime ns, size) of every list file; (-1, -1) for a file that cannot be stat'ed."""
        items = []
        for path in (*self.word_files, *self.allow_files):
            try:
                st = os.stat(path)
                items.append((str(path), st.st_mtime_ns, st.st_size))
            except OSError:
                items.append((str(path), -1, -1))
        return tuple(items)

    def build(self) -> FilterEngine:
        entries: list[Entry] = []
        for path in self.word_files:
            entries.extend(read_word_list(path))
        allow: list[Entry] = []
        for path in self.allow_files:
            allow.extend(read_allow_list(path))
        return FilterEngine(entries, allow, self.actions, self.default_action, self.separators)

    def load(self) -> FilterEngine:
        with self._lock:
            signature = self.signature()
            engine = self.build()
            self.engine = engine
            self.loaded_signature = signature
            self.failed_signature = None
            self.last_error = None
        log.info("filter: %d words, %d allow-list entries from %d file(s)", engine.words,
                 engine.allowed, len(self.word_files) + len(self.allow_files))
        return engine

    def changed(self) -> bool:
        signature = self.signature()
        return signature != self.loaded_signature and signature != self.failed_signature

    def reload_if_changed(self) -> bool:
        """Rebuild when a list file changed since the last load; True when a new engine is in use."""
        with self._lock:
            signature = self.signature()
            if signature == self.loaded_signature or signature == self.failed_signature:
                return False
            try:
                engine = self.build()
            except ListError as exc:
                self.failed_signature = signature
                self.last_error = str(exc)
                log.error("filter: word lists not reloaded, keeping the previous lists: %s", exc)
                return False
            self.engine = engine
            self.loaded_signature = signature
            self.failed_signature = None
            self.last_error = None
        log.info("filter: word lists reloaded: %d words, %d allow-list entries",
                 engine.words, engine.allowed)
        return True

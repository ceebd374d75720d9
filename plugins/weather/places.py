"""Chinese place names -> coordinates, from the bundled table ``data/places.tsv``.

The table (derived once from cpca's adcodes.csv, see ``data/build_places.py``) holds every
province, prefecture-level division and county-level division with coordinates. Each one is
known by its full name (海淀区) and its name without suffix (海淀); a few have aliases (内蒙).

Finding places in a sentence:

* one Aho-Corasick automaton over every name, scanned leftmost-longest, so 北京市 beats 北京 and
  海淀区 beats 海淀; no word segmentation or part-of-speech tags are involved;
* spans the caller already explained (day words such as 今天 in 今天水温) can be masked first;
* names that are ordinary words (和平, 比如, 天台, flag ``q``) or generic (城区, 矿区, flag ``Q``)
  only count when one of their ancestors is named too (天津和平, 马鞍山和县);
* an ambiguous name is resolved first by ancestors named in the same sentence (辽宁朝阳 -> the
  city, 北京朝阳 -> the district), then by prominence (see build_places.py), then adcode.

Latin names (pinyin generated at build time, English exonyms: beijing, Shang Hai, xi'an, Peking,
Hong Kong, Taipei) are not matched here: ``latin_word(key)`` gives the Chinese name a latin key
stands for, and the weather skill's text normaliser writes it in before the Chinese finder runs,
so 朝阳/chaoyang and 辽宁 chaoyang resolve by the same rules.

``find_alikes`` finds sound-alike typos of province and city names (深证 for 深圳); the caller
decides when one counts (the weather skill: only with a weather or day word right after it).
"""
from __future__ import annotations

import csv
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import ahocorasick

DATA = Path(__file__).parent / "data" / "places.tsv"
#: Province and city names with one character typed by sound (深证, 杭洲): build_sound_alikes.py.
ALIKES = Path(__file__).parent / "data" / "place_sound_alikes.tsv"
_BLANK = "\u3000"  # what masked characters become (whitespace, so it never joins a name)
_FILLER = " \t\u3000的"
LEVELS = ("province", "city", "district")


@dataclass(frozen=True)
class Place:
    adcode: str
    name: str
    short: str
    level: str
    parent: str
    lat: float
    lon: float
    prominence: int
    flags: str = ""
    aliases: tuple[str, ...] = ()
    #: Latin keys for ``short`` (pinyin, exonyms) and for ``name`` (beijing / beijingshi).
    latin: tuple[str, ...] = ()
    latin_full: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Cache key part: the same place under any of its names shares one key."""
        return self.adcode


@dataclass
class Mention:
    """One place name found in a text, with the place it was resolved to."""

    start: int
    end: int  # exclusive
    word: str
    place: Place
    #: True when another mention in the text is an ancestor of ``place`` (北京 in 北京朝阳).
    qualified: bool = False


@dataclass
class _Entry:
    place: Place
    restricted: bool


@dataclass
class PlaceIndex:
    places: dict[str, Place]
    _automaton: ahocorasick.Automaton = field(repr=False)
    _entries: dict[str, list[_Entry]] = field(repr=False)
    #: latin key -> the Chinese name it stands for (of the most prominent place having the key).
    _latin: dict[str, str] = field(default_factory=dict, repr=False)
    #: sound-alike typo -> adcode, as an automaton (None: none loaded).
    _alikes: ahocorasick.Automaton | None = field(default=None, repr=False)

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def from_places(cls, places: Iterable[Place], alikes: dict[str, str] | None = None) -> "PlaceIndex":
        by_code = {p.adcode: p for p in places}
        entries: dict[str, list[_Entry]] = {}

        def add(word: str, place: Place, restricted: bool) -> None:
            if len(word) < 2:
                return
            bucket = entries.setdefault(word, [])
            for existing in bucket:
                if existing.place is place:
                    existing.restricted = existing.restricted and restricted
                    return
            bucket.append(_Entry(place, restricted))

        for place in by_code.values():
            generic = "Q" in place.flags
            add(place.name, place, generic)
            add(place.short, place, generic or "q" in place.flags)
            for alias in place.aliases:
                add(alias, place, generic)
        for bucket in entries.values():
            bucket.sort(key=lambda e: (-e.place.prominence, e.place.adcode))
        automaton = ahocorasick.Automaton()
        for word in entries:
            automaton.add_word(word, word)
        automaton.make_automaton()
        latin: dict[str, str] = {}
        for place in sorted(by_code.values(), key=lambda p: (-p.prominence, p.adcode)):
            for key in place.latin:
                latin.setdefault(key, place.short)
            for key in place.latin_full:
                latin.setdefault(key, place.name)
        alike_automaton = None
        if alikes:
            alike_automaton = ahocorasick.Automaton()
            for variant, code in alikes.items():
                if code in by_code:
                    alike_automaton.add_word(variant, (variant, code))
            alike_automaton.make_automaton()
        return cls(places=by_code, _automaton=automaton, _entries=entries, _latin=latin,
                   _alikes=alike_automaton)

    @classmethod
    def load(cls, path: Path = DATA, alikes: Path | None = ALIKES) -> "PlaceIndex":
        return cls.from_places(read_table(path), read_alikes(alikes) if alikes else None)

    # ---- look-ups -----------------------------------------------------------------------------

    def get(self, adcode: str) -> Place | None:
        return self.places.get(adcode)

    def ancestors(self, place: Place) -> list[Place]:
        chain = []
        code = place.parent
        while code and code in self.places:
            parent = self.places[code]
            chain.append(parent)
            code = parent.parent
        return chain

    def lookup(self, name: str) -> Place | None:
        """The most prominent place called exactly ``name`` (restricted names included)."""
        bucket = self._entries.get(name.strip())
        return bucket[0].place if bucket else None

    def latin_word(self, key: str) -> str | None:
        """The Chinese name a latin key (lower case, letters only) stands for: shanghai -> 上海,
        chaoyangqu -> 朝阳区, peking -> 北京. Of several places sharing a key the most prominent
        one's name is given (taizhou -> 泰州, as the Chinese finder would rank them)."""
        return self._latin.get(key)

    def words(self, min_length: int = 2) -> list[str]:
        """Names worth teaching a tokenizer: everything usable without a qualifier."""
        return sorted(w for w, bucket in self._entries.items()
                      if len(w) >= min_length and any(not e.restricted for e in bucket))

    def display_name(self, place: Place) -> str:
        """A short, unambiguous Chinese label: 北京, 广州, 北京朝阳区, 辽宁朝阳市."""
        if place.level == "province":
            return place.short
        parent = self.places.get(place.parent)
        if place.level == "city":
            top = self._entries.get(place.short, [])
            if top and top[0].place is not place and parent is not None:
                return parent.short + place.name
            return place.short
        if parent is None:
            return place.name
        return parent.short + place.name

    # ---- finding places in text ---------------------------------------------------------------

    def find(self, text: str, mask: Iterable[tuple[int, int]] = ()) -> list[Mention]:
        """Places named in ``text``, in order; qualifiers (the 北京 of 北京朝阳) are folded in.

        ``mask`` spans (start, end) are blanked before scanning, so a day word such as 今天 never
        lends a character to a place name (今天水温 must not find 天水).

        Names written next to each other (only spaces or 的 between) form a run; within a run an
        earlier name that is an ancestor of a later one qualifies it: 辽宁朝阳 is Liaoning's 朝阳,
        and 辽宁 is not reported separately. 吉林和长春 are two runs, so two places.
        """
        chars = list(text)
        for start, end in mask:
            for i in range(max(start, 0), min(end, len(chars))):
                chars[i] = _BLANK
        scanned = "".join(chars)
        raw = [(end - len(word) + 1, end + 1, word) for end, word in self._automaton.iter_long(scanned)]
        if not raw:
            return []
        run = [0] * len(raw)
        for i in range(1, len(raw)):
            gap = scanned[raw[i - 1][1]:raw[i][0]]
            run[i] = run[i - 1] if gap.strip(_FILLER) == "" else run[i - 1] + 1
        named = [{e.place.adcode for e in self._entries[word]} for _, _, word in raw]

        def qualifiers(i: int, place: Place) -> list[int]:
            codes = {p.adcode for p in self.ancestors(place)}
            return [j for j in range(len(raw)) if j != i and run[j] == run[i] and named[j] & codes]

        chosen: list[tuple[Place, list[int]] | None] = []
        for i, (_, _, word) in enumerate(raw):
            best: tuple[tuple[int, int], Place, list[int]] | None = None
            for entry in self._entries[word]:  # most prominent first
                quals = qualifiers(i, entry.place)
                if entry.restricted and not quals:
                    continue
                rank = (len(quals), entry.place.prominence)
                if best is None or rank > best[0]:
                    best = (rank, entry.place, quals)
            chosen.append((best[1], best[2]) if best else None)

        consumed = {j for pick in chosen if pick for j in pick[1]}
        mentions = []
        for i, pick in enumerate(chosen):
            if pick is None or i in consumed:
                continue
            start, end, word = raw[i]
            if pick[1]:
                start = min(start, min(raw[j][0] for j in pick[1]))
            mentions.append(Mention(start, end, word, pick[0], qualified=bool(pick[1])))
        return mentions


    def find_alikes(self, text: str, mask: Iterable[tuple[int, int]] = ()) -> list[Mention]:
        """Sound-alike typos of province and city names (深证 -> 深圳), outside ``mask``."""
        if self._alikes is None:
            return []
        chars = list(text)
        for start, end in mask:
            for i in range(max(start, 0), min(end, len(chars))):
                chars[i] = _BLANK
        found = []
        for end, (variant, code) in self._alikes.iter_long("".join(chars)):
            found.append(Mention(end - len(variant) + 1, end + 1, variant, self.places[code]))
        return found


def read_alikes(path: Path = ALIKES) -> dict[str, str]:
    with path.open(encoding="utf-8") as f:
        rows = csv.DictReader((line for line in f if not line.startswith("#")), delimiter="\t")
        return {row["variant"]: row["adcode"] for row in rows}


def read_table(path: Path = DATA) -> list[Place]:
    places = []
    with path.open(encoding="utf-8") as f:
        rows = csv.DictReader((line for line in f if not line.startswith("#")), delimiter="\t")
        for row in rows:
            places.append(Place(
                adcode=row["adcode"], name=row["name"], short=row["short"], level=row["level"],
                parent=row["parent"], lat=float(row["lat"]), lon=float(row["lon"]),
                prominence=int(row["prominence"]), flags=row["flags"] or "",
                aliases=tuple(a for a in (row["aliases"] or "").split(",") if a),
                latin=tuple(k for k in (row.get("latin") or "").split(",") if k),
                latin_full=tuple(k for k in (row.get("latin_full") or "").split(",") if k)))
    return places


@functools.lru_cache(maxsize=4)
def default_index(path: Path = DATA) -> PlaceIndex:
    """The bundled table, loaded once per process (start-up, not per message)."""
    return PlaceIndex.load(path)

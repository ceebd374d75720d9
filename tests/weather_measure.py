"""Measuring the weather skill's understanding on a message set (issue 14).

Weather sets (``utterance<TAB>place<TAB>day``, see tests/data/heldout/README.md): every line is
read by the weather plugin of a running bot (``Plugin.read``: the reading its router scorer and
``skillbot_handle`` use, with the bot's segmenter), today being Wednesday 2025-11-26, and the
place and the day found are compared with the line's. General sets (``utterance``): every line is
sent, each from a new user, through a running bot whose only skill is the weather plugin (the
router, the plugin's scorer and ``skillbot_handle`` all take part); a line counts as right when
the weather skill does not answer it.

Print the figures and every miss::

    .venv/bin/python -m tests.weather_measure tests/data/heldout
    .venv/bin/python -m tests.weather_measure tests/data/tuning
    .venv/bin/python -m tests.weather_measure tests/data/tuning _typed   # the second tuning pair
    .venv/bin/python -m tests.weather_measure tests/data/tuning _r4      # the third
"""
from __future__ import annotations

import asyncio
import csv
import sys
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from plugins.weather.dates import CHINA_TZ
from plugins.weather.places import Place, PlaceIndex

TODAY = date(2025, 11, 26)  # a Wednesday, as in the other weather tests
DAY_OFFSETS = {"今天": [0], "明天": [1], "后天": [2], "大后天": [3]}


def read_rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8") as f:
        lines = [line for line in f if line.strip() and not line.startswith("#")]
    rows = list(csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))
    if rows and rows[0][0] == "utterance":  # a first row naming the columns (tuning sets)
        rows = rows[1:]
    return rows


def resolve(expected: str, index: PlaceIndex) -> Place | None:
    """The table's place for a canonical name: 北京, 香港, 北京/朝阳区, 苏州/昆山市, 香港/铜锣湾."""
    city, _, name = expected.partition("/")
    candidates = []
    for place in index.places.values():
        if name:
            if name in (place.name, place.short) and any(
                    city in (a.short, a.name) for a in index.ancestors(place)):
                candidates.append(place)
        elif city in (place.short, place.name) and place.level in ("province", "city"):
            candidates.append(place)
    candidates.sort(key=lambda p: (-p.prominence, p.adcode))
    return candidates[0] if candidates else None


@dataclass
class WeatherFigures:
    total: int = 0
    place: int = 0
    day: int = 0
    both: int = 0
    misses: list[str] = field(default_factory=list)

    def percent(self, part: int) -> float:
        return 100.0 * part / self.total if self.total else 0.0

    def line(self) -> str:
        return (f"weather lines {self.total}: place {self.percent(self.place):.1f} %, "
                f"day {self.percent(self.day):.1f} %, both {self.percent(self.both):.1f} %")


def day_matches(expected: str, q) -> bool:
    requested = sorted((d - TODAY).days for d in q.days.dates + q.days.beyond)
    if expected == "-":
        return not q.days.found
    if expected == "现在":
        return q.days.current and requested in ([], [0])
    if expected == "周末":
        return q.days.weekend
    if expected.startswith("+") and ".." in expected:  # a span: +0..1 is today and tomorrow
        first, _, last = expected[1:].partition("..")
        return not q.days.current and requested == list(range(int(first), int(last) + 1))
    if expected.startswith("+"):
        return not q.days.current and requested == [int(expected[1:])]
    return not q.days.current and requested == DAY_OFFSETS[expected]


def measure_weather(path: Path, plugin: Any) -> WeatherFigures:
    """``plugin``: the weather plugin of a running bot."""
    index = plugin.index
    plugin.now = lambda: datetime(TODAY.year, TODAY.month, TODAY.day, 9, 30, tzinfo=CHINA_TZ)
    figures = WeatherFigures()
    for utterance, place, day in read_rows(path):
        figures.total += 1
        q = plugin.read(utterance)
        got = [s.key for s in q.spots]
        if place == "-":
            place_ok = got == []
        else:
            wanted = resolve(place, index)
            place_ok = wanted is not None and got == [wanted.adcode]
        day_ok = day_matches(day, q)
        figures.place += place_ok
        figures.day += day_ok
        figures.both += place_ok and day_ok
        if not (place_ok and day_ok):
            found = ",".join(s.name for s in q.spots) or "-"
            days = ("现在 " if q.days.current else "") + ",".join(
                f"+{(d - TODAY).days}" for d in q.days.dates + q.days.beyond)
            figures.misses.append(f"{utterance}\twant {place} {day}\tgot {found} {days or '-'}")
    return figures


@dataclass
class GeneralFigures:
    total: int = 0
    not_weather: int = 0
    misses: list[str] = field(default_factory=list)

    def line(self) -> str:
        percent = 100.0 * self.not_weather / self.total if self.total else 0.0
        return f"general lines {self.total}: not answered as weather {percent:.1f} %"


async def measure_general(path: Path, bot: Any) -> GeneralFigures:
    """Each line from a new user through ``bot`` (weather as its only skill)."""
    figures = GeneralFigures()
    for i, (utterance, *_rest) in enumerate(read_rows(path)):
        figures.total += 1
        reply = await bot.send(utterance, user=f"general{i}")
        if getattr(reply, "plugin", None) == "weather":
            figures.misses.append(f"{utterance}\t-> {getattr(reply, 'content', reply)!r}"[:160])
        else:
            figures.not_weather += 1
    return figures


#: A bot whose only skill is the weather plugin. The provider's address is unreachable on
#: purpose: a general line wrongly taken gets the skill's apology, still counted as taken.
WEATHER_ONLY = {"plugins": {"enabled": ["weather"],
                            "weather": {"base_url": "http://127.0.0.1:9", "timeout": 0.2}}}


async def measure(folder: Path, suffix: str = "") -> tuple[WeatherFigures, GeneralFigures]:
    """``suffix``: which pair of files, ``weather_messages{suffix}.tsv`` and
    ``general_messages{suffix}.tsv`` (``_typed``: the second tuning pair)."""
    from core.testing import running_bot

    async with running_bot(WEATHER_ONLY) as bot:
        weather = measure_weather(folder / f"weather_messages{suffix}.tsv", bot.pm.get_plugin("weather"))
    async with running_bot(WEATHER_ONLY) as bot:
        general = await measure_general(folder / f"general_messages{suffix}.tsv", bot)
    return weather, general


def main(argv: list[str]) -> int:
    folder = Path(argv[1]) if len(argv) > 1 else Path("tests/data/heldout")
    weather, general = asyncio.run(measure(folder, argv[2] if len(argv) > 2 else ""))
    for miss in weather.misses:
        print("MISS", miss)
    for miss in general.misses:
        print("TAKEN", miss)
    print(weather.line())
    print(general.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))

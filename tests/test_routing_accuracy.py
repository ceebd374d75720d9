"""Routing accuracy on the labelled set (tests/data/utterances.tsv), through a real bot.

Every utterance goes through the whole pipeline of a running bot with the real FAQ and weather
plugins (the weather skill talks to the local weather stand-in) and a recorder in the LLM's
place, so a skill that declines (the weather skill on "天气太冷了我不想上班") counts exactly as it
would in production. The test prints every miss with the router's explanation and the accuracy
per section, and requires 95% overall.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pytest

from core import TextReply, hookimpl
from core.testing import running_bot
from tests.standins.weather_server import WeatherStandIn

DATA = Path(__file__).parent / "data" / "utterances.tsv"
TODAY = date(2025, 11, 26)
REQUIRED = 0.95


@dataclass
class Case:
    text: str
    expected: str
    context: str
    section: str
    line: int


def load_cases() -> list[Case]:
    cases: list[Case] = []
    section = ""
    for n, raw in enumerate(DATA.read_text(encoding="utf-8").splitlines(), 1):
        if raw.startswith("# ----"):
            section = raw.strip("# -")
            continue
        if not raw.strip() or raw.startswith("#"):
            continue
        parts = raw.split("\t")
        assert len(parts) in (2, 3), f"line {n}: expected 2 or 3 tab-separated columns: {raw!r}"
        expected = parts[1].strip()
        assert expected in ("weather", "fallback") or expected.startswith("faq:"), f"line {n}: {expected!r}"
        cases.append(Case(parts[0].strip(), expected, parts[2].strip() if len(parts) == 3 else "",
                          section, n))
    return cases


class ChatRecorder:
    """Stands where the LLM plugin would: answers whatever reaches the fallback stage."""

    @hookimpl
    def skillbot_fallback(self, ctx):
        return TextReply("fallback")


def outcome(reply, ctx) -> str:
    if reply.plugin == "faq":
        return f"faq:{ctx.extra.get('faq_id')}"
    if reply.plugin == "weather":
        return "weather"
    return "fallback"


def test_labelled_set_is_big_and_valid():
    cases = load_cases()
    assert len(cases) >= 150
    assert len({c.text for c in cases}) == len(cases), "duplicate utterances"
    kinds = {c.expected.split(":")[0] for c in cases}
    assert kinds == {"weather", "faq", "fallback"}


@pytest.fixture
async def weather_url(aiohttp_server):
    stand_in = WeatherStandIn(today=TODAY)
    server = await aiohttp_server(stand_in.app())
    return str(server.make_url("")).rstrip("/")


async def test_routing_accuracy(weather_url):
    from plugins.weather.dates import CHINA_TZ

    cases = load_cases()
    overrides = {"plugins": {"enabled": ["faq", "weather"],
                             "weather": {"base_url": weather_url, "timeout": 2.0},
                             "faq": {"reload_interval": 0}}}
    misses: list[str] = []
    per_section: dict[str, list[int]] = {}
    async with running_bot(overrides, plugins={"chat": ChatRecorder()}) as bot:
        bot.pm.get_plugin("weather").now = lambda: datetime(2025, 11, 26, 9, 30, tzinfo=CHINA_TZ)
        faq = bot.pm.get_plugin("faq")
        known = set(faq.data.entries)
        for i, case in enumerate(cases):
            if case.expected.startswith("faq:"):
                assert case.expected[4:] in known, f"line {case.line}: no FAQ entry {case.expected}"
            user = f"acc_user_{i}"
            if case.context:
                await bot.send(case.context, user=user)
            reply = await bot.send(case.text, user=user)
            got = outcome(reply, bot.last_context)
            tally = per_section.setdefault(case.section, [0, 0])
            tally[1] += 1
            if got == case.expected:
                tally[0] += 1
                continue
            route = bot.last_context.route
            candidates = [(c["intent"], c["score"], c["slots"].get("faq_id"), c["evidence"])
                          for c in route.explain()["candidates"]] if route else []
            nearest = [(m.entry_id, round(m.score, 3)) for m in
                       faq.index.search(case.text, bot.tokenize(case.text), limit=2)]
            misses.append(f"  line {case.line}: {case.text!r} expected {case.expected}, got {got}; "
                          f"tokens {route.tokens if route else []}; candidates {candidates}; "
                          f"nearest FAQ entries {nearest}")
    hits = sum(t[0] for t in per_section.values())
    accuracy = hits / len(cases)
    print(f"\nrouting accuracy: {hits}/{len(cases)} = {accuracy:.1%}")
    for section, (ok, total) in per_section.items():
        print(f"  {section}: {ok}/{total}")
    print(f"misses ({len(misses)}):")
    print("\n".join(misses) or "  none")
    assert accuracy >= REQUIRED, f"accuracy {accuracy:.1%} < {REQUIRED:.0%}; misses:\n" + "\n".join(misses)

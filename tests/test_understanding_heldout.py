"""Understanding measured on the frozen held-out sets (tests/data/heldout/, never edited to pass).

Each business's plain FAQ is loaded as the bot's FAQ and its customers' messages go through a
real bot (faq and weather plugins, the weather stand-in, a recorder in the model's place); the
weather and general sets go through a bot with the demo FAQ. The floors are the figures reached
on this branch minus a small margin (docs/routing.md has the first-run and final figures and the
issue's aims, which are not met yet). ``python -m tests.understanding_sets --misses`` prints them all.
"""
from __future__ import annotations

from tests.understanding_sets import heldout_sets, run_all, summary

#: Measured 2026-11-26 with the FAQ's learned decline model and its re-ranker of the three most
#: probable entries (docs/routing.md, commit f7f7122): gym 69.4%, bank
#: 66.7%, admissions 77.8%, weather (reaches the weather skill) 96.2%, general (reaches the
#: model) 90.6%, overall 79.5%. Floors one or two messages below.
FLOORS = {"gym": 0.68, "bank": 0.66, "admissions": 0.77, "weather": 0.95, "general": 0.89}
OVERALL_FLOOR = 0.79


async def test_heldout_sets_meet_their_floors():
    sets = heldout_sets()
    assert set(sets) == set(FLOORS)
    for name, (_faq, cases) in sets.items():
        assert len(cases) >= 100, name
    results = await run_all(sets)
    print("\n" + summary(results))
    low = []
    right = total = 0
    for name, evaluation in results.items():
        r, t = evaluation.accuracy()
        right, total = right + r, total + t
        if r / t < FLOORS[name]:
            low.append(f"{name}: {r}/{t} = {r / t:.1%} < {FLOORS[name]:.0%}\n{evaluation.report(20)}")
    assert not low, "\n".join(low)
    assert right / total >= OVERALL_FLOOR

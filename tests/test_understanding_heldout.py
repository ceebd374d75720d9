"""Understanding measured on the frozen held-out sets (tests/data/heldout/, never edited to pass).

Each business's plain FAQ is loaded as the bot's FAQ and its customers' messages go through a
real bot (faq and weather plugins, the weather stand-in, a recorder in the model's place); the
weather and general sets go through a bot with the demo FAQ. The floors are the figures reached
on this branch minus a small margin (docs/routing.md has the first-run and final figures and the
issue's aims, which are not met yet). ``python -m tests.understanding_sets --misses`` prints them all.
"""
from __future__ import annotations

from tests.understanding_sets import heldout_sets, run_all, summary

#: Measured 2026-11-26 with the FAQ's learned decline model at the 85% business / 15% general
#: operating point (centroid feature, threshold 0.1) and its re-ranker of the three most probable
#: entries (docs/faq.md, docs/routing.md): gym 76.4%, bank 75.5%, admissions 79.9%, weather
#: (reaches the weather skill) 96.2%, general (reaches the model) 89.1%, overall 83.0%; measured
#: again with the re-ranker of the five most probable entries (the ranking round): the same
#: figures, so the same floors. Floors one or two messages below. The general floor went from 0.89 to 0.88: that operating point answers
#: more customer questions (right entry gym 68.7 -> 78.4%, bank 62.4 -> 73.6%, admissions 78.7 ->
#: 84.4%) at the cost of two general messages (90.6 -> 89.1%), as the cross-validation on the
#: tuning sets predicted.
#: Weather round 2 (the third tuning pair, docs/routing.md): weather 96.2% -> 99.2% (129/130),
#: the others unchanged but the bank's 74.8% (110/147; one message below round 3's figure, not
#: the weather skill's doing as far as the tuning sets show); the weather floor follows (0.975).
#: The register round (session 4: the register feature, the model refitted on 17 plain
#: businesses, threshold 0.15): gym 81.5%, bank 75.5%, admissions 81.9%, weather 96.2%, general
#: 91.3%, overall 84.9% (85.5% with weather round 2 merged, weather 99.2%); the floors rose
#: with it (one or two messages below).
#: The fine-tuned local model (session 5: its decline model, re-ranker and register refitted on
#: cross-fitted folds, cosine constants mapped): gym 83.4%, bank 83.7%, admissions 88.9%, weather
#: 98.5% (128/130), general 91.3%, overall 88.8%; the floors rose with it (one or two messages
#: below; weather and general unchanged).
#: Session 6 (the fine-tune trained on 37 businesses, refitted; run once): gym 89.2%, bank 81.6%,
#: admissions 87.5%, weather 99.2%, general 94.2%, overall 90.1% (session 5: 83.4, 83.7, 88.9, 98.5,
#: 91.3, 88.8). The bank's right entry fell (82.4 -> 79.2%) while its own general questions
#: declined rose (90.9 -> 95.5%): its floor goes 0.82 -> 0.81, the trade written here; the others rise.
#: Session 7 (the third build, trained on 41 businesses; the decline model reads the second local
#: model's cosines too; refitted; run once): gym 88.5%, bank 86.4%, admissions 88.2%, weather
#: 99.2%, general 94.2%, overall 91.1%. The right entry rose at the bank (79.2 -> 85.6%) and the
#: admissions office (86.1 -> 87.7%), the gym's stayed (89.6%), while the businesses' own general
#: questions were declined less often (87.0 / 95.5 / 95.5% -> 82.6 / 90.9 / 90.9%): the gym's floor
#: goes 0.88 -> 0.87 (two messages under its figure, the trade written here), the bank's and the
#: overall floor rise.
FLOORS = {"gym": 0.87, "bank": 0.85, "admissions": 0.87, "weather": 0.98, "general": 0.93}
OVERALL_FLOOR = 0.90


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
            low.append(f"{name}: {r}/{t} = {r / t:.1%} < {FLOORS[name]:.0%}")  # counts only: no held-out line shown
    assert not low, "\n".join(low)
    assert right / total >= OVERALL_FLOOR

"""Would the second local model (USE multilingual v3, the FAQ's second opinion, issue 14) help the
knowledge skill's line? An experiment on the three tuning organisations (never the held-out file),
with session 8's validation organisation (the property office, corpus_property.py) judged only.

The candidates of every reading are collected as tests/knowledge_line.py collects them (e5's gap
above the mean row, the lexical share) plus ``ugap``, the second model's gap (``collect(...,
second=True)``). Lines are fitted on (gap, lexical) and on (gap, ugap, lexical) as knowledge_line
fits its line (logistic, the best passage refitted until it agrees), judged by leave-one-out over
the pooled questions, across organisations, and on the validation organisation; then the ranking
alone with a share of the second gap. Findings: docs/knowledge.md, "Session 8".

    .venv/bin/python -m tests.knowledge_second [--data FILE.pkl] [--validation FILE.pkl]
"""
from __future__ import annotations

import argparse
import asyncio
import pickle
from pathlib import Path
from typing import Sequence

from tests.knowledge_fit import CORPORA
from tests.knowledge_line import Asked, collect, figures, fit_line, loo

#: (dense_gap, lexical_weight, second_weight): score = gap / dense_gap + lexical_weight x lexical
#: + second_weight x ugap, against the line at 1.
Weights = tuple[float, float, float]


def judged(questions: Sequence[Asked], w: Weights, threshold: float = 1.0) -> tuple[int, int, int]:
    return figures(questions, w[0], w[1], threshold, second_weight=w[2])


def ranking_alone(questions: Sequence[Asked], w: Weights) -> tuple[int, int]:
    """(covered with the answer in the top 3, first) with no line."""
    found, first, _ = judged(questions, w, threshold=-1e9)
    return found, first


def load(path: str | None, make) -> object:
    if path and Path(path).exists():
        return pickle.loads(Path(path).read_bytes())
    data = make()
    if path:
        Path(path).write_bytes(pickle.dumps(data))
    return data


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="pickle of the tuning organisations' questions (written when missing)")
    parser.add_argument("--validation", help="pickle of the validation organisation's (written when missing)")
    args = parser.parse_args(argv)
    data = load(args.data, lambda: {name: asyncio.run(collect(name, second=True)) for name in CORPORA})

    validation = load(args.validation, lambda: asyncio.run(collect("property", second=True)))
    from plugins.knowledge.config import Config
    pooled = [q for qs in data.values() for q in qs]
    today: Weights = (Config.dense_gap, Config.lexical_weight, 0.0)
    print("(covered found in the top 3, found first, uncovered declined)")
    print(f"today's line: pooled {judged(pooled, today)}, validation {judged(validation, today)}")
    for second in (False, True):
        w = fit_line(pooled, (today[0], today[1], 1.0 if second else 0.0), second=second)
        print(f"== {'e5 and the second model' if second else 'e5 alone'}: dense_gap {w[0]:.4f}, "
              f"lexical_weight {w[1]:.3f}, second_weight {w[2]:.3f}")
        for name, qs in [*data.items(), ("pooled", pooled)]:
            print(f"   in-sample {name:<8} {judged(qs, w)}")
        print(f"   leave-one-out, pooled {loo(pooled, w, False, second)}")
        for fitted in data:
            wf = fit_line(data[fitted], w, second=second)
            print(f"   fitted on {fitted}: " + " | ".join(f"{j} {judged(data[j], wf)}" for j in data if j != fitted))
        print(f"   validation {judged(validation, w)}; ranking alone {ranking_alone(validation, w)}")
    for share in (0.0, 0.5, 1.0):
        w = (today[0], today[1], share / today[0])
        print(f"ranking alone, second gap at {share:.1f} of e5's weight: pooled {ranking_alone(pooled, w)}, "
              f"validation {ranking_alone(validation, w)}")


if __name__ == "__main__":
    main()

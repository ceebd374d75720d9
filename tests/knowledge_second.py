"""Would the second local model (USE multilingual v3, issue 14's second opinion on the FAQ) help the
knowledge skill? An experiment on the three tuning organisations (never the held-out file).

The candidates of every reading are collected as tests/knowledge_line.py collects them (the e5 gap
above the mean row, the lexical share), plus ``ugap``: the second model's cosine of the
candidate's best row (the chunk with its title and heading path, or one of its sentences, the rows
the indexer embeds) above the second model's mean cosine over every row. Lines are fitted on
(gap, lexical) and on (gap, ugap, lexical) as knowledge_line fits its line, and judged by
leave-one-out over the pooled questions and across organisations.

    .venv/bin/python -m tests.knowledge_second [--data FILE.pkl]
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
from tests.knowledge_fit import CORPORA, DATA, indexed_corpus, logistic


@dataclass
class Cand:
    chunk_id: int
    gap: float
    ugap: float
    lexical: float
    label: bool
    marks: frozenset = frozenset()


@dataclass
class Asked:
    text: str
    covered: bool
    corpus: str
    readings: list[list[Cand]] = field(default_factory=list)


async def collect(name: str) -> list[Asked]:
    from plugins.knowledge.homophones import correct
    from plugins.knowledge.retrieval import shingles

    out = []
    async with indexed_corpus(name) as (plugin, covered, uncovered):
        retriever, cfg, store = plugin.retriever, plugin.retriever.config, plugin.store
        embeddings = retriever.embeddings
        folder = plugin.indexer.folder
        stats = await store.stats()
        chunks = await store.chunks(list(range(1, stats.chunks * 4 + 10)))
        by_place = {(c.path, c.ordinal): c.id for c in chunks.values()}
        texts, owner = [], []
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = path.relative_to(folder).as_posix()
            _, prepared = plugin.indexer._read(path)
            for c in prepared:
                cid = by_place[(rel, c.ordinal)]
                for text in (c.context_text, *c.sentences):
                    texts.append(text)
                    owner.append(cid)
        rows = await embeddings.embed_set_second(texts, kind="passage")
        assert rows is not None, "the second model is not loaded"
        owner = np.array(owner)
        items = [(q, phrase) for q, _, phrase in covered] + [(q, "") for q in uncovered]
        for question, phrase in items:
            asked = Asked(question, bool(phrase), name)
            norm = normalize_text(question)
            readings = [norm]
            _, scored = await retriever._search(norm, cfg.top_k, cfg.threshold)
            vocabulary = set().union(*(p.chunk.terms for p in scored)) if scored else set()
            corrected = correct(norm, vocabulary, retriever.analyzer.segmenter.in_dictionary)
            if corrected != norm:
                readings.append(corrected)
            for reading in readings:
                _, scored = await retriever._search(reading, cfg.top_k, cfg.threshold)
                q = (await embeddings.embed_set_second([reading], kind="query"))[0]
                cos = rows @ q
                mean = float(cos.mean())
                best = {}
                for cid, value in zip(owner.tolist(), cos.tolist()):
                    best[cid] = max(best.get(cid, -1.0), value)
                asked.readings.append([
                    Cand(p.chunk.id, p.dense * cfg.dense_gap, max(0.0, best.get(p.chunk.id, mean) - mean), p.lexical,
                         bool(phrase) and phrase in p.chunk.text, frozenset(shingles(p.chunk.text)))
                    for p in scored])
            out.append(asked)
    return out


def ranked(cands, w):
    scored = [(w[0] * c.gap + w[1] * c.ugap + w[2] * c.lexical, c) for c in cands]
    scored.sort(key=lambda s: (-s[0], s[1].chunk_id))
    return scored


def decide(q: Asked, w, top_k=3, duplicate=0.8):
    best = ranked(q.readings[0], w)
    for other in q.readings[1:]:
        fixed = ranked(other, w)
        if fixed and (not best or fixed[0][0] > best[0][0]):
            best = fixed
    kept = []
    if not best or best[0][0] < 1.0:
        return best, kept
    for _, c in best:
        if len(kept) >= top_k:
            break
        if any(len(c.marks & k.marks) / max(1, len(c.marks | k.marks)) >= duplicate for k in kept):
            continue
        kept.append(c)
    return best, kept


def figures(questions, w):
    found = first = declined = 0
    for q in questions:
        _, kept = decide(q, w)
        if q.covered:
            found += any(c.label for c in kept[:3])
            first += bool(kept) and kept[0].label
        else:
            declined += not kept
    return found, first, declined


def fit(questions, w, use_u: bool):
    """weights (per unit of gap, ugap, lexical) of the logistic line, refitted until the best
    passage it ranks is the one it was fitted on."""
    y = np.array([float(q.covered) for q in questions])
    w = tuple(w)
    for _ in range(20):
        x = []
        for q in questions:
            order = ranked(q.readings[0], w)
            for other in q.readings[1:]:
                fixed = ranked(other, w)
                if fixed and (not order or fixed[0][0] > order[0][0]):
                    order = fixed
            c = order[0][1] if order else None
            x.append((c.gap, c.ugap, c.lexical) if c else (0.0, 0.0, 0.0))
        x = np.array(x)
        if not use_u:
            x = x[:, [0, 2]]
        beta = logistic(x, y, None, l2=1e-6)
        b0 = beta[-1]
        if b0 >= 0:
            return w
        coef = -beta[:-1] / b0
        new = (coef[0], coef[1], coef[2]) if use_u else (coef[0], 0.0, coef[1])
        new = tuple(max(0.0, v) for v in new)
        if max(abs(a - b) for a, b in zip(new, w)) < 1e-6:
            break
        w = new
    return w


def loo(questions, w0, use_u):
    found = first = declined = 0
    for i, q in enumerate(questions):
        w = fit([o for j, o in enumerate(questions) if j != i], w0, use_u)
        f, r1, d = figures([q], w)
        found, first, declined = found + f, first + r1, declined + d
    return found, first, declined


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data")
    parser.add_argument("--validation", help="pickle of the validation organisation (property), collected when missing")
    args = parser.parse_args(argv)
    path = Path(args.data) if args.data else None
    if path is not None and path.exists():
        data = pickle.loads(path.read_bytes())
    else:
        data = {name: asyncio.run(collect(name)) for name in CORPORA}
        if path is not None:
            path.write_bytes(pickle.dumps(data))
    from plugins.knowledge.config import Config
    pooled = [q for qs in data.values() for q in qs]
    covered = sum(q.covered for q in pooled)
    today = (1 / Config.dense_gap, 0.0, Config.lexical_weight)
    print(f"today's line: pooled recall@3/recall@1/declined {figures(pooled, today)} of {covered}/{len(pooled) - covered}")
    for use_u in (False, True):
        w = fit(pooled, today if not use_u else (today[0], today[0] * 0.5, today[2]), use_u)
        print(f"== {'e5 + second model' if use_u else 'e5 alone'}: pooled fit weights gap {w[0]:.3f} ugap {w[1]:.3f} lex {w[2]:.3f}")
        for name, qs in [*data.items(), ("pooled", pooled)]:
            print(f"   in-sample {name:<8} {figures(qs, w)}")
        print(f"   leave-one-out pooled: recall@3 / recall@1 / declined {loo(pooled, w, use_u)}")
        for fitted in data:
            wf = fit(data[fitted], w, use_u)
            print(f"   fitted on {fitted}: " + " | ".join(f"{j} {figures(data[j], wf)}" for j in data if j != fitted))
    if args.validation:
        vpath = Path(args.validation)
        if vpath.exists():
            vdata = pickle.loads(vpath.read_bytes())
        else:
            from tests.data.knowledge import corpus_property
            CORPORA["property"] = (corpus_property.write_corpus, [DATA / "property_questions.tsv"], [], [])
            vdata = asyncio.run(collect("property"))
            vpath.write_bytes(pickle.dumps(vdata))
        vc = sum(q.covered for q in vdata)
        print(f"== validation (property, {vc} covered / {len(vdata) - vc} uncovered): recall@3, recall@1, declined")
        print(f"   today's line {figures(vdata, today)}; ranking alone {figures_rank(vdata, today)}")
        for use_u in (False, True):
            w = fit(pooled, today if not use_u else (today[0], today[0] * 0.5, today[2]), use_u)
            print(f"   {'e5 + second' if use_u else 'e5 alone'} pooled fit {tuple(round(v, 3) for v in w)}: "
                  f"{figures(vdata, w)}; ranking alone {figures_rank(vdata, w)}")
    # ranking alone with a share of the second model's gap
    for share in (0.0, 0.25, 0.5, 0.75, 1.0):
        w = (today[0], today[0] * share, today[2])
        print(f"ranking alone, ugap weight {share:.2f} x gap's: recall@3/recall@1 "
              + str(figures_rank(pooled, w)))


def figures_rank(questions, w):
    found = first = 0
    for q in questions:
        if not q.covered:
            continue
        order, _ = decide(q, (w[0], w[1], w[2]))
        order = [c for _, c in order][:3]
        found += any(c.label for c in order)
        first += bool(order) and order[0].label
    return found, first


if __name__ == "__main__":
    main()

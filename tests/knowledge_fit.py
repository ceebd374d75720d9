"""Cross-validated experiments on knowledge retrieval (issue 16): would a learned re-ranker or a
learned in-scope decision beat the fused score and its line (``threshold``)?

For every tuning question of the three invented organisations (the academy: tuning_questions.tsv and
corpus.py's QUESTIONS and UNCOVERED; the fitness club: corpus_gym.py and gym_questions.tsv; the
health centre: corpus_clinic.py and clinic_questions.tsv; never the held-out file), asked of an index of its own organisation's documents, the retriever's scored candidates are collected with features
the shipped score does not use:

* per passage: ``dense`` and ``lexical`` (the retriever's own), ``cosine``, ``words`` (share of
  the question's weighted whole words the passage holds, no characters or bigrams), ``heading``
  (share of the question's term weight in the title and heading path), ``dense_rr`` and
  ``lexical_rr`` (reciprocal rank of the passage among the candidates by cosine, by lexical score);
* per question: ``margin`` (fused score of the best passage minus the second's), ``novel``
  (share of the question's word weight that no stored passage uses) and ``asked`` (the best
  passage's shortfall for the question's words it does not hold: ``Retriever.asked_shortfall``,
  in units of ``dense_gap``).

Models are logistic regressions (numpy, Newton steps, small L2), fitted on some folds and scored on
the others: folds by document (each covered question with its answer's document, the uncovered
questions spread over them) and 10 folds by question (three shuffles), and across organisations
(fitted on one, judged on another). Printed:

* re-ranking: out-of-fold recall@1 / recall@3 of the candidates ordered by the model, against the
  order of the fused score;
* the in-scope decision: for each feature set, the out-of-fold score of each question's best
  passage, and the covered questions still found (answer phrase in the top 3) when the line is set
  to decline a given number of the uncovered ones (a curve: the shipped score needs no fit, the
  models are refitted per fold); and the point a class-balanced fit chooses (probability 0.5);
* lines calibrated per organisation: the general-question anchors of the router
  (core/processing/data/general_questions.txt) asked of each organisation's documents, and a line
  drawn from their scores (mean + k * deviation, ...) against the one fixed line, pooled over the
  organisations (one k for all).

    .venv/bin/python -m tests.knowledge_fit [academy|gym|clinic ...]

Findings of 2026-11-26 are in docs/knowledge.md ("Round 3", "Round 4").
"""
from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from core import normalize_text
from tests.data.knowledge import (corpus, corpus_aftersales, corpus_artschool, corpus_broadband, corpus_campus, corpus_clinic,
                                  corpus_cowork, corpus_gym, corpus_insurance, corpus_library, corpus_museum, corpus_property,
                                  corpus_resort, corpus_vet)
from tests.knowledge_measure import read_set

DATA = Path(__file__).parent / "data" / "knowledge"
#: The tuning corpora: how to write each one's documents, its question files and in-code questions.
CORPORA = {
    "academy": (corpus.write_corpus, [DATA / "tuning_questions.tsv"], corpus.QUESTIONS, corpus.UNCOVERED),
    "gym": (corpus_gym.write_corpus, [DATA / "gym_questions.tsv"], [], []),
    "clinic": (corpus_clinic.write_corpus, [DATA / "clinic_questions.tsv"], [], []),
}
#: The validation organisations (session 8's property office, session 10's library and appliance
#: shop): asked by the experiments (tests/knowledge_second.py, scripts/experiment_cross_encoder.py),
#: never fitted on, so not in CORPORA.
VALIDATION = {"property": (corpus_property.write_corpus, [DATA / "property_questions.tsv"], [], []),
              "library": (corpus_library.write_corpus, [DATA / "library_questions.tsv"], [], []),
              "aftersales": (corpus_aftersales.write_corpus, [DATA / "aftersales_questions.tsv"], [], [])}
#: Organisations written only as the pair model's training data (session 11,
#: scripts/experiment_cross_encoder.py): neither fitted on here nor judged.
PAIR_TRAINING = {name: (module.write_corpus, [DATA / f"{name}_questions.tsv"], [], [])
                 for name, module in (("museum", corpus_museum), ("vet", corpus_vet), ("broadband", corpus_broadband),
                                      ("cowork", corpus_cowork), ("artschool", corpus_artschool), ("resort", corpus_resort),
                                      ("insurance", corpus_insurance), ("campus", corpus_campus))}
PASSAGE_FEATURES = ("dense", "lexical", "cosine", "words", "heading", "dense_rr", "lexical_rr")
#: Feature sets compared for the in-scope decision (features of the best passage and the question).
DECISIONS = (("dense", "lexical"), ("dense", "lexical", "margin"), ("dense", "lexical", "words", "heading"),
             ("dense", "lexical", "novel"), ("dense", "lexical", "margin", "novel"),
             ("dense", "lexical", "margin", "words", "heading", "novel", "dense_rr", "lexical_rr"),
             ("dense", "lexical", "asked"), ("dense", "lexical", "asked", "margin", "novel"))
#: The suggested weight of ``asked`` (asked_part_weight) tried beside the fused score, no fit
#: (0.75 on the base model; 0.5 on the fine-tuned one, session 5).
ASKED_WEIGHT = 0.5


@dataclass
class Question:
    text: str
    document: str  # "" for an uncovered question
    corpus: str = ""
    #: per candidate: features (PASSAGE_FEATURES, "score") and "label" (holds the answer phrase)
    candidates: list[dict[str, float]] = field(default_factory=list)
    margin: float = 0.0
    novel: float = 0.0
    asked: float = 0.0

    @property
    def covered(self) -> bool:
        return bool(self.document)

    def best(self) -> dict[str, float]:
        return {**self.candidates[0], "margin": self.margin, "novel": self.novel, "asked": self.asked}

    def found(self, order: Sequence[int] | None = None, k: int = 3) -> bool:
        order = range(len(self.candidates)) if order is None else order
        return any(self.candidates[i]["label"] for i in list(order)[:k])


# ---- collecting ---------------------------------------------------------------------------------

async def describe(retriever, store, question: str, phrase: str, document: str) -> Question:
    """The retriever's candidates for ``question``, best fused score first, with their features."""
    from plugins.knowledge.terms import coverage

    _, scored = await retriever.search(question)
    analyzer = retriever.analyzer
    norm = normalize_text(question)
    features = analyzer.question_features(norm)
    weight = analyzer.segmenter.weight
    words = {t: weight(t) for t in analyzer.tokens(norm)}
    words = {t: w for t, w in words.items() if w > 0}
    by_cosine = {id(p): r for r, p in enumerate(sorted(scored, key=lambda p: -p.cosine), 1) if p.cosine}
    by_lexical = {id(p): r for r, p in enumerate(sorted(scored, key=lambda p: -p.lexical), 1) if p.lexical}
    out = Question(question, document)
    for p in scored:
        heading = frozenset(analyzer.passage_terms(" ".join([p.chunk.title, *p.chunk.heading_path])))
        out.candidates.append({
            "score": p.score, "dense": p.dense, "lexical": p.lexical, "cosine": p.cosine,
            "words": coverage(words, p.chunk.terms), "heading": coverage(features, heading),
            "dense_rr": 1 / by_cosine[id(p)] if id(p) in by_cosine else 0.0,
            "lexical_rr": 1 / by_lexical[id(p)] if id(p) in by_lexical else 0.0,
            "label": float(bool(phrase) and phrase in p.chunk.text)})
    if len(scored) > 1:
        out.margin = scored[0].score - scored[1].score
    if scored:
        out.asked = await retriever.asked_shortfall(norm, scored[0]) / retriever.config.dense_gap
    total = sum(words.values())
    if total:
        unknown = [t for t in words if not await store.lexical_candidates([t], 1)]
        out.novel = sum(words[t] for t in unknown) / total
    return out


def corpus_questions(name: str):
    """One tuning (or validation) corpus: the function that writes its documents, its covered
    questions and its uncovered ones (corpus.py's lists and the corpus's question files)."""
    write, paths, covered, uncovered = {**CORPORA, **VALIDATION, **PAIR_TRAINING}[name]
    covered, uncovered = list(covered), list(uncovered)
    for path in paths:
        c, u = read_set(path)
        covered += c
        uncovered += u
    return write, covered, uncovered


@contextlib.asynccontextmanager
async def indexed_corpus(name: str):
    """A bot with one tuning corpus's documents indexed by its knowledge plugin; yields the
    plugin and the corpus's covered and uncovered questions."""
    from core.testing import running_bot
    from tests.test_knowledge import knowledge, knowledge_settings, wait_for_index

    write, covered, uncovered = corpus_questions(name)
    with tempfile.TemporaryDirectory() as tmp:
        files = write(Path(tmp) / "docs")
        folder = next(iter(files.values())).parent
        async with running_bot(knowledge_settings(folder, Path(tmp) / "cache")) as bot:
            plugin = knowledge(bot)
            await wait_for_index(plugin, len(files))
            yield plugin, covered, uncovered


async def collect(name: str) -> tuple[list[Question], np.ndarray]:
    """The questions of one tuning corpus, asked of an index of its documents, and the best fused
    score of each general-question anchor asked of the same index (those that are not tuning
    questions of the corpus)."""
    from core.processing.router import load_general_questions

    async with indexed_corpus(name) as (plugin, covered, uncovered):
        out = [await describe(plugin.retriever, plugin.store, q, phrase, doc) for q, doc, phrase in covered]
        out += [await describe(plugin.retriever, plugin.store, q, "", "") for q in uncovered]
        asked = {q for q, _, _ in covered} | set(uncovered)
        anchors = []
        for anchor in load_general_questions():
            if anchor not in asked:
                _, scored = await plugin.retriever.search(anchor)
                anchors.append(scored[0].score if scored else 0.0)
    for q in out:
        q.corpus = name
    return [q for q in out if len(q.candidates) >= 2], np.array(anchors)


# ---- fitting ----------------------------------------------------------------------------------

def logistic(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None, l2: float = 0.1) -> np.ndarray:
    """Coefficients (one per column, then the intercept) of an L2-penalised logistic regression
    (the intercept is not penalised), by Newton's method."""
    x = np.hstack([x, np.ones((len(x), 1))])
    weights = np.ones(len(y)) if weights is None else weights
    penalty = l2 * np.eye(x.shape[1])
    penalty[-1, -1] = 0.0
    beta = np.zeros(x.shape[1])
    for _ in range(100):
        p = 1 / (1 + np.exp(-np.clip(x @ beta, -30, 30)))
        gradient = x.T @ (weights * (p - y)) + penalty @ beta
        hessian = (x * (weights * p * (1 - p))[:, None]).T @ x + penalty + 1e-9 * np.eye(len(beta))
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.abs(step).max() < 1e-9:
            break
    return beta


def predict(beta: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.ones((len(x), 1))]) @ beta


def balanced(y: np.ndarray) -> np.ndarray:
    """Sample weights giving both classes the same total weight."""
    positive = max(1.0, y.sum())
    negative = max(1.0, len(y) - y.sum())
    return np.where(y == 1, len(y) / (2 * positive), len(y) / (2 * negative))


def folds_by_document(questions: Sequence[Question], seed: int = 0) -> list[set[int]]:
    """One fold per answer document (its covered questions), the uncovered questions dealt over them."""
    documents = sorted({q.document for q in questions if q.covered})
    folds = [{i for i, q in enumerate(questions) if q.document == d} for d in documents]
    uncovered = np.random.default_rng(seed).permutation([i for i, q in enumerate(questions) if not q.covered])
    for n, i in enumerate(uncovered):
        folds[n % len(folds)].add(int(i))
    return folds


def folds_by_question(questions: Sequence[Question], k: int = 10, seed: int = 0) -> list[set[int]]:
    order = np.random.default_rng(seed).permutation(len(questions))
    return [{int(i) for i in order[f::k]} for f in range(k)]


def schemes(questions: Sequence[Question]) -> list[tuple[str, list[set[int]]]]:
    return [("by document", folds_by_document(questions))] + [
        (f"10-fold #{s}", folds_by_question(questions, 10, s)) for s in range(3)]


def rerank_cv(questions: Sequence[Question], names: Sequence[str], folds: list[set[int]]) -> tuple[int, int]:
    """Out-of-fold (recall@1, recall@3) of the covered questions with candidates ordered by a
    logistic model of ``names`` (trained on the training folds' covered questions' candidates)."""
    at1 = at3 = 0
    for test in folds:
        train = [q for i, q in enumerate(questions) if i not in test and q.covered]
        x = np.array([[c[n] for n in names] for q in train for c in q.candidates])
        y = np.array([c["label"] for q in train for c in q.candidates])
        mean, scale = x.mean(0), x.std(0) + 1e-9
        beta = logistic((x - mean) / scale, y, l2=1.0)
        for i in test:
            q = questions[i]
            if not q.covered:
                continue
            s = predict(beta, (np.array([[c[n] for n in names] for c in q.candidates]) - mean) / scale)
            order = list(np.argsort(-s, kind="stable"))
            at1 += q.found(order, 1)
            at3 += q.found(order, 3)
    return at1, at3


def decision_cv(questions: Sequence[Question], names: Sequence[str], folds: list[set[int]]) -> np.ndarray:
    """Out-of-fold decision scores (log-odds of "covered") of each question's best passage."""
    out = np.zeros(len(questions))
    for test in folds:
        train = [q for i, q in enumerate(questions) if i not in test]
        x = np.array([[q.best()[n] for n in names] for q in train])
        y = np.array([float(q.covered) for q in train])
        mean, scale = x.mean(0), x.std(0) + 1e-9
        beta = logistic((x - mean) / scale, y, balanced(y))
        for i in test:
            out[i] = predict(beta, (np.array([[questions[i].best()[n] for n in names]]) - mean) / scale)[0]
    return out


def decision_fit(train: Sequence[Question], test: Sequence[Question], names: Sequence[str]) -> np.ndarray:
    """Decision scores of ``test`` from a class-balanced fit on ``train`` (another corpus)."""
    x = np.array([[q.best()[n] for n in names] for q in train])
    y = np.array([float(q.covered) for q in train])
    mean, scale = x.mean(0), x.std(0) + 1e-9
    beta = logistic((x - mean) / scale, y, balanced(y))
    return predict(beta, (np.array([[q.best()[n] for n in names] for q in test]) - mean) / scale)


def curve(questions: Sequence[Question], scores: np.ndarray, declines: Iterable[int]) -> dict[int, int]:
    """For each number of uncovered questions declined: covered questions accepted and found."""
    uncovered = np.sort([s for q, s in zip(questions, scores) if not q.covered])
    out = {}
    for n in declines:
        line = uncovered[n - 1] if n > 0 else -np.inf
        out[n] = sum(1 for q, s in zip(questions, scores) if q.covered and s > line and q.found())
    return out


def point(questions: Sequence[Question], scores: np.ndarray, line: float) -> tuple[int, int]:
    """(covered found, uncovered declined) when a question is in scope at ``scores >= line``."""
    found = sum(1 for q, s in zip(questions, scores) if q.covered and s >= line and q.found())
    declined = sum(1 for q, s in zip(questions, scores) if not q.covered and s < line)
    return found, declined


# ---- report -----------------------------------------------------------------------------------

def report(questions: Sequence[Question], threshold: float = 1.0) -> None:
    covered = sum(q.covered for q in questions)
    uncovered = len(questions) - covered
    print(f"{covered} covered and {uncovered} uncovered tuning questions")
    shipped = np.array([q.candidates[0]["score"] for q in questions])
    found, declined = point(questions, shipped, threshold)
    print(f"shipped line (fused score >= {threshold}, top 3 kept): found {found}/{covered}, "
          f"declined {declined}/{uncovered}")
    print("\nre-ranking, recall@1 / recall@3 of the covered questions:")
    at1 = sum(q.found(None, 1) for q in questions if q.covered)
    at3 = sum(q.found(None, 3) for q in questions if q.covered)
    print(f"  fused score (no fit): {at1} / {at3}")
    for names in (("dense", "lexical"), PASSAGE_FEATURES):
        cells = [f"{a} / {b}" for a, b in (rerank_cv(questions, names, f) for _, f in schemes(questions))]
        print(f"  logistic on {'+'.join(names)}: " + " | ".join(cells))
    steps = list(range(max(1, uncovered * 55 // 100), uncovered + 1, max(1, uncovered // 25)))
    print(f"\nin-scope decision: covered found (answer in the top 3) when the line declines N of the "
          f"{uncovered} uncovered (out-of-fold, mean over the fold schemes)")
    print(" " * 44 + " ".join(f"{n:>5}" for n in steps))
    asked = shipped + ASKED_WEIGHT * np.array([q.asked for q in questions])
    rows = [("fused score (no fit)", curve(questions, shipped, steps)),
            (f"fused + {ASKED_WEIGHT} x asked (no fit)", curve(questions, asked, steps))]
    for names in DECISIONS:
        curves = [curve(questions, decision_cv(questions, names, f), steps) for _, f in schemes(questions)]
        rows.append(("+".join(names), {n: float(np.mean([c[n] for c in curves])) for n in steps}))
    for name, values in rows:
        print(f"  {name[:42]:<42}" + " ".join(f"{values[n]:5.1f}" for n in steps))
    print("\nclass-balanced fit, in scope at probability 0.5 (out of fold): found / declined per scheme")
    for names in DECISIONS:
        cells = []
        for _, f in schemes(questions):
            a, b = point(questions, decision_cv(questions, names, f), 0.0)
            cells.append(f"{a}/{covered} {b}/{uncovered}")
        print(f"  {'+'.join(names)[:42]:<42}" + " | ".join(cells))


def cross_report(by_corpus: dict[str, list[Question]], threshold: float = 1.0) -> None:
    """Each decision fitted on one corpus, judged on the other (and the shipped line on each)."""
    for fitted, judged in ((a, b) for a in by_corpus for b in by_corpus if a != b):
        test = by_corpus[judged]
        covered = sum(q.covered for q in test)
        uncovered = len(test) - covered
        steps = list(range(max(1, uncovered * 55 // 100), uncovered + 1, max(1, uncovered // 20)))
        shipped = np.array([q.candidates[0]["score"] for q in test])
        print(f"\nfitted on {fitted}, judged on {judged} ({covered} covered, {uncovered} uncovered): "
              "covered found when the line declines N uncovered; balanced fit at 0.5")
        print(" " * 44 + " ".join(f"{n:>4}" for n in steps) + "   at 0.5")
        a, b = point(test, shipped, threshold)
        values = curve(test, shipped, steps)
        print(f"  {'fused score (shipped line ' + str(threshold) + ')':<42}"
              + " ".join(f"{values[n]:4d}" for n in steps) + f"   {a}/{covered} {b}/{uncovered}")
        asked = shipped + ASKED_WEIGHT * np.array([q.asked for q in test])
        values = curve(test, asked, steps)
        a, b = point(test, asked, threshold)
        print(f"  {'fused + ' + str(ASKED_WEIGHT) + ' x asked (line ' + str(threshold) + ')':<42}"
              + " ".join(f"{values[n]:4d}" for n in steps) + f"   {a}/{covered} {b}/{uncovered}")
        for names in DECISIONS:
            scores = decision_fit(by_corpus[fitted], test, names)
            values = curve(test, scores, steps)
            a, b = point(test, scores, 0.0)
            print(f"  {'+'.join(names)[:42]:<42}" + " ".join(f"{values[n]:4d}" for n in steps)
                  + f"   {a}/{covered} {b}/{uncovered}")


#: Lines drawn from a corpus's anchor scores ``a`` with one parameter ``k`` shared by every corpus.
CALIBRATIONS = {
    "fixed line k": lambda a, k: k,
    "mean + k * deviation": lambda a, k: a.mean() + k * a.std(),
    "mean + k": lambda a, k: a.mean() + k,
    "k * mean": lambda a, k: k * a.mean(),
    "k * median": lambda a, k: k * np.median(a),
    "90th percentile + k": lambda a, k: np.percentile(a, 90) + k,
    "k * 90th percentile": lambda a, k: k * np.percentile(a, 90),
}


def calibration_report(by_corpus: dict[str, list[Question]], anchors: dict[str, np.ndarray]) -> None:
    """Per-corpus lines from the anchors' scores against the fixed line, pooled over the corpora:
    the covered questions found (all corpora) at the best k declining at least N uncovered ones."""
    print("\nanchors' best fused score per corpus: mean / deviation / 90th percentile / max")
    for name, a in anchors.items():
        print(f"  {name:<10} {a.mean():.2f} / {a.std():.2f} / {np.percentile(a, 90):.2f} / {a.max():.2f}"
              f"  ({len(a)} anchors)")
    uncovered = sum(not q.covered for qs in by_corpus.values() for q in qs)
    levels = list(range(uncovered * 40 // 100, uncovered * 75 // 100 + 1, max(1, uncovered // 25)))
    print(f"pooled ({uncovered} uncovered): covered found when the lines decline at least N")
    print(" " * 26 + " ".join(f"{n:>5}" for n in levels))
    for family, line in CALIBRATIONS.items():
        best: dict[int, int] = {}
        for k in np.linspace(-3, 6, 901):
            found = declined = 0
            for name, qs in by_corpus.items():
                cut = line(anchors[name], k)
                found += sum(1 for q in qs if q.covered and q.candidates[0]["score"] >= cut and q.found())
                declined += sum(1 for q in qs if not q.covered and q.candidates[0]["score"] < cut)
            best[declined] = max(best.get(declined, 0), found)
        row = [max((f for d, f in best.items() if d >= n), default=0) for n in levels]
        print(f"  {family:<24}" + " ".join(f"{v:5d}" for v in row))


def main(argv: Sequence[str]) -> None:
    names = list(argv) or list(CORPORA)
    collected = {name: asyncio.run(collect(name)) for name in names}
    by_corpus = {name: questions for name, (questions, _) in collected.items()}
    for name in names:
        print(f"==== {name}")
        report(by_corpus[name])
    if len(names) > 1:
        print("==== all corpora pooled")
        report([q for name in names for q in by_corpus[name]])
        print("==== across corpora")
        cross_report(by_corpus)
        print("==== lines calibrated per corpus")
        calibration_report(by_corpus, {name: anchors for name, (_, anchors) in collected.items()})


if __name__ == "__main__":
    main(sys.argv[1:])

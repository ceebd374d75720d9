"""The second and third tuning organisations (tests/data/knowledge/corpus_gym.py, corpus_clinic.py),
the validation organisations (corpus_property.py, corpus_library.py, corpus_aftersales.py) and the cross-validation tool (tests/knowledge_fit.py) that compares learned re-rankers and in-scope
decisions with the shipped fused score (issue 16)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.data.knowledge import corpus_aftersales, corpus_clinic, corpus_gym, corpus_library, corpus_property
from tests.knowledge_fit import (PAIR_TRAINING, Question, balanced, curve, folds_by_document, folds_by_question, logistic, point,
                                 predict)
from tests.knowledge_measure import read_set
from tests.test_knowledge import knowledge, knowledge_settings, measure_retrieval, wait_for_index

DATA = Path(__file__).parent / "data" / "knowledge"
GYM_DOCUMENTS = {"membership.docx": corpus_gym.MEMBERSHIP, "venue.md": corpus_gym.VENUE,
                 "classes.html": corpus_gym.CLASSES, "coaches.txt": corpus_gym.COACHES, "rules.md": corpus_gym.RULES}

# The shipped retrieval on the second and third organisations, floors one question under each
# figure. On the base model, where nothing was fitted on them (2026-11-26): the fitness club's first
# run recall@3 = 34/42, uncovered declined = 15/28; with the next passages kept once the best
# clears the line, 35/42 and 15/28; the health centre (round 4): first run 34/46 and 16/26.
# Session 5, the fine-tuned local model, with dense_gap and lexical_weight fitted on the three
# organisations pooled (tests/knowledge_line.py; so these are no longer out-of-sample figures):
# the fitness club 37/42 and 15/28, the health centre 32/46 and 17/26. Session 6, the second build,
# the line refitted the same way (0.53, 0.76): the fitness club 37/42 and 16/28, the health centre
# 30/46 and 19/26 (it declines more and finds fewer, the trade the pooled fit chose). Session 7,
# the third build, refitted the same way (0.56, 0.8): the fitness club 39/42 and 17/28, the health
# centre 28/46 and 19/26. Session 8's validation organisation, a property-management office
# (corpus_property.py, written by a helper before any code ran on it, nothing fitted on it), first
# run on session 7's build: 24/45 and 19/26 (docs/knowledge.md "Session 8"): the line drawn on the
# academy's many uncovered questions declines half of a new organisation's covered ones. Session 10's
# two validation organisations, a district library (corpus_library.py) and an appliance shop's after-sales
# service (corpus_aftersales.py), written by helpers before any code ran on them, nothing fitted on them,
# first run on session 7's build (2026-11-27): the library 40/63 and 23/28, the shop 49/62 and 10/27.
# Session 11: the answer check on by default (a pair model trained on the tuning organisations and
# session 11's eight training ones, never on these validation ones; its line -2.5 chosen on the
# validation organisations): the fitness club 40/42 and 22/28, the health centre 42/46 and 17/26,
# the property office 37/45 and 16/26, the library 55/63 and 20/28, the shop 56/62 and 13/27. The
# floors are these minus one question.
ORGANISATIONS = {
    # name: (questions, write_corpus, documents by file name, recall floor, declined floor)
    "gym": (DATA / "gym_questions.tsv", corpus_gym.write_corpus, GYM_DOCUMENTS, 39 / 42, 21 / 28),
    "clinic": (DATA / "clinic_questions.tsv", corpus_clinic.write_corpus, corpus_clinic.DOCUMENTS, 41 / 46, 16 / 26),
    "property": (DATA / "property_questions.tsv", corpus_property.write_corpus, corpus_property.DOCUMENTS,
                 36 / 45, 15 / 26),
    "library": (DATA / "library_questions.tsv", corpus_library.write_corpus, corpus_library.DOCUMENTS,
                54 / 63, 19 / 28),
    "aftersales": (DATA / "aftersales_questions.tsv", corpus_aftersales.write_corpus, corpus_aftersales.DOCUMENTS,
                   55 / 62, 12 / 27),
}


@pytest.mark.parametrize("name", ORGANISATIONS)
def test_each_answer_phrase_is_in_its_document_only(name):
    path, _, documents, _, _ = ORGANISATIONS[name]
    covered, uncovered = read_set(path)
    assert len(covered) >= 40 and len(uncovered) >= 25
    for question, document, phrase in covered:
        assert [name for name, doc in documents.items() if phrase in repr(doc)] == [document], (question, phrase)


@pytest.mark.parametrize("name", PAIR_TRAINING)
def test_each_pair_training_answer_phrase_is_in_its_document_only(name):
    """Session 11's organisations written as the pair model's training data: each covered
    question's phrase is in the passage it names and no other document, or its label is wrong."""
    import importlib

    documents = importlib.import_module(f"tests.data.knowledge.corpus_{name}").DOCUMENTS
    covered, uncovered = read_set(DATA / f"{name}_questions.tsv")
    assert len(covered) >= 80 and len(uncovered) >= 30
    for question, document, phrase in covered:
        assert [n for n, doc in documents.items() if phrase in repr(doc)] == [document], (question, phrase)
        assert repr(documents[document]).count(phrase) == 1, (question, phrase)


@pytest.mark.parametrize("name", ORGANISATIONS)
async def test_the_shipped_retrieval_on_the_other_organisations(tmp_path, name):
    from core.testing import running_bot

    path, write, _, recall_floor, declined_floor = ORGANISATIONS[name]
    covered, uncovered = read_set(path)
    files = write(tmp_path / "docs")
    async with running_bot(knowledge_settings(tmp_path / "docs", tmp_path / "cache")) as bot:
        plugin = knowledge(bot)
        await wait_for_index(plugin, len(files))
        assert plugin.stats.documents == 5 and not plugin.stats.unreadable
        found, missed, declined, answered = await measure_retrieval(plugin, covered, uncovered)
    assert found / len(covered) >= recall_floor, missed
    assert declined / len(uncovered) >= declined_floor, answered


def test_the_logistic_fit_finds_a_known_line():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 2))
    y = (2 * x[:, 0] - x[:, 1] + 0.5 > 0).astype(float)
    beta = logistic(x, y, l2=0.01)
    assert ((predict(beta, x) > 0) == (y == 1)).mean() > 0.97
    # the direction of the true line (2, -1), whatever its scale
    assert np.dot(beta[:2] / np.linalg.norm(beta[:2]), np.array([2, -1]) / np.sqrt(5)) > 0.99
    # balanced weights: each class weighs half
    w = balanced(np.array([1.0, 1.0, 1.0, 0.0]))
    assert np.isclose(w[:3].sum(), w[3:].sum())


def _question(document: str, label_rank: int | None, score: float) -> Question:
    q = Question(f"q{document}{score}", document)
    q.candidates = [{"score": score - i, "label": float(i == label_rank)} for i in range(4)]
    return q


def test_folds_keep_a_document_together_and_use_every_question_once():
    questions = [_question(d, 0, 1.0) for d in "aabbbc"] + [_question("", None, 0.5) for _ in range(7)]
    for folds in (folds_by_document(questions), folds_by_question(questions, 4)):
        assert sorted(i for f in folds for i in f) == list(range(len(questions)))
    by_document = folds_by_document(questions)
    assert len(by_document) == 3
    for fold in by_document:
        assert len({questions[i].document for i in fold if questions[i].covered}) == 1
        assert any(not questions[i].covered for i in fold)


def test_the_curve_counts_found_questions_at_each_decline_level():
    questions = [_question("a", 0, 3.0), _question("a", 2, 2.0), _question("a", 3, 1.0),  # rank 3: never found
                 _question("", None, 0.5), _question("", None, 1.5), _question("", None, 2.5)]
    scores = np.array([q.candidates[0]["score"] for q in questions])
    assert curve(questions, scores, [0, 1, 2, 3]) == {0: 2, 1: 2, 2: 2, 3: 1}
    assert point(questions, scores, 1.8) == (2, 2)

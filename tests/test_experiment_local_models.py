"""The local-model experiment (scripts/experiment_local_models.py): what it reads from the tuning
sets, how it ranks, and that it runs when a candidate's package is not installed."""
import importlib.util
import sys

import numpy as np

from core.settings import PROJECT_ROOT

spec = importlib.util.spec_from_file_location(
    "experiment_local_models", PROJECT_ROOT / "scripts" / "experiment_local_models.py")
experiment = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = experiment  # its dataclasses look their module up there
spec.loader.exec_module(experiment)


def test_reads_every_tuning_faq_and_only_its_faq_messages():
    businesses = experiment.load_businesses()
    names = {b.name for b in businesses}
    assert names == {p.name[:-len("_faq.toml")]
                     for p in (PROJECT_ROOT / "tests" / "data" / "tuning").glob("*_faq.toml")}
    for biz in businesses:
        assert biz.messages and len(biz.questions) == len(biz.question_entries)
        # every message expects an entry of its own FAQ (a mistyped id would count as a miss)
        assert {expected for _, expected in biz.messages} <= set(biz.question_entries), biz.name


def test_an_entry_ranks_first_by_its_best_question():
    biz = experiment.Business("shop", ["q1", "q2", "q3"], ["hours", "hours", "price"],
                              [("m1", "hours"), ("m2", "price"), ("m3", "price")])
    scores = np.array([[0.5, 0.9, 0.1],    # closest to hours' second question: right
                       [0.3, 0.2, 0.8],    # closest to price's question: right
                       [0.7, 0.1, 0.6]])   # closest to hours' first question: wrong
    assert experiment.right_first(biz, scores) == [True, True, False]


def test_fused_scores_let_neither_models_scale_dominate():
    wide = np.array([[0.9, -0.5, 0.1]])      # spread-out cosines, prefer question 0
    narrow = np.array([[0.80, 0.81, 0.86]])  # compressed cosines, clearly prefer question 2
    assert int(np.argmax((wide + narrow) / 2)) == 0  # a plain mean is the wide model alone
    assert int(np.argmax(experiment.fuse(wide, narrow, "zscore"))) == 2


def test_a_missing_package_is_skipped_with_its_reason(monkeypatch, capsys):
    def missing():
        import a_package_that_is_not_installed  # noqa: F401

    monkeypatch.setattr(experiment, "CANDIDATES", [experiment.Candidate("absent", "absent-pkg", missing)])
    experiment.main(["--timing", "1"])
    out = capsys.readouterr()
    assert "no model could be loaded" in out.out
    assert "skip absent: not installed (ModuleNotFoundError" in out.err

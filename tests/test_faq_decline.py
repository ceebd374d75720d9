"""The FAQ's learned decline model: its features, its fit and the shipped weights (plugins/faq/decline.py,
scripts/train_faq_decline.py)."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from core.settings import PROJECT_ROOT
from plugins.faq.decline import ALL_FEATURES, MODEL_PATH, DeclineModel, RawScores, pair_features, without_content


def load_trainer():
    spec = importlib.util.spec_from_file_location("train_faq_decline",
                                                  PROJECT_ROOT / "scripts" / "train_faq_decline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def raw(q, a=None, j=None, general=0.85, centroid=0.88):
    q = np.array(q, dtype=float)
    n = len(q)
    return RawScores(q_cos=q, a_cos=np.array(a if a is not None else [0.8] * n, dtype=float),
                     lexical=np.zeros(n), cover_q=np.zeros(n), cover_a=np.zeros(n),
                     general=general, general_raw=general + 0.01, chars=6, c_cos=centroid,
                     s_cos=np.full(n, 0.8), j_cos=np.array(j if j is not None else [0.8] * n, dtype=float))


def test_features_say_how_far_an_entry_stands_out():
    X = pair_features(raw([0.93, 0.88, 0.86]))
    assert X.shape == (3, len(ALL_FEATURES))
    col = {name: X[:, i] for i, name in enumerate(ALL_FEATURES)}
    # the lead over the best other entry: positive for the first only
    assert col["q_gap"].tolist() == pytest.approx([0.05, -0.05, -0.07])
    assert col["q_minus_general"].tolist() == pytest.approx([0.08, 0.03, 0.01])
    assert col["log_chars"].tolist() == pytest.approx([np.log1p(6)] * 3)


def test_business_features_compare_the_message_with_the_whole_faq():
    r = raw([0.93, 0.88, 0.86], j=[0.90, 0.84, 0.80], general=0.85)
    r.cover_all, r.c_cos = 0.6, 0.91
    r.anchors = (np.array([0.86, 0.84, 0.82, 0.88]), np.array([0.02, 0.02, 0.01, 0.01]))
    X = pair_features(r)
    col = {name: X[:, i] for i, name in enumerate(ALL_FEATURES)}
    # the same for every entry: they say whether the message is about the business at all
    assert col["cover_all"].tolist() == pytest.approx([0.6] * 3)
    assert col["c_minus_general"].tolist() == pytest.approx([0.06] * 3)
    assert col["top_qs_minus_general"].tolist() == pytest.approx([0.08] * 3)
    assert col["top_j"].tolist() == pytest.approx([0.90] * 3)
    # against how the general-question anchors score on this FAQ
    assert col["q_az"].tolist() == pytest.approx([3.5, 1.0, 0.0])
    assert col["j_az"].tolist() == pytest.approx([8.0, 2.0, -2.0])
    assert col["c_az"].tolist() == pytest.approx([3.0] * 3)


#: Joint-passage cosines on the shipped (fine-tuned) model's scale: the entry that answers near
#: 0.95, the others far below (the base model's were 0.88 against 0.80; session 5).
ANSWERING_J = [0.95, 0.50, 0.45]


def test_a_message_with_no_content_term_is_answered_by_no_entry():
    model = DeclineModel.load()
    r = raw([0.95, 0.86, 0.85], j=ANSWERING_J)
    p = without_content(r, model.probabilities(pair_features(r)))
    assert p.max() > 0.5
    r.content = 0.0  # 你好, 在吗: only stop words and chat filler
    assert without_content(r, model.probabilities(pair_features(r))).tolist() == [0.0, 0.0, 0.0]


def test_the_shipped_model_prefers_the_entry_that_stands_out():
    model = DeclineModel.load()
    p = model.probabilities(pair_features(raw([0.95, 0.86, 0.85], j=ANSWERING_J)))
    assert p[0] > 0.5 > p[1] and p[1] < 0.25
    # a message close to every entry alike is declined by all of them (joint cosines 0.6: above the
    # 95th percentile of the tuning pairs', 0.13 +- 0.21 on session 7's build; the 0.8 used before
    # is three deviations up, where no three entries of one FAQ meet a message, and there session
    # 7's model gives 0.11, over the threshold)
    flat = model.probabilities(pair_features(raw([0.87, 0.87, 0.87], j=[0.60, 0.60, 0.60])))
    assert flat.max() < json.loads(MODEL_PATH.read_text(encoding="utf-8"))["threshold"]


def test_the_fit_recovers_a_known_direction():
    trainer = load_trainer()
    rng = np.random.default_rng(7)
    X = rng.normal(size=(400, 2))
    y = (X[:, 0] - 0.5 * X[:, 1] + 0.3 * rng.normal(size=400) > 0).astype(float)
    weights, bias = trainer.fit(X, y, np.ones(400), l2=0.1)
    assert weights[0] > 0 > weights[1] and abs(weights[0] / weights[1] + 2) < 0.6
    p = 1 / (1 + np.exp(-(X @ weights + bias)))
    assert ((p > 0.5) == (y > 0.5)).mean() > 0.9


def test_leave_one_business_out_judges_each_business_by_a_model_fitted_without_it():
    trainer = load_trainer()

    def business(shift):
        rows = []
        for k in range(30):
            answered = k % 3 != 0
            q = [0.95 + shift if answered else 0.86, 0.86, 0.85]
            rows.append({"raw": raw(q, j=[q[0] - 0.07, 0.8, 0.8]), "label": 0 if answered else -1,
                         "kind": "own" if k < 20 else "other", "text": f"m{k}",
                         "vector": np.eye(4, dtype=np.float32)[k % 4]})
        return {"name": f"b{shift}", "rows": rows}

    data = trainer.matrices([business(0.0), business(0.01), business(-0.01)])
    cols = [ALL_FEATURES.index(f) for f in trainer.DEFAULT_FEATURES]
    counts = trainer.cross_validate(data, cols)
    value, threshold = trainer.score_of(counts)
    # every threshold from 0.05 to 0.8 separates these: the middle of them is chosen
    assert value > 0.9 and 0.3 <= threshold <= 0.6


def test_the_register_judges_each_message_by_a_model_that_never_saw_it():
    trainer = load_trainer()
    rng = np.random.default_rng(3)

    def message(customer: bool) -> np.ndarray:
        v = rng.normal(scale=0.15, size=8) + (np.eye(8)[0] if customer else np.eye(8)[1])
        return (v / np.linalg.norm(v)).astype(np.float32)

    vectors = {name: [message(k % 4 != 0) for k in range(40)] for name in "abc"}
    general = [message(False) for _ in range(40)]

    def business(name, flipped=False):
        rows = [{"raw": raw([0.9, 0.86]), "text": f"{name}{k}", "vector": vectors[name][k],
                 "kind": "own", "label": 0 if (k % 4 != 0) != flipped else -1} for k in range(40)]
        rows += [{"raw": raw([0.9, 0.86]), "text": f"general{k}", "vector": general[k],
                  "kind": "other", "label": -1} for k in range(40)]
        return {"name": name, "rows": rows}

    data = [business("a"), business("b"), business("c")]
    trainer.register_out_of_fold(data)
    a = [r["raw"].register for r in data[0]["rows"]]
    customers = [a[k] for k in range(40) if k % 4]
    others = [a[k] for k in range(0, 40, 4)] + a[40:]
    assert min(customers) > 0 > max(others)
    # business a's own labels never reach the register that judges a's messages: with every
    # label of a reversed, a's messages are judged as before
    data = [business("a", flipped=True), business("b"), business("c")]
    trainer.register_out_of_fold(data)
    assert [r["raw"].register for r in data[0]["rows"][:40]] == pytest.approx(a[:40])


def test_a_register_for_another_embedding_model_is_undecided():
    from plugins.faq.register import RegisterModel

    register = RegisterModel("e5-small", [1.0, -1.0], 0.5)
    assert register.logit("e5-small", [0.6, 0.8]) == pytest.approx(0.3)
    assert register.logit("bge-m3", [0.6, 0.8]) == 0.0  # another model's vector
    assert register.logit("e5-small", [0.6, 0.8, 0.0]) == 0.0  # another dimension

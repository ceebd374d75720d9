"""The learned answer-or-decline model of the FAQ: P(this entry answers this message).

With the message's embedding known, every entry of the FAQ gets a small feature vector (its
cosines, how far it stands out from the other entries and from the general-question anchors,
its lexical score and how much of the message its words cover; ``pair_features``). A logistic
regression over those features gives the probability that the entry answers the message; the
FAQ ranks entries by it and answers with the best one when it reaches ``semantic_threshold``.

The weights live in ``data/decline_model.json`` next to this file. They were fitted on the
tuning sets only (tests/data/tuning/ and the demo shop's labelled set), with features chosen by
leave-one-business-out cross-validation, by ``scripts/train_faq_decline.py``, which rewrites
that file; docs/faq.md explains the features and the figures.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

MODEL_PATH = Path(__file__).parent / "data" / "decline_model.json"

#: Every feature ``pair_features`` can compute, in column order.
ALL_FEATURES = (
    "q_cos",          # the entry's best question's cosine with the message
    "a_cos",          # the entry's answer's cosine ("passage: ")
    "q_minus_general",      # q_cos minus the calibrated general-question cosine
    "q_minus_general_raw",  # q_cos minus the plain general-question cosine
    "dense_rel",      # mean of q_cos and a_cos, minus the median entry's
    "q_z",            # q_cos as a z-score among this FAQ's entries
    "q_gap",          # q_cos minus the best other entry's q_cos (negative unless first)
    "a_rel",          # a_cos minus the median entry's a_cos
    "lexical",        # the lexical retrieval score (docs/faq.md)
    "cover_q",        # share of the message's term weight found in the entry's questions
    "cover_a",        # share of the message's term weight found in the entry's answer
    "log_chars",      # log(1 + characters of the normalised message)
    "general",        # the calibrated general-question cosine itself
    "lexical_hinge",  # how far the lexical score is above 0.5 (0 below): only a strong one counts
    "cover_q_hinge",  # how far cover_q is above 0.5 (0 below)
    "s_cos",          # the entry's best answer sentence's cosine ("query: ")
    "j_cos",          # the cosine of the entry's questions and answer as one passage
    "qs_minus_general",  # max(q_cos, s_cos) minus the calibrated general-question cosine
    "qs_gap",         # max(q_cos, s_cos) minus the best other entry's
    "j_rel",          # j_cos minus the median entry's
    "j_gap",          # j_cos minus the best other entry's
    "s_minus_general",  # s_cos minus the calibrated general-question cosine
    # the message and the business as a whole (the same for every entry of one message)
    "cover_all",      # share of the message's term weight found anywhere in the FAQ
    "c_cos",          # the message's cosine with the FAQ's centroid (questions and answer sentences)
    "c_minus_general",  # c_cos minus the calibrated general-question cosine
    "top_qs_minus_general",  # the best question or answer sentence of any entry minus the general cosine
    "top_j",          # the best joint passage's cosine of any entry
    "j_z",            # j_cos as a z-score among this FAQ's entries
    # cosines measured against how the general-question anchors score on this FAQ: (cosine
    # minus the anchors' mean of the same cosine) / their deviation
    "q_az",           # the best question's
    "s_az",           # the best answer sentence's
    "j_az",           # the joint passage's
    "c_az",           # the centroid's (the same for every entry)
    "top_qs_az",      # the best question's or sentence's of any entry (likewise)
    # the message alone, whatever the FAQ
    "register",       # log-odds that it reads like a customer's question to a business (register.py)
    # against the FAQ's k-th best entry (KTH): a bigger FAQ has more entries near any message
    "q_kth",          # q_cos minus the KTH-best entry's
    "j_kth",          # j_cos minus the KTH-best entry's
    "qs_kth",         # max(q_cos, s_cos) minus the KTH-best entry's
    # the second model's view (core/processing/second_model.py: USE multilingual v3); without
    # it, e5's q_cos, j_cos and general stand in for u_cos, uj_cos and its general cosine
    "u_cos",          # the entry's best question's cosine with the message
    "u_gap",          # u_cos minus the best other entry's
    "u_rel",          # u_cos minus the median entry's
    "u_z",            # u_cos as a z-score among this FAQ's entries
    "uj_cos",         # the entry's joint passage's cosine
    "uj_gap",         # uj_cos minus the best other entry's
    "u_minus_general",  # u_cos minus its best general-question anchor's cosine
)
#: The entry the ``*_kth`` features measure against (the last one of a smaller FAQ).
KTH = 5


@dataclass
class RawScores:
    """What the FAQ knows about one message, one row per entry (entry order of the FAQ)."""

    q_cos: np.ndarray
    a_cos: np.ndarray
    lexical: np.ndarray
    cover_q: np.ndarray
    cover_a: np.ndarray
    general: float
    general_raw: float
    chars: int
    #: best answer sentence's and joint passage's cosines (-1: none)
    s_cos: np.ndarray | None = None
    j_cos: np.ndarray | None = None
    #: share of the message's term weight found anywhere in the FAQ; cosine with its centroid
    cover_all: float = 0.0
    c_cos: float = -1.0
    #: the message's content: the summed weight of its terms (0: greetings, thanks, filler only)
    content: float = 1.0
    #: the anchors' (means, deviations) of the best question, sentence, joint and centroid
    #: cosines against this FAQ (``DenseFaq.anchor_stats``); None: no anchors
    anchors: tuple[np.ndarray, np.ndarray] | None = None
    #: log-odds that the message reads like a customer's question to a business (register.py;
    #: 0: undecided, no register model for this embedding model)
    register: float = 0.0
    #: the second model's best question and joint passage cosines, and its best general-anchor
    #: cosine (None: no second model; ``pair_features`` then uses e5's)
    u_cos: np.ndarray | None = None
    uj_cos: np.ndarray | None = None
    u_general: float | None = None
    #: entry id -> its phrasing closest to the message lexically (for the explanation)
    questions: dict[str, str] = field(default_factory=dict)


def best_other(values: np.ndarray) -> np.ndarray:
    """For each position, the largest value at any other position (0 for a single value)."""
    if len(values) < 2:
        return np.zeros(len(values))
    top2 = np.sort(values)[-2:]
    return np.where(values >= top2[1], top2[0], top2[1])


def without_content(raw: RawScores, probabilities: np.ndarray) -> np.ndarray:
    """The probabilities, or zeros for a message with no content term (你好, 在吗, 谢谢: every
    token a stop word or chat filler): it asks nothing a FAQ entry could answer. No FAQ message
    of the tuning sets is one, four of their general messages are."""
    return probabilities if raw.content > 0 else np.zeros_like(probabilities)


def pair_features(raw: RawScores) -> np.ndarray:
    """The matrix of ``ALL_FEATURES`` (entries x features) for one message."""
    q, a = raw.q_cos.astype(np.float64), raw.a_cos.astype(np.float64)
    n = len(q)
    dense = (q + a) / 2
    if n > 1:
        top2 = np.sort(q)[-2:]
        q_other = np.where(q >= top2[1], top2[0], top2[1])
        std = float(np.std(q)) or 1e-6
    else:
        q_other, std = np.zeros(n), 1e-6
    s = raw.s_cos.astype(np.float64) if raw.s_cos is not None else np.full(n, -1.0)
    j = raw.j_cos.astype(np.float64) if raw.j_cos is not None else np.full(n, -1.0)
    qs = np.maximum(q, s)
    columns = [
        q, a, q - raw.general, q - raw.general_raw,
        dense - np.median(dense), (q - np.mean(q)) / std, q - q_other, a - np.median(a),
        raw.lexical.astype(np.float64), raw.cover_q.astype(np.float64), raw.cover_a.astype(np.float64),
        np.full(n, math.log1p(raw.chars)), np.full(n, raw.general),
        np.maximum(0.0, raw.lexical.astype(np.float64) - 0.5),
        np.maximum(0.0, raw.cover_q.astype(np.float64) - 0.5),
        s, j, qs - raw.general, qs - best_other(qs), j - np.median(j), j - best_other(j),
        s - raw.general,
        np.full(n, raw.cover_all), np.full(n, raw.c_cos), np.full(n, raw.c_cos - raw.general),
        np.full(n, float(np.max(qs)) - raw.general), np.full(n, float(np.max(j))),
        (j - np.mean(j)) / (float(np.std(j)) or 1e-6),
    ]
    if raw.anchors is not None:
        mu, sd = (np.asarray(v, dtype=np.float64) for v in raw.anchors)
    else:  # no anchors: typical values of the shipped model's (the features then say little):
        # the fine-tuned model's mean anchor statistics over the tuning FAQs, cross-fitted
        # (session 7's build, ``experiment_finetune_e5.py cosines``; session 6's were 0.40, 0.42,
        # 0.38, 0.23, sd 0.15-0.18; session 5's 0.46, 0.46, 0.43, 0.32, sd 0.14-0.18; the base
        # model's 0.86, 0.85, 0.84, 0.88, sd 0.02)
        mu, sd = np.array([0.38, 0.40, 0.35, 0.18]), np.array([0.17, 0.16, 0.18, 0.19])
    qz, sz, jz = (q - mu[0]) / sd[0], (s - mu[1]) / sd[1], (j - mu[2]) / sd[2]
    columns += [qz, sz, jz, np.full(n, (raw.c_cos - mu[3]) / sd[3]),
                np.full(n, float(np.max(np.maximum(qz, sz)))), np.full(n, raw.register)]
    columns += [values - kth_best(values) for values in (q, j, qs)]
    u = raw.u_cos.astype(np.float64) if raw.u_cos is not None else q
    uj = raw.uj_cos.astype(np.float64) if raw.uj_cos is not None else j
    u_general = raw.u_general if raw.u_cos is not None and raw.u_general is not None else raw.general
    columns += [u, u - best_other(u), u - np.median(u), (u - np.mean(u)) / (float(np.std(u)) or 1e-6),
                uj, uj - best_other(uj), u - u_general]
    return np.stack(columns, axis=1)


def kth_best(values: np.ndarray) -> float:
    """The ``KTH`` largest value (the smallest when there are fewer)."""
    return float(np.sort(values)[-min(KTH, len(values))])


class StandardisedLinear:
    """Weights over named features, each standardised with a stored mean and scale (the learned
    models of this plugin: the decline model here, the re-ranker in rerank.py)."""

    #: Names the model in its errors.
    kind = "model"

    def __init__(self, features: list[str], mean: list[float], scale: list[float],
                 weights: list[float], known: Sequence[str]) -> None:
        unknown = [f for f in features if f not in known]
        if unknown:
            raise ValueError(f"{self.kind}: unknown feature {unknown[0]!r}")
        if not (len(features) == len(mean) == len(scale) == len(weights)):
            raise ValueError(f"{self.kind}: features, mean, scale and weights differ in length")
        self.features = list(features)
        self.columns = [list(known).index(f) for f in features]
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.weights = np.asarray(weights, dtype=np.float64)

    def linear(self, matrix: np.ndarray) -> np.ndarray:
        """The weighted sum of each row's standardised features (``matrix`` holds every known one)."""
        return ((matrix[:, self.columns] - self.mean) / self.scale) @ self.weights


class DeclineModel(StandardisedLinear):
    """A logistic regression over some of ``ALL_FEATURES``."""

    kind = "decline model"

    def __init__(self, features: list[str], mean: list[float], scale: list[float],
                 weights: list[float], bias: float) -> None:
        super().__init__(features, mean, scale, weights, ALL_FEATURES)
        self.bias = float(bias)

    @classmethod
    def load(cls, path: Path = MODEL_PATH) -> "DeclineModel":
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(data["features"], data["mean"], data["scale"], data["weights"], data["bias"])

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        """P(entry answers the message) for each row of a ``pair_features`` matrix."""
        z = self.linear(matrix) + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))

"""Re-ranking the FAQ's few best entries: which of the close candidates answers the message.

The decline model (``decline.py``) says whether the best entry answers at all; between related
entries of one FAQ (opening hours and late pick-up, refund and refund time) its order is often
wrong by a few hundredths. A second small model, a conditional logit over the top ``top``
entries, picks among them from their decline probability, how far that leads the other
candidates', how well the entry's best answer sentence matches the message relative to the
other candidates (what an answer states is often what a customer asks: 营业时间 8:30-18:30 for
几点关门) and how much of the message its answer's words cover. It only reorders: whether the FAQ
answers is still decided by the best probability, and a trusted lexical hit is never reordered.

The weights live in ``data/rerank_model.json``, fitted on the tuning sets only, with the features
chosen by leave-one-business-out cross-validation, by ``scripts/train_faq_decline.py``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .decline import RawScores, StandardisedLinear, best_other

RERANK_PATH = Path(__file__).parent / "data" / "rerank_model.json"

#: Every feature ``candidate_features`` can compute, in column order (per candidate).
ALL_RERANK_FEATURES = (
    "logit",    # log-odds of the candidate's decline probability (lexical fusion included)
    "s_rel",    # its best answer sentence's cosine minus the best among the candidates
    "q_rel",    # its best question's cosine minus the best among the candidates
    "j_rel",    # its joint passage's cosine minus the best among the candidates
    "a_rel",    # its answer's cosine minus the best among the candidates
    "lexical",  # its lexical score
    "cover_q",  # share of the message's term weight its questions cover
    "cover_a",  # share of the message's term weight its answer covers (伙食费 in the answer)
    # margins: the candidate's value minus the best other candidate's (positive only for the
    # one in front: how clearly it leads, which the relative values above cannot say)
    "logit_gap",    # of the log-odds
    "s_gap",        # of the best answer sentence's cosine
    "q_gap",        # of the best question's cosine
    "j_gap",        # of the joint passage's cosine
    "cover_q_gap",  # of the questions' coverage of the message
    "cover_a_gap",  # of the answer's coverage of the message
    "rank",         # its place in the probability's order (0: first)
    # the second model's view (decline.py's u_cos and uj_cos; e5's q_cos and j_cos without it)
    "u_rel",        # its best question's cosine minus the best among the candidates
    "u_gap",        # the same minus the best other candidate's
    "uj_rel",       # its joint passage's cosine minus the best among the candidates
    "uj_gap",       # the same minus the best other candidate's
)


def candidate_features(probabilities: np.ndarray, raw: RawScores, order: list[int]) -> np.ndarray:
    """The matrix of ``ALL_RERANK_FEATURES`` (candidates in ``order`` x features)."""
    idx = np.asarray(order, dtype=int)
    p = np.clip(probabilities[idx].astype(np.float64), 1e-9, 1 - 1e-9)
    n = len(raw.q_cos)
    s = raw.s_cos if raw.s_cos is not None else np.full(n, -1.0)
    j = raw.j_cos if raw.j_cos is not None else np.full(n, -1.0)

    def rel(values: np.ndarray) -> np.ndarray:
        picked = np.asarray(values, dtype=np.float64)[idx]
        return picked - picked.max()

    def margin(values: np.ndarray) -> np.ndarray:
        picked = np.asarray(values, dtype=np.float64)[idx]
        return picked - best_other(picked)

    logit = np.log(p) - np.log1p(-p)
    cover_q = np.asarray(raw.cover_q, dtype=np.float64)[idx]
    cover_a = np.asarray(raw.cover_a, dtype=np.float64)[idx]
    u = raw.u_cos if raw.u_cos is not None else raw.q_cos
    uj = raw.uj_cos if raw.uj_cos is not None else j
    return np.stack([logit, rel(s), rel(raw.q_cos), rel(j), rel(raw.a_cos),
                     np.asarray(raw.lexical, dtype=np.float64)[idx], cover_q, cover_a,
                     logit - best_other(logit), margin(s), margin(raw.q_cos), margin(j),
                     cover_q - best_other(cover_q), cover_a - best_other(cover_a),
                     np.arange(len(idx), dtype=np.float64),
                     rel(u), margin(u), rel(uj), margin(uj)], axis=1)


class Reranker(StandardisedLinear):
    """A linear scorer over some of ``ALL_RERANK_FEATURES``."""

    kind = "rerank model"

    def __init__(self, features: list[str], mean: list[float], scale: list[float],
                 weights: list[float], top: int) -> None:
        super().__init__(features, mean, scale, weights, ALL_RERANK_FEATURES)
        if top < 1:
            raise ValueError("rerank model: top must be at least 1")
        self.top = int(top)

    @classmethod
    def load(cls, path: Path = RERANK_PATH) -> "Reranker":
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(data["features"], data["mean"], data["scale"], data["weights"], data["top"])

    def scores(self, probabilities: np.ndarray, raw: RawScores, order: list[int]) -> np.ndarray:
        """The scorer's value for each candidate of ``order``."""
        return self.linear(candidate_features(probabilities, raw, order))

    def choose(self, probabilities: np.ndarray, raw: RawScores, order: list[int],
               trusted: np.ndarray) -> int:
        """The entry (index) to answer with among the first ``top`` of ``order`` (entries best
        first by probability); the first one when its lexical score is trusted."""
        candidates = list(order[:self.top])
        if len(candidates) < 2 or bool(trusted[candidates[0]]):
            return candidates[0]
        return candidates[int(np.argmax(self.scores(probabilities, raw, candidates)))]

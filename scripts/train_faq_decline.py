"""Fit the FAQ's learned answer-or-decline model (plugins/faq/decline.py) on the tuning sets.

    .venv/bin/python scripts/train_faq_decline.py            # collect, cross-validate, write the model
    .venv/bin/python scripts/train_faq_decline.py --cv-only  # only print the cross-validation
    .venv/bin/python scripts/train_faq_decline.py --select   # choose the features again first

The raw scores are collected once through real bots (about 30 s) and kept in
/tmp/skillbot-decline-data.pkl; ``--recollect`` computes them again (after a tuning set or the
FAQ's scoring changed).

Training data, tuning sets only (never tests/data/heldout/): every FAQ of tests/data/tuning/
with its customers' messages, and the demo shop's FAQ with its labelled set
(tests/data/utterances.tsv); the general and weather tuning messages are added to every FAQ as
messages no entry answers. Each (message, entry) pair is one example: label 1 when the entry is
the one the message expects. Features were chosen (``DEFAULT_FEATURES``; ``--select`` redoes it)
by leave-one-business-out cross-validation, greedy forward selection on the accuracy of the
whole decision (the best entry answers when its probability, with a trusted lexical score
fused as the FAQ does, reaches the threshold; otherwise the message goes to the model), the
mean of the businesses' own messages' and the general and weather messages' accuracy. The
final weights, fitted on everything, and the chosen threshold go to
plugins/faq/data/decline_model.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import hashlib
import pickle
import tempfile
import sys
import zlib
from pathlib import Path
from typing import Any, AsyncIterator

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import normalize_text  # noqa: E402
from core.operations.evaluation import load_labelled  # noqa: E402
from core.testing import running_bot  # noqa: E402
from plugins.faq.config import Config as FaqConfig  # noqa: E402
from plugins.faq.decline import ALL_FEATURES, MODEL_PATH, pair_features, without_content  # noqa: E402
from plugins.faq.register import REGISTER_PATH  # noqa: E402
from plugins.faq.rerank import ALL_RERANK_FEATURES, RERANK_PATH, Reranker, candidate_features  # noqa: E402

TUNING = ROOT / "tests" / "data" / "tuning"
DEMO_SET = ROOT / "tests" / "data" / "utterances.tsv"
CACHE = Path(tempfile.gettempdir()) / "skillbot-decline-data.pkl"
FAQ_DEFAULTS = FaqConfig()
#: L2 penalty of the logistic regression (on standardised features).
L2 = 1.0
#: Negatives from the general and weather sets count this much each (they outnumber a
#: business's own messages several times; the decision is judged on the business's messages).
OTHER_WEIGHT = 0.5
#: The threshold (and the feature selection) maximise OWN_SHARE x the businesses' own messages'
#: accuracy + the rest x the general and weather messages'.
OWN_SHARE = 0.85
#: ... among the thresholds at which at least this share of the general and weather messages
#: sent to the FAQs is declined (the issue's aim for general questions reaching the model, 95%);
#: when none reaches it, among all.
OTHER_FLOOR = 0.95
#: The own messages' accuracy in that objective: the mean over the businesses (each business
#: counts the same, as a new operator's would) rather than over all their messages pooled.
MEAN_OVER_BUSINESSES = True
#: Whether each business weighs the same in the fit (its examples scaled by the mean business's
#: number of own messages over its own).
BALANCE_BUSINESSES = False
#: The FAQ's defaults (plugins/faq/config.py), read from it: a lexical score of ``lexical_trust``
#: is fused with the probability when the entry's words cover ``sure_coverage`` of the message, or
#: its best question is ``lexical_general_margin`` nearer to the message than the nearest general
#: question (calibrated to the FAQ). A candidate value is set here by experiment_finetune_e5.py.
LEXICAL_TRUST = FAQ_DEFAULTS.lexical_trust
SURE_COVERAGE = FAQ_DEFAULTS.sure_coverage
LEXICAL_GENERAL_MARGIN = FAQ_DEFAULTS.lexical_general_margin
#: Chosen by --select (greedy forward selection, leave-one-business-out, the register round: 17
#: plain businesses and the demo shop): the cosine of the entry's questions and answer embedded
#: as one passage, how far its best question or answer sentence stands above every other entry's,
#: the message's register (plugins/faq/register.py), the share of the message its answer holds,
#: and how far its best question stands above every other entry's. Mean over the plain
#: businesses 77.3% (the previous j_cos, q_gap, log_chars, c_minus_general refitted: 75.0%), the
#: general and weather messages 95.3% (92.8%), at threshold 0.15 (0.1), with the re-ranker.
DEFAULT_FEATURES = ("j_cos", "qs_gap", "register", "cover_a", "q_gap")
#: The re-ranker (plugins/faq/rerank.py): how many of the best entries it chooses among, its L2
#: penalty and its features. Chosen by leave-one-business-out cross-validation of the share of
#: the businesses' messages whose right entry is ranked first (docs/faq.md has the table): the
#: candidate's decline log-odds, its best answer sentence's cosine relative to the other
#: candidates and its answer's coverage of the message (the first rounds, among the best three);
#: then, among the best five (mean over the eleven plain businesses 86.2% -> 87.9%), how far its
#: log-odds lead the best other candidate's (88.4%; ``--rerank-select`` from those three). The
#: question's, joint passage's or answer's relative cosine, the lexical score, the questions'
#: coverage, the other margins and the rank did not raise it further.
#: The register model (plugins/faq/register.py): its L2 penalty (on the weights over the unit
#: embedding) and the folds the general and weather messages are split into, so that none is
#: judged by a register fitted on it (a business's messages are judged by one fitted without
#: that business's).
REGISTER_L2 = 0.01
REGISTER_FOLDS = 5
RERANK_TOP = 5
RERANK_L2 = 1.0
DEFAULT_RERANK_FEATURES = ("logit", "s_rel", "cover_a", "logit_gap")


def one_column(path: Path) -> list[str]:
    out = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        text = raw.split("\t")[0].strip()
        if text and not raw.startswith("#") and text != "utterance":
            out.append(text)
    return out


def datasets() -> list[tuple[str, Path | None, list[tuple[str, str]]]]:
    others = [*(c.text for c in load_labelled(TUNING / "semantic_general_messages.tsv")),
              *one_column(TUNING / "general_messages.tsv"), *one_column(TUNING / "weather_messages.tsv"),
              *(t for path in sorted(TUNING.glob("general_round4_*.tsv")) for t in one_column(path))]
    others = list(dict.fromkeys(others))
    sets = []
    for faq in sorted(TUNING.glob("*_faq.toml")):
        name = faq.name[:-len("_faq.toml")]
        own = [(c.text, c.expected) for c in load_labelled(TUNING / f"{name}_messages.tsv")]
        sets.append((name, faq, own + [(t, "other") for t in others]))
    demo = [(c.text, c.expected) for c in load_labelled(DEMO_SET)]
    sets.append(("demo", None, demo + [(t, "other") for t in others]))
    return sets


async def faq_bots() -> AsyncIterator[tuple[str, list[tuple[str, str]], Any, Any]]:
    """Each FAQ of ``datasets()`` loaded in a bot with the FAQ plugin alone, one at a time:
    (name, messages, bot, the FAQ plugin)."""
    for name, faq_path, messages in datasets():
        faq = {"reload_interval": 0, **({"path": str(faq_path)} if faq_path else {})}
        async with running_bot({"plugins": {"enabled": ["faq"], "faq": faq}}) as bot:
            yield name, messages, bot, bot.pm.get_plugin("faq")


async def collect() -> list[dict]:
    """Per FAQ: the raw scores of every message (plugins.faq ``raw_scores``) and its label."""
    vectors: dict[str, object] = {}
    out = []
    async for name, messages, bot, plugin in faq_bots():
        index, dense = plugin.index, plugin.dense
        rows = []
        for text, expected in messages:
            norm = normalize_text(text)
            if norm not in vectors:
                vectors[norm] = await bot.embeddings.embed_query(norm)
            query = vectors[norm]
            tokens = bot.segmenter.tokenize(norm)
            raw = plugin.raw_scores(index, dense, norm, tokens, query)
            lexical_best = plugin.score(norm, tokens)[0]
            target = expected[4:] if expected.startswith("faq:") else ""
            label = index.entry_ids.index(target) if target in index.entry_ids else -1
            kind = "own" if expected != "other" else "other"
            rows.append({"text": text, "raw": raw, "label": label, "kind": kind,
                         "lexical_best": lexical_best, "vector": np.asarray(query.vector, dtype=np.float32),
                         "model": query.model})
        out.append({"name": name, "rows": rows})
        print(f"collected {name}: {len(rows)} messages", file=sys.stderr)
    return out


def fingerprint() -> str:
    """What the collected raw scores depend on: the sets and the FAQ's scoring code."""
    digest = hashlib.sha1()
    files = [*sorted(TUNING.iterdir()), DEMO_SET, Path(__file__),
             *sorted((ROOT / "plugins" / "faq").glob("*.py")),
             ROOT / "plugins" / "faq" / "data" / "faq.toml"]
    for path in files:
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def register_fold(text: str) -> int:
    """The fold of a general or weather message (stable across runs and machines)."""
    return zlib.crc32(text.encode("utf-8")) % REGISTER_FOLDS


def register_examples(data: list[dict], leave_out: str | None = None,
                      fold: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The register's examples: every business's own messages but ``leave_out``'s (1: answered
    by an entry, 0: meant for the model) and the general and weather messages (0) but those of
    ``fold``, each message once."""
    own: dict[tuple[str, str], tuple[np.ndarray, float]] = {}
    other: dict[str, np.ndarray] = {}
    for biz in data:
        for row in biz["rows"]:
            if row["kind"] == "own" and biz["name"] != leave_out:
                own[(biz["name"], row["text"])] = (row["vector"], 1.0 if row["label"] >= 0 else 0.0)
            elif row["kind"] != "own" and register_fold(row["text"]) != fold:
                other[row["text"]] = row["vector"]
    X = np.array([v for v, _ in own.values()] + list(other.values()), dtype=np.float64)
    y = np.array([label for _, label in own.values()] + [0.0] * len(other))
    return X, y


def fit_register(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """The register's logistic regression, both classes weighing the same."""
    w = np.where(y > 0, 0.5 / y.mean(), 0.5 / (1.0 - y.mean()))
    return fit(X, y, w * len(y) / w.sum(), REGISTER_L2)


def register_out_of_fold(data: list[dict]) -> None:
    """Every row's register (``raw.register``) from a register fitted without it: a business's
    messages by one fitted without that business, a general or weather message by one fitted
    without its fold: what the register says of messages it never saw, as on a new operator's."""
    fitted: dict[tuple[str | None, int | None], tuple[np.ndarray, float]] = {}
    for biz in data:
        for row in biz["rows"]:
            key = (biz["name"], None) if row["kind"] == "own" else (None, register_fold(row["text"]))
            if key not in fitted:
                fitted[key] = fit_register(*register_examples(data, *key))
            weights, bias = fitted[key]
            row["raw"].register = float(row["vector"].astype(np.float64) @ weights + bias)


def matrices(data: list[dict]) -> list[dict]:
    register_out_of_fold(data)
    for biz in data:
        for row in biz["rows"]:
            row["X"] = pair_features(row["raw"])
    return data


def fit(X: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float = L2) -> tuple[np.ndarray, float]:
    """Weighted L2-regularised logistic regression by Newton's method (standardised X)."""
    n, d = X.shape
    A = np.hstack([X, np.ones((n, 1))])
    beta = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[-1] = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(A @ beta, -30, 30)))
        grad = A.T @ (w * (p - y)) + reg * beta
        H = (A * (w * p * (1 - p))[:, None]).T @ A + np.diag(reg) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(H, grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return beta[:-1], float(beta[-1])


def stack(data: list[dict], columns: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    Xs, ys, ws = [], [], []
    own_counts = [sum(row["kind"] == "own" for row in biz["rows"]) for biz in data]
    for biz, own_count in zip(data, own_counts):
        # each business weighs as much as the mean one (BALANCE_BUSINESSES): the demo shop's
        # many labelled messages would otherwise speak for every plain FAQ
        factor = float(np.mean(own_counts)) / max(own_count, 1) if BALANCE_BUSINESSES else 1.0
        for row in biz["rows"]:
            X = row["X"][:, columns]
            y = np.zeros(len(X))
            if row["label"] >= 0:
                y[row["label"]] = 1.0
            Xs.append(X)
            ys.append(y)
            ws.append(np.full(len(X), factor * (1.0 if row["kind"] == "own" else OTHER_WEIGHT)))
    return np.vstack(Xs), np.concatenate(ys), np.concatenate(ws)


def fused(row: dict, columns: list[int], mean, scale, weights, bias) -> tuple[np.ndarray, np.ndarray]:
    """Per entry: the decline probability with a trusted lexical score fused (as the FAQ does),
    and whether that lexical score was trusted."""
    x = (row["X"][:, columns] - mean) / scale
    p = without_content(row["raw"], 1.0 / (1.0 + np.exp(-np.clip(x @ weights + bias, -30, 30))))
    lexical = row["raw"].lexical
    raw = row["raw"]
    trusted = (lexical >= LEXICAL_TRUST) & ((raw.cover_q >= SURE_COVERAGE)
                                            | (raw.q_cos - raw.general >= LEXICAL_GENERAL_MARGIN))
    return 1.0 - (1.0 - p) * (1.0 - np.where(trusted, lexical, 0.0)), trusted


def ranked_order(p: np.ndarray) -> list[int]:
    return [int(i) for i in np.argsort(-p, kind="stable")]


def decide(row: dict, columns: list[int], mean, scale, weights, bias,
           reranker: Reranker | None = None) -> tuple[int, float]:
    """The entry the FAQ would answer with and the probability compared with the threshold (the
    best one's: re-ranking changes which entry answers, not whether one does)."""
    p, trusted = fused(row, columns, mean, scale, weights, bias)
    order = ranked_order(p)
    best = order[0]
    if reranker is not None:
        best = reranker.choose(p, row["raw"], order, trusted)
    return best, float(p[order[0]])


def right(row: dict, best: int, p: float, threshold: float) -> bool:
    if p >= threshold:
        return best == row["label"]
    return row["label"] < 0


def train(data: list[dict], columns: list[int]):
    key = (tuple(columns), tuple(id(b) for b in data), OTHER_WEIGHT, BALANCE_BUSINESSES)
    if key not in _TRAINED:  # the re-ranker's cross-validation asks for the same fits many times
        _TRAINED[key] = _train(data, columns)
    return _TRAINED[key]


_TRAINED: dict = {}


def _train(data: list[dict], columns: list[int]):
    X, y, w = stack(data, columns)
    mean, scale = X.mean(axis=0), X.std(axis=0) + 1e-9
    weights, bias = fit((X - mean) / scale, y, w)
    return mean, scale, weights, bias


def cross_validate(data: list[dict], columns: list[int], thresholds=np.arange(0.05, 0.81, 0.05)):
    """Leave one business out: per threshold, (own messages right, own total, others right,
    others total, [each business's own messages' accuracy])."""
    counts = {round(t, 2): [0, 0, 0, 0, []] for t in thresholds}
    for held in range(len(data)):
        model = train([b for i, b in enumerate(data) if i != held], columns)
        decided = [(row, *decide(row, columns, *model)) for row in data[held]["rows"]]
        for t, c in counts.items():
            own_right = own = 0
            for row, best, p in decided:
                k = 0 if row["kind"] == "own" else 2
                ok = right(row, best, p, t)
                c[k] += ok
                c[k + 1] += 1
                if k == 0:
                    own_right, own = own_right + ok, own + 1
            c[4].append(own_right / max(own, 1))
    return counts


def score_of(counts) -> tuple[float, float]:
    """The best threshold and its figure: the own messages' accuracy (pooled, or the mean over
    the businesses) and the other messages' weighted ``OWN_SHARE`` to the rest, among the
    thresholds that decline at least ``OTHER_FLOOR`` of the other messages (all when none does)."""
    values = {}
    for t, (r, n, ro, no, per) in counts.items():
        own = float(np.mean(per)) if MEAN_OVER_BUSINESSES else r / n
        values[t] = OWN_SHARE * own + (1 - OWN_SHARE) * ro / no
    allowed = {t: v for t, v in values.items() if counts[t][2] / counts[t][3] >= OTHER_FLOOR}
    values = allowed or values
    best = max(values.values())
    # several thresholds may tie: the middle one of the best is the least sensitive
    tied = sorted(t for t, v in values.items() if v >= best - 1e-12)
    return best, tied[len(tied) // 2]


def rerank_groups(rows: list[dict], columns: list[int], model, rerank_columns: list[int],
                  top: int | None = None) -> list[tuple[np.ndarray, int]]:
    """(candidate features, position of the right entry) for every business message whose right
    entry is among the ``top`` best and is not a trusted lexical hit's."""
    top = top or RERANK_TOP
    groups = []
    for row in rows:
        if row["kind"] != "own" or row["label"] < 0:
            continue
        p, trusted = fused(row, columns, *model)
        order = ranked_order(p)[:top]
        if row["label"] in order and not trusted[order[0]]:
            F = candidate_features(p, row["raw"], order)[:, rerank_columns]
            groups.append((F, order.index(row["label"])))
    return groups


def fit_rerank(groups: list[tuple[np.ndarray, int]], l2: float = RERANK_L2, steps: int = 500,
               rate: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Conditional logit (softmax over each message's candidates) by gradient descent from zero:
    deterministic. Returns mean, scale and weights of the standardised features."""
    d = groups[0][0].shape[1]
    k = max(len(F) for F, _ in groups)
    X = np.zeros((len(groups), k, d))
    mask = np.zeros((len(groups), k), dtype=bool)
    Y = np.zeros((len(groups), k))
    for g, (F, right_at) in enumerate(groups):
        X[g, :len(F)] = F
        mask[g, :len(F)] = True
        Y[g, right_at] = 1.0
    flat = X[mask]
    mean, scale = flat.mean(axis=0), flat.std(axis=0) + 1e-9
    Z = np.where(mask[..., None], (X - mean) / scale, 0.0)
    w = np.zeros(d)
    for _ in range(steps):
        s = np.where(mask, Z @ w, -np.inf)
        s -= s.max(axis=1, keepdims=True)
        e = np.exp(s)
        P = e / e.sum(axis=1, keepdims=True)
        grad = np.einsum("gk,gkd->d", P - Y, Z) / len(groups) + l2 * w / len(groups)
        w -= rate * grad
    return mean, scale, w


def out_of_fold_groups(data: list[dict], columns: list[int], rerank_columns: list[int],
                       exclude: int | None = None) -> list[tuple[np.ndarray, int]]:
    """Re-ranking examples of every business (but ``exclude``), each ranked by a decline model
    fitted without it (and without ``exclude``): the probabilities the re-ranker will meet."""
    groups = []
    for i, biz in enumerate(data):
        if i == exclude:
            continue
        model = train([b for n, b in enumerate(data) if n not in (i, exclude)], columns)
        groups += rerank_groups(biz["rows"], columns, model, rerank_columns)
    return groups


def make_reranker(features: list[str], fitted) -> Reranker:
    mean, scale, weights = fitted
    return Reranker(features, mean.tolist(), scale.tolist(), weights.tolist(), RERANK_TOP)


def cross_validate_rerank(data: list[dict], columns: list[int], rerank_features: list[str],
                          threshold: float) -> list[tuple[str, int, int, int, int, int, int]]:
    """Leave one business out: per business, (name, right entry first without / with re-ranking,
    messages with a right entry, decisions right without / with, own messages)."""
    rerank_columns = [ALL_RERANK_FEATURES.index(f) for f in rerank_features]
    out = []
    for held in range(len(data)):
        model = train([b for i, b in enumerate(data) if i != held], columns)
        reranker = make_reranker(rerank_features,
                                 fit_rerank(out_of_fold_groups(data, columns, rerank_columns, held)))
        first0 = first1 = n = ok0 = ok1 = own = 0
        for row in data[held]["rows"]:
            if row["kind"] != "own":
                continue  # re-ranking never changes whether the FAQ answers
            own += 1
            plain, p = decide(row, columns, *model)
            chosen, _ = decide(row, columns, *model, reranker=reranker)
            ok0 += right(row, plain, p, threshold)
            ok1 += right(row, chosen, p, threshold)
            if row["label"] >= 0:
                n += 1
                first0 += plain == row["label"]
                first1 += chosen == row["label"]
        out.append((data[held]["name"], first0, first1, n, ok0, ok1, own))
    return out


def rerank_objective(table) -> float:
    """What the re-ranker's feature selection maximises: the share of messages whose right entry
    is ranked first, the mean over the plain businesses (each counts as a new operator would)."""
    return float(np.mean([t[2] / t[3] for t in table if t[0] != "demo"]))


def forward_select(candidates: list, score, start: list | None = None, min_gain: float = 0.002,
                   say=None, tried=None) -> list:
    """Greedy forward selection: from ``start``, add the candidate whose ``score(chosen + [c])``
    is highest, while it beats the best so far by more than ``min_gain``; ``say(c, value)``
    reports each addition, ``tried(trials)`` each round's (value, candidate) pairs."""
    chosen = list(start or [])
    best = score(chosen) if chosen else -1.0
    while True:
        trials = [(score(chosen + [c]), c) for c in candidates if c not in chosen]
        if not trials:
            return chosen
        if tried is not None:
            tried(trials)
        value, c = max(trials)  # ties: the larger candidate, as the selections always did
        if value <= best + min_gain:
            return chosen
        chosen.append(c)
        best = value
        if say is not None:
            say(c, value)


def select_rerank(data: list[dict], columns: list[int], threshold: float,
                  start: list[str]) -> list[str]:
    """Greedy forward selection of the re-ranker's features by ``rerank_objective``,
    leave-one-business-out, from the features ``start``."""
    def score(features: list[str]) -> float:
        return rerank_objective(cross_validate_rerank(data, columns, features, threshold))

    def say(f: str, value: float) -> None:
        print(f"+ {f}: right entry first, mean over the plain businesses {value:.1%}", file=sys.stderr)

    def tried(trials: list[tuple[float, str]]) -> None:
        print("  tried: " + ", ".join(f"+{f} {v:.1%}" for v, f in sorted(trials, reverse=True)), file=sys.stderr)

    return forward_select(ALL_RERANK_FEATURES, score, start, say=say, tried=tried)


def main() -> None:
    global OTHER_WEIGHT, OWN_SHARE, OTHER_FLOOR, MEAN_OVER_BUSINESSES, RERANK_TOP
    parser = argparse.ArgumentParser()
    parser.add_argument("--cv-only", action="store_true")
    parser.add_argument("--recollect", action="store_true", help="recompute the raw scores")
    parser.add_argument("--features", default=",".join(DEFAULT_FEATURES),
                        help="comma-separated features (default: those the selection below chose)")
    parser.add_argument("--select", action="store_true",
                        help="greedy forward selection of the features by cross-validation")
    parser.add_argument("--other-weight", type=float, default=OTHER_WEIGHT,
                        help="weight of each general or weather message sent to a FAQ in the fit")
    parser.add_argument("--other-floor", type=float, default=OTHER_FLOOR,
                        help="the threshold keeps at least this share of the general and weather messages declined")
    parser.add_argument("--own-share", type=float, default=OWN_SHARE,
                        help="weight of the businesses' own messages' accuracy in the objective")
    parser.add_argument("--mean-over-businesses", action=argparse.BooleanOptionalAction,
                        default=MEAN_OVER_BUSINESSES,
                        help="judge the own messages by the mean of the businesses' accuracies")
    parser.add_argument("--rerank-features", default=",".join(DEFAULT_RERANK_FEATURES),
                        help="comma-separated features of the re-ranker "
                             f"(from {', '.join(ALL_RERANK_FEATURES)}; empty: no re-ranker)")
    parser.add_argument("--rerank-top", type=int, default=RERANK_TOP,
                        help="how many of the best entries the re-ranker chooses among")
    parser.add_argument("--no-rerank-cv", action="store_true",
                        help="skip the re-ranker's leave-one-business-out table (a decline model per pair of "
                             "left-out businesses: about an hour for 42 FAQs on one core); it is still fitted")
    parser.add_argument("--rerank-select", action="store_true",
                        help="greedy forward selection of the re-ranker's features by cross-validation, "
                             "from those of --rerank-features (empty: from none)")
    args = parser.parse_args()
    OTHER_WEIGHT, OWN_SHARE, OTHER_FLOOR = args.other_weight, args.own_share, args.other_floor
    RERANK_TOP = args.rerank_top
    MEAN_OVER_BUSINESSES = args.mean_over_businesses
    stamp = fingerprint()
    cached = pickle.loads(CACHE.read_bytes()) if CACHE.exists() and not args.recollect else None
    if isinstance(cached, dict) and cached.get("stamp") == stamp:
        data = cached["data"]
    else:
        data = asyncio.run(collect())
        CACHE.write_bytes(pickle.dumps({"stamp": stamp, "data": data}))
    data = matrices(data)
    if not args.select:
        chosen = args.features.split(",")
    else:
        chosen = forward_select(
            ALL_FEATURES, lambda fs: score_of(cross_validate(data, [ALL_FEATURES.index(x) for x in fs]))[0],
            say=lambda f, value: print(f"+ {f}: cross-validated {value:.3f}", file=sys.stderr))
    cols = [ALL_FEATURES.index(f) for f in chosen]
    counts = cross_validate(data, cols)
    value, threshold = score_of(counts)
    r, n, ro, no, _ = counts[threshold]
    print(f"features {chosen}; leave-one-business-out at threshold {threshold}: "
          f"own messages {r}/{n} = {r / n:.1%}, general/weather {ro}/{no} = {ro / no:.1%}")
    for held in range(len(data)):
        model = train([b for i, b in enumerate(data) if i != held], cols)
        own = [row for row in data[held]["rows"] if row["kind"] == "own"]
        other = [row for row in data[held]["rows"] if row["kind"] != "own"]
        ok = sum(right(row, *decide(row, cols, *model), threshold) for row in own)
        ok_other = sum(right(row, *decide(row, cols, *model), threshold) for row in other)
        print(f"  {data[held]['name']}: {ok}/{len(own)} = {ok / len(own):.1%}; "
              f"general and weather against this FAQ {ok_other}/{len(other)} = {ok_other / len(other):.1%}")
    rerank_features = [f for f in args.rerank_features.split(",") if f]
    if args.rerank_select:
        rerank_features = select_rerank(data, cols, threshold, rerank_features)
    if rerank_features and not args.no_rerank_cv:
        table = cross_validate_rerank(data, cols, rerank_features, threshold)
        print(f"re-ranking the best {RERANK_TOP} with {rerank_features}, leave-one-business-out "
              "(right entry ranked first; whole decision):")
        for name, f0, f1, n, ok0, ok1, own in table:
            print(f"  {name}: first {f0}/{n} = {f0 / n:.1%} -> {f1 / n:.1%}; "
                  f"decision {ok0 / own:.1%} -> {ok1 / own:.1%}")
        f0, f1, n = (sum(t[i] for t in table) for i in (1, 2, 3))
        ok0, ok1, own = (sum(t[i] for t in table) for i in (4, 5, 6))
        print(f"  all: first {f0}/{n} = {f0 / n:.1%} -> {f1}/{n} = {f1 / n:.1%}; "
              f"decision {ok0 / own:.1%} -> {ok1 / own:.1%}; mean over businesses "
              f"{np.mean([t[1] / t[3] for t in table]):.1%} -> {np.mean([t[2] / t[3] for t in table]):.1%}; "
              f"decision mean over businesses {np.mean([t[4] / t[6] for t in table]):.1%} -> "
              f"{np.mean([t[5] / t[6] for t in table]):.1%} (plain ones only "
              f"{np.mean([t[5] / t[6] for t in table if t[0] != 'demo']):.1%})")
    if args.cv_only:
        return
    mean, scale, weights, bias = train(data, cols)
    MODEL_PATH.write_text(json.dumps({
        "about": "FAQ answer-or-decline model (plugins/faq/decline.py), fitted by "
                 "scripts/train_faq_decline.py on tests/data/tuning/ and tests/data/utterances.tsv",
        "features": chosen, "mean": mean.round(6).tolist(), "scale": scale.round(6).tolist(),
        "weights": weights.round(6).tolist(), "bias": round(bias, 6),
        "threshold": threshold,
    }, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {MODEL_PATH}")
    if "register" in chosen:
        models = {row["model"] for biz in data for row in biz["rows"]}
        if len(models) != 1:
            sys.exit(f"the messages were embedded by several models ({sorted(models)}): no register written")
        r_weights, r_bias = fit_register(*register_examples(data))
        REGISTER_PATH.write_text(json.dumps({
            "about": "FAQ register: a customer's question to a business or not (plugins/faq/register.py), "
                     "fitted by scripts/train_faq_decline.py on tests/data/tuning/ and tests/data/utterances.tsv",
            "model": models.pop(), "weights": r_weights.round(6).tolist(), "bias": round(r_bias, 6),
        }) + "\n", encoding="utf-8")
        print(f"wrote {REGISTER_PATH}")
    if rerank_features:
        rerank_columns = [ALL_RERANK_FEATURES.index(f) for f in rerank_features]
        r_mean, r_scale, r_weights = fit_rerank(out_of_fold_groups(data, cols, rerank_columns))
        RERANK_PATH.write_text(json.dumps({
            "about": "FAQ re-ranker of the best entries (plugins/faq/rerank.py), fitted by "
                     "scripts/train_faq_decline.py on tests/data/tuning/ and tests/data/utterances.tsv",
            "features": rerank_features, "mean": r_mean.round(6).tolist(),
            "scale": r_scale.round(6).tolist(), "weights": r_weights.round(6).tolist(),
            "top": RERANK_TOP,
        }, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {RERANK_PATH}")


if __name__ == "__main__":
    main()

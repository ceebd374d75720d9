"""Experiments behind docs/faq.md's round-3 "tried and not kept": other ways to decide whether
the FAQ answers. None ships; the shipped model is fitted by scripts/train_faq_decline.py.
Tuning sets only; every figure leaves one business out.

    .venv/bin/python scripts/experiment_faq_decision.py variant     # the message without its filler
    .venv/bin/python scripts/experiment_faq_decision.py twostage    # a message-level second stage
    .venv/bin/python scripts/experiment_faq_decision.py none        # a softmax over entries and "none"
    .venv/bin/python scripts/experiment_faq_decision.py anchors     # a per-FAQ threshold from the anchors
    .venv/bin/python scripts/experiment_faq_decision.py register_gate --features j_cos,qs_gap,register,cover_a,q_gap
                                                     # lexical trust only when the register allows

``--features`` sets the decline model's features (default: the previous model's three). The
objective is train_faq_decline.py's: 0.85 x the own messages' accuracy averaged over the
businesses + 0.15 x the general and weather messages'. Printed: the mean over the plain
businesses, the demo shop, and the general and weather messages (all FAQs, and the demo's).
The raw scores come from train_faq_decline.py's cache; ``variant`` and ``anchors`` collect
their own through real bots (under a minute each).
"""
from __future__ import annotations

import argparse
import asyncio
import pickle
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from core import load_general_questions, normalize_text  # noqa: E402
from plugins.faq.decline import ALL_FEATURES, pair_features, without_content  # noqa: E402
from plugins.faq.rerank import ALL_RERANK_FEATURES  # noqa: E402
import train_faq_decline as T  # noqa: E402

THRESHOLDS = np.arange(0.05, 0.96, 0.05)
RERANK = ["logit", "s_rel", "cover_a"]


def cached_data() -> list[dict]:
    if not T.CACHE.exists():
        sys.exit("run scripts/train_faq_decline.py --cv-only first (it collects the raw scores)")
    return T.matrices(pickle.loads(T.CACHE.read_bytes())["data"])


def report(name: str, results: list[tuple[str, list[tuple[dict, int, float]]]]) -> None:
    """results: per business, (row, chosen entry, probability); the best threshold's figures."""
    best = None
    for t in THRESHOLDS:
        own = {b: np.mean([T.right(r, e, p, t) for r, e, p in rows if r["kind"] == "own"]) for b, rows in results}
        other = {b: np.mean([T.right(r, e, p, t) for r, e, p in rows if r["kind"] != "own"]) for b, rows in results}
        value = 0.85 * np.mean(list(own.values())) + 0.15 * np.mean(list(other.values()))
        if best is None or value > best[0]:
            best = (value, t, own, other)
    value, t, own, other = best
    plain = np.mean([v for b, v in own.items() if b != "demo"])
    print(f"{name}: threshold {t:.2f}, objective {value:.3f}; plain businesses {plain:.1%}, "
          f"demo {own.get('demo', float('nan')):.1%}, general and weather {np.mean(list(other.values())):.1%} "
          f"(sent to the demo {other.get('demo', float('nan')):.1%})")
    print("  " + ", ".join(f"{b} {v:.1%}" for b, v in own.items()))


def decline_results(data: list[dict], cols: list[int], rerank: bool = True):
    rr = [ALL_RERANK_FEATURES.index(f) for f in RERANK]
    out = []
    for held in range(len(data)):
        model = T.train([b for i, b in enumerate(data) if i != held], cols)
        reranker = (T.make_reranker(RERANK, T.fit_rerank(T.out_of_fold_groups(data, cols, rr, held)))
                    if rerank else None)
        out.append((data[held]["name"], [(r, *T.decide(r, cols, *model, reranker=reranker))
                                         for r in data[held]["rows"]]))
    return out


# ---- the message without its filler ---------------------------------------------------------

async def collect_variants() -> list[dict]:
    """Per FAQ and message: raw scores with the message's vector, with the vector of its content
    tokens only (weight > 0: jieba's IDF above the stop-word level, not chat filler), and with
    the normalised sum of both."""
    vectors, out = {}, []
    async for name, messages, bot, plugin in T.faq_bots():
        seg = bot.segmenter
        rows = []
        for text, expected in messages:
            norm = normalize_text(text)
            tokens = seg.tokenize(norm)
            variant = "".join(t for t in tokens if seg.weight(t) > 0) or norm
            for key in (norm, variant):
                if key not in vectors:
                    vectors[key] = await bot.embeddings.embed_query(key)
            q0, q1 = vectors[norm], vectors[variant]
            mixed = q0.vector + q1.vector
            q2 = type("Query", (), {"model": q0.model, "vector": mixed / np.linalg.norm(mixed)})()
            target = expected[4:] if expected.startswith("faq:") else ""
            rows.append({"raws": {k: plugin.raw_scores(plugin.index, plugin.dense, norm, tokens, q)
                                  for k, q in (("message", q0), ("variant", q1), ("mixed", q2))},
                         "label": plugin.index.entry_ids.index(target) if target in plugin.index.entry_ids else -1,
                         "kind": "own" if expected != "other" else "other"})
        out.append({"name": name, "rows": rows})
    return out


def variant(cols: list[int]) -> None:
    data = asyncio.run(collect_variants())
    for which in ("message", "variant", "mixed"):
        for biz in data:
            for row in biz["rows"]:
                row["raw"] = row["raws"][which]
                row["X"] = pair_features(row["raw"])
        report(f"embedding the {which}", decline_results(data, cols))


# ---- a message-level second stage -----------------------------------------------------------

STAGE2 = ("logit", "gap", "q_gen", "s_gen", "j", "c_gen", "cover_all", "cover_q", "lex", "log_chars",
          "a_cos", "general", "c_cos", "cover_a", "qs_gen")


def stage2_features(row: dict, cols: list[int], model) -> tuple[np.ndarray, int, float]:
    p, trusted = T.fused(row, cols, *model)
    order = T.ranked_order(p)
    i, second = order[0], order[min(1, len(order) - 1)]
    r = row["raw"]
    lg = np.log(np.clip(p, 1e-6, 1 - 1e-6)) - np.log1p(-np.clip(p, 1e-6, 1 - 1e-6))
    f = {"logit": lg[i], "gap": lg[i] - lg[second], "q_gen": r.q_cos[i] - r.general,
         "s_gen": r.s_cos[i] - r.general, "j": r.j_cos[i], "c_gen": r.c_cos - r.general,
         "cover_all": r.cover_all, "cover_q": r.cover_q[i], "lex": r.lexical[i] * trusted[i],
         "log_chars": np.log1p(r.chars), "a_cos": r.a_cos[i], "general": r.general, "c_cos": r.c_cos,
         "cover_a": r.cover_a[i], "qs_gen": max(r.q_cos.max(), r.s_cos.max()) - r.general}
    return np.array([f[k] for k in STAGE2]), i, float(p[i])


def twostage(data: list[dict], cols: list[int]) -> None:
    """Stage 1 (the decline model) ranks; stage 2, a logistic regression over the best entry's
    and the message's features, decides, fitted on messages whose best entry is right (1) or
    that no entry answers (0), with stage-1 scores out of fold. Greedy forward selection."""
    pre = {}
    for held in range(len(data)):
        def rows_of(b):
            model = T.train([x for n, x in enumerate(data) if n not in (held, b)], cols)
            return [(*stage2_features(r, cols, model), r) for r in data[b]["rows"]]
        pre[held] = {b: rows_of(b) for b in range(len(data)) if b != held}
        model = T.train([x for n, x in enumerate(data) if n != held], cols)
        pre[held]["held"] = [(*stage2_features(r, cols, model), r) for r in data[held]["rows"]]

    def results(chosen: list[int]):
        out = []
        for held in range(len(data)):
            X, y, w = [], [], []
            for b, rows in pre[held].items():
                if b == "held":
                    continue
                n_own = sum(r["kind"] == "own" for *_, r in rows)
                n_other = len(rows) - n_own
                for x, best, _, r in rows:
                    if r["label"] >= 0 and best != r["label"]:
                        continue  # answering or not, it is wrong: no lesson for the decision
                    X.append(x[chosen])
                    y.append(float(r["label"] >= 0))
                    w.append(1.0 if r["kind"] == "own" else T.OTHER_WEIGHT * n_own / n_other)
            X, y, w = np.array(X), np.array(y), np.array(w)
            mean, scale = X.mean(0), X.std(0) + 1e-9
            weights, bias = T.fit((X - mean) / scale, y, w)
            rows = [(r, best, float(1 / (1 + np.exp(-(((x[chosen] - mean) / scale) @ weights + bias)))))
                    for x, best, _, r in pre[held]["held"]]
            out.append((data[held]["name"], rows))
        return out

    def objective(res) -> float:
        return max(0.85 * np.mean([np.mean([T.right(r, e, p, t) for r, e, p in rows if r["kind"] == "own"])
                                   for _, rows in res])
                   + 0.15 * np.mean([np.mean([T.right(r, e, p, t) for r, e, p in rows if r["kind"] != "own"])
                                     for _, rows in res]) for t in THRESHOLDS)

    chosen = T.forward_select(list(range(len(STAGE2))), lambda ks: objective(results(ks)),
                              say=lambda k, value: print(f"+ {STAGE2[k]}: {value:.3f}"))
    report(f"second stage over {[STAGE2[k] for k in chosen]}", results(chosen))


# ---- a softmax over the entries and "none" --------------------------------------------------

def none_option(data: list[dict], entry_features: list[str], message_features: list[str],
                steps: int = 1500, l2: float = 1.0) -> None:
    E = [ALL_FEATURES.index(f) for f in entry_features]
    M = [ALL_FEATURES.index(f) for f in message_features]
    K = max(len(b["rows"][0]["X"]) for b in data)

    def fit(businesses):
        Xe, Xm, mask, Y, W = [], [], [], [], []
        for b in businesses:
            n_own = sum(r["kind"] == "own" for r in b["rows"])
            n_other = len(b["rows"]) - n_own
            for r in b["rows"]:
                n = len(r["X"])
                pad = np.zeros((K, len(E)))
                pad[:n] = r["X"][:, E]
                m = np.zeros(K, bool)
                m[:n] = True
                Xe.append(pad), Xm.append(r["X"][0, M]), mask.append(m), Y.append(r["label"] + 1)
                W.append(1.0 if r["kind"] == "own" else 0.2 * n_own / n_other)
        Xe, Xm, mask, Y, W = map(np.array, (Xe, Xm, mask, Y, W))
        me, se = Xe[mask].mean(0), Xe[mask].std(0) + 1e-9
        mm, sm = Xm.mean(0), Xm.std(0) + 1e-9
        Ze, Zm = np.where(mask[..., None], (Xe - me) / se, 0), (Xm - mm) / sm
        we, wm, bias = np.zeros(len(E)), np.zeros(len(M)), 0.0
        onehot = np.zeros((len(Y), K + 1))
        onehot[np.arange(len(Y)), Y] = 1
        share = W / W.sum()
        for _ in range(steps):
            s = np.concatenate([(Zm @ wm + bias)[:, None], np.where(mask, Ze @ we, -np.inf)], 1)
            s -= s.max(1, keepdims=True)
            P = np.exp(s)
            P /= P.sum(1, keepdims=True)
            G = (P - onehot) * share[:, None]
            we -= 0.5 * (np.einsum("nk,nkd->d", G[:, 1:], Ze) + l2 * we / len(Y))
            wm -= 0.5 * (G[:, 0] @ Zm + l2 * wm / len(Y))
            bias -= 0.5 * G[:, 0].sum()
        return me, se, mm, sm, we, wm, bias

    def predict(model, r):
        me, se, mm, sm, we, wm, bias = model
        s = np.concatenate([[((r["X"][0, M] - mm) / sm) @ wm + bias], ((r["X"][:, E] - me) / se) @ we])
        P = np.exp(s - s.max())
        P /= P.sum()
        i = int(np.argmax(P[1:]))
        return i, float(P[1 + i])

    out = []
    for held in range(len(data)):
        model = fit([b for i, b in enumerate(data) if i != held])
        out.append((data[held]["name"], [(r, *predict(model, r)) for r in data[held]["rows"]]))
    report(f"softmax over {entry_features} and none over {message_features}", out)


# ---- a per-FAQ threshold from the anchors ---------------------------------------------------

async def collect_anchors() -> dict[str, list[dict]]:
    anchors, out = load_general_questions(), {}
    async for name, _, bot, plugin in T.faq_bots():
        rows = []
        for text in anchors:
            norm = normalize_text(text)
            query = await bot.embeddings.embed_query(norm)
            raw = plugin.raw_scores(plugin.index, plugin.dense, norm, bot.segmenter.tokenize(norm), query)
            rows.append({"raw": raw, "X": pair_features(raw), "label": -1, "kind": "anchor"})
        out[name] = rows
    return out


def anchors(data: list[dict], cols: list[int]) -> None:
    """The threshold for each FAQ: at least a quantile of the general-question anchors' best
    probabilities against it (the anchors' own general cosine includes themselves, so only
    features that do not read it are meaningful here)."""
    sets = asyncio.run(collect_anchors())
    base = decline_results(data, cols)
    probabilities = {}
    for held, (name, _) in enumerate(base):
        model = T.train([b for i, b in enumerate(data) if i != held], cols)
        probabilities[name] = [T.decide(r, cols, *model)[1] for r in sets[name]]
    for quantile in (None, 0.8, 0.9, 0.95, 0.97, 0.99):
        for t in THRESHOLDS[:8]:
            own, other = {}, {}
            for name, rows in base:
                threshold = max(t, float(np.quantile(probabilities[name], quantile)) if quantile else 0.0)
                own[name] = np.mean([T.right(r, e, p, threshold) for r, e, p in rows if r["kind"] == "own"])
                other[name] = np.mean([T.right(r, e, p, threshold) for r, e, p in rows if r["kind"] != "own"])
            plain = np.mean([v for b, v in own.items() if b != "demo"])
            print(f"quantile {quantile}, threshold at least {t:.2f}: plain {plain:.1%}, demo {own['demo']:.1%}, "
                  f"general and weather {np.mean(list(other.values())):.1%} (demo {other['demo']:.1%})")


# ---- a lexical score trusted only when the register does not rule the message out -----------

def register_gate(data: list[dict], cols: list[int]) -> None:
    """The register round's trial: the FAQ's noisy OR with a strong lexical score (point 6 of
    docs/faq.md) only when the message's register log-odds reach a cut-off (a message the lexical
    shortcut answers without an embedding keeps it: the register is not known there)."""
    shipped = T.fused

    def gated(cut: float):
        def fused(row, columns, mean, scale, weights, bias):
            raw = row["raw"]
            x = (row["X"][:, columns] - mean) / scale
            p = without_content(raw, 1.0 / (1.0 + np.exp(-np.clip(x @ weights + bias, -30, 30))))
            shortcut = row["lexical_best"] + PRIORITY_NUDGE >= SKIP_ABOVE
            trusted = ((raw.lexical >= T.LEXICAL_TRUST)
                       & ((raw.cover_q >= T.SURE_COVERAGE) | (raw.q_cos - raw.general >= T.LEXICAL_GENERAL_MARGIN))
                       & ((raw.register >= cut) | shortcut))
            return 1.0 - (1.0 - p) * (1.0 - np.where(trusted, raw.lexical, 0.0)), trusted
        return fused

    for cut in (float("-inf"), -6.0, -5.0, -4.0, -3.0, -2.0, 0.0):
        T.fused = gated(cut)
        T._TRAINED.clear()
        results = dict(decline_results(data, cols, rerank=False))
        for t in (0.1, 0.15):
            own = {b: np.mean([T.right(r, e, p, t) for r, e, p in rows if r["kind"] == "own"])
                   for b, rows in results.items()}
            other = [T.right(r, e, p, t) for rows in results.values() for r, e, p in rows if r["kind"] != "own"]
            demo = [T.right(r, e, p, t) for r, e, p in results["demo"] if r["kind"] != "own"]
            print(f"register cut-off {cut}, threshold {t}: plain businesses "
                  f"{np.mean([v for b, v in own.items() if b != 'demo']):.1%}, demo {own['demo']:.1%}, "
                  f"general and weather {np.mean(other):.1%} (sent to the demo {np.mean(demo):.1%})")
    T.fused = shipped


#: The router's defaults the lexical shortcut depends on (semantic.skip_above, the FAQ's
#: priority nudge of 0.01 x 10 capped at 0.05).
SKIP_ABOVE = 0.8
PRIORITY_NUDGE = 0.05


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("experiment", choices=("variant", "twostage", "none", "anchors", "register_gate"))
    parser.add_argument("--features", default="j_cos,q_gap,log_chars")
    args = parser.parse_args()
    cols = [ALL_FEATURES.index(f) for f in args.features.split(",")]
    if args.experiment == "variant":
        variant(cols)
    elif args.experiment == "twostage":
        twostage(cached_data(), cols)
    elif args.experiment == "none":
        data = cached_data()
        none_option(data, ["j_cos", "q_gap", "q_cos", "s_cos"], ["general", "log_chars", "c_cos", "cover_all"])
        none_option(data, ["j_cos", "q_cos", "s_cos", "a_cos", "cover_q", "cover_a", "lexical"],
                    ["general", "log_chars", "c_cos", "cover_all", "top_j"])
    elif args.experiment == "register_gate":
        register_gate(cached_data(), cols)
    else:
        anchors(cached_data(), cols)


if __name__ == "__main__":
    main()

"""Experiments behind docs/faq.md's round-2 figures: a learned linear adapter over the
embeddings, and a re-ranker with hand-made features (bigrams, interrogatives). Neither ships;
the shipped re-ranker is fitted by scripts/train_faq_decline.py. Tuning sets only.

    .venv/bin/python scripts/experiment_faq_ranking.py adapter "dict(rank=0, lam=0.1, steps=100, lr=0.02)"
    .venv/bin/python scripts/experiment_faq_ranking.py rerank logit,s_rel,bi_q,type_agree,type_clash

Each configuration is judged leaving one business out: the adapter (and the decline model
refitted on the adapted cosines) never sees the business it is judged on. Printed per
business: right entry ranked first / whole decision (own messages) / general and weather
messages. The raw vectors are collected once through real bots into
/tmp/skillbot-ranking-vectors.pkl. Slow (about 3 minutes per adapter configuration).
"""
import asyncio
import os
import pickle
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from core import normalize_text  # noqa: E402
from plugins.faq.decline import ALL_FEATURES, RawScores, pair_features  # noqa: E402
from plugins.faq.engine import answer_text  # noqa: E402
import train_faq_decline as T  # noqa: E402

VECTORS = Path("/tmp/skillbot-ranking-vectors.pkl")
COLS = [ALL_FEATURES.index(f) for f in T.DEFAULT_FEATURES]
THRESH = 0.25
K = 3
GUARD = True


async def collect():

    out = []
    async for name, messages, bot, plugin in T.faq_bots():
        index, dense = plugin.index, plugin.dense
        model = bot.embeddings.models[0]
        entries = list(index.data.entries.values())
        biz = {"name": name, "entry_ids": index.entry_ids,
               "questions": [q for e in entries for q in e.questions],
               "answers": [answer_text(e) for e in entries],
               "Q": dense.question_vectors[model], "q_entries": dense.question_entries,
               "A": dense.answer_vectors[model], "S": dense.sentence_vectors.get(model),
               "s_entries": dense.sentence_entries, "J": dense.joint_vectors[model],
               "G": dense.general_vectors[model], "G_off": dense.general_offsets[model],
               "calibration": plugin.config.general_calibration}
        rows = []
        for text, expected in messages:
            norm = normalize_text(text)
            query = await bot.embeddings.embed_query(norm)
            tokens = bot.segmenter.tokenize(norm)
            raw = plugin.raw_scores(index, dense, norm, tokens, query)
            target = expected[4:] if expected.startswith("faq:") else ""
            label = index.entry_ids.index(target) if target in index.entry_ids else -1
            rows.append({"text": text, "norm": norm, "tokens": tokens, "v": query.vector,
                         "raw": raw, "label": label,
                         "kind": "own" if expected != "other" else "other"})
        biz["rows"] = rows
        out.append(biz)
        print("collected", name, len(rows), file=sys.stderr)
    return out

COLS = [ALL_FEATURES.index(f) for f in T.DEFAULT_FEATURES]


def unit(X):
    return X / np.linalg.norm(X, axis=-1, keepdims=True)


def per_entry_max(C, owners, n_entries):
    out = np.full(C.shape[:-1] + (n_entries,), -1.0)
    for j, e in enumerate(owners):
        out[..., e] = np.maximum(out[..., e], C[..., j])
    return out


def rescore(biz, W=None):
    """Rows with X recomputed under adapter W (None = identity)."""
    f = (lambda X: unit(X)) if W is None else (lambda X: unit(X @ W.T))
    ids = biz["entry_ids"]; pos = {e: i for i, e in enumerate(ids)}; n = len(ids)
    Q, A, J, G = f(biz["Q"]), f(biz["A"]), f(biz["J"]), f(biz["G"])
    q_own = [pos[e] for e in biz["q_entries"]]
    S = f(biz["S"]) if biz["S"] is not None else None
    s_own = [pos[e] for e in biz["s_entries"]]
    closest = np.max(G @ Q.T, axis=1)
    offsets = closest - np.median(closest)
    V = f(np.stack([r["v"] for r in biz["rows"]]))
    qc = per_entry_max(V @ Q.T, q_own, n)
    sc = per_entry_max(V @ S.T, s_own, n) if S is not None else np.full((len(V), n), -1.0)
    ac, jc = V @ A.T, V @ J.T
    gc = V @ G.T
    gen = np.max(gc - biz["calibration"] * offsets, axis=1)
    genraw = np.max(gc, axis=1)
    rows = []
    for i, r in enumerate(biz["rows"]):
        old = r["raw"]
        raw = RawScores(q_cos=qc[i], a_cos=ac[i], lexical=old.lexical, cover_q=old.cover_q,
                        cover_a=old.cover_a, general=float(gen[i]), general_raw=float(genraw[i]),
                        chars=old.chars, s_cos=sc[i], j_cos=jc[i])
        rows.append({**r, "raw": raw, "X": pair_features(raw)})
    return {"name": biz["name"], "rows": rows}


def evaluate(data, held_idx=None):
    """LOBO: per business (first-rank rate of own labelled, decision rate own, decision rate other)."""
    res = {}
    idx = range(len(data)) if held_idx is None else held_idx
    for held in idx:
        model = T.train([b for i, b in enumerate(data) if i != held], COLS)
        first = nfirst = ok = n = oko = no = 0
        for row in data[held]["rows"]:
            best, p = T.decide(row, COLS, *model)
            if row["kind"] == "own":
                n += 1; ok += T.right(row, best, p, THRESH)
                if row["label"] >= 0:
                    nfirst += 1; first += best == row["label"]
            else:
                no += 1; oko += T.right(row, best, p, THRESH)
        res[data[held]["name"]] = (first / nfirst, ok / n, oko / no, nfirst, n)
    return res




# ---------------- adapter training ----------------
def train_adapter(bizs, rank=0, lam=1.0, tau=0.05, steps=300, lr=0.01, use_questions=True, seed=0):
    d = bizs[0]["Q"].shape[1]
    rng = np.random.default_rng(seed)
    if rank:
        U = rng.normal(0, 1e-3, (d, rank)); Vm = rng.normal(0, 1e-3, (d, rank))
        params = [U, Vm]
    else:
        D = np.zeros((d, d)); params = [D]
    m = [np.zeros_like(p) for p in params]; v = [np.zeros_like(p) for p in params]
    # prepare per-business tensors
    prep = []
    for biz in bizs:
        ids = biz["entry_ids"]; pos = {e: i for i, e in enumerate(ids)}
        rows = [r for r in biz["rows"] if r["kind"] == "own" and r["label"] >= 0]
        if not rows:
            continue
        M = np.stack([r["v"] for r in rows]); y = np.array([r["label"] for r in rows])
        q_own = np.array([pos[e] for e in biz["q_entries"]])
        if use_questions:  # each FAQ question as a query for its own entry (its joint passage)
            M = np.vstack([M, biz["Q"]]); y = np.concatenate([y, q_own])
        prep.append((M, y, biz["J"], biz["Q"], q_own, len(ids), len(rows)))
    for step in range(steps):
        W = np.eye(d) + (params[0] @ params[1].T if rank else params[0])
        gW = np.zeros((d, d)); loss = 0.0; total = 0
        for M, y, J, Q, q_own, n, n_msgs in prep:
            Xm = M @ W.T; nm = np.linalg.norm(Xm, axis=1, keepdims=True); Fm = Xm / nm
            Xj = J @ W.T; nj = np.linalg.norm(Xj, axis=1, keepdims=True); Fj = Xj / nj
            Xq = Q @ W.T; nq = np.linalg.norm(Xq, axis=1, keepdims=True); Fq = Xq / nq
            Cj = Fm @ Fj.T
            Cq = Fm @ Fq.T
            # exclude a question matched with itself (questions as queries)
            for i in range(n_msgs, len(M)):
                Cq[i, i - n_msgs] = -1.0
            # per entry best question
            best_q = np.full((len(M), n), -1.0); arg = np.zeros((len(M), n), dtype=int)
            ar = np.arange(len(M))
            for e in range(n):
                cols = np.flatnonzero(q_own == e)
                if len(cols):
                    a = Cq[:, cols].argmax(1); arg[:, e] = cols[a]; best_q[:, e] = Cq[ar, cols[a]]
            S = (Cj + best_q) / tau
            S -= S.max(axis=1, keepdims=True)
            P = np.exp(S); P /= P.sum(axis=1, keepdims=True)
            loss -= np.log(P[np.arange(len(M)), y] + 1e-12).sum()
            dS = P.copy(); dS[np.arange(len(M)), y] -= 1.0; dS /= tau
            dCj = dS
            dCq = np.zeros_like(Cq)
            rows_i = np.repeat(np.arange(len(M)), n); ents = np.tile(np.arange(n), len(M))
            np.add.at(dCq, (rows_i, arg[rows_i, ents]), dS[rows_i, ents] * (best_q[rows_i, ents] > -1))
            dFm = dCj @ Fj + dCq @ Fq
            dFj = dCj.T @ Fm; dFq = dCq.T @ Fm
            for F, X0, nrm, dF in ((Fm, M, nm, dFm), (Fj, J, nj, dFj), (Fq, Q, nq, dFq)):
                dX = (dF - np.sum(dF * F, axis=1, keepdims=True) * F) / nrm
                gW += dX.T @ X0
            total += len(M)
        gW /= total; loss /= total
        if rank:
            U, Vm = params
            grads = [gW @ Vm + lam * (U @ (Vm.T @ Vm)), gW.T @ U + lam * (Vm @ (U.T @ U))]
        else:
            grads = [gW + lam * params[0]]
        for k, (p, g) in enumerate(zip(params, grads)):
            m[k] = 0.9 * m[k] + 0.1 * g; v[k] = 0.999 * v[k] + 0.001 * g * g
            p -= lr * (m[k] / (1 - 0.9 ** (step + 1))) / (np.sqrt(v[k] / (1 - 0.999 ** (step + 1))) + 1e-8)
    return np.eye(d) + (params[0] @ params[1].T if rank else params[0])


def table(res, label):
    f = np.mean([r[0] for r in res.values()]); o = np.mean([r[1] for r in res.values()])
    g = np.mean([r[2] for r in res.values()])
    print(f"{label}: first {f:.3f} own {o:.3f} other {g:.3f} | " +
          " ".join(f"{k}:{v[0]:.2f}/{v[1]:.2f}" for k, v in res.items()), flush=True)
    return f, o, g



QTYPES = {
    "time": ("几点", "什么时候", "啥时候", "多久", "几天", "多长时间", "时间", "几号", "哪天", "几月"),
    "price": ("多少钱", "价格", "费用", "收费", "价位", "贵", "便宜", "钱"),
    "place": ("哪里", "哪儿", "在哪", "地址", "位置", "怎么走", "怎么去"),
    "how": ("怎么", "如何", "咋", "流程", "步骤", "方法"),
}


def qtypes(text):
    return {k for k, words in QTYPES.items() if any(w in text for w in words)}


def bigrams(text):
    t = re.sub(r"\W", "", text)
    return {t[i:i + 2] for i in range(len(t) - 1)} or ({t} if t else set())


def entry_texts(biz):
    from core import normalize_text
    ids = biz["entry_ids"]
    qs = {e: [] for e in ids}
    for e, q in zip(biz["q_entries"], biz["questions"]):
        qs[e].append(normalize_text(q))
    ans = [normalize_text(a) for a in biz["answers"]]
    return [(qs[e], ans[i]) for i, e in enumerate(ids)]


FEATS = ["logit", "q_rel", "j_rel", "s_rel", "a_rel", "cover_q", "cover_a", "bi_q", "bi_a", "type_agree", "type_clash", "lexical"]


def cand_features(row, p, texts):
    raw = row["raw"]
    order = np.argsort(-p)[:K]
    mtypes = qtypes(row["norm"]); mbi = bigrams(row["norm"])
    out = []
    for e in order:
        qs, ans = texts[e]
        qbi = set().union(*(bigrams(q) for q in qs))
        etypes = set().union(*(qtypes(q) for q in qs))
        logit = np.log(p[e] + 1e-9) - np.log(1 - p[e] + 1e-9)
        out.append([logit, raw.q_cos[e] - raw.q_cos[order].max(), raw.j_cos[e] - raw.j_cos[order].max(),
                    raw.s_cos[e] - raw.s_cos[order].max(), raw.a_cos[e] - raw.a_cos[order].max(),
                    raw.cover_q[e], raw.cover_a[e],
                    len(mbi & qbi) / max(1, len(mbi)), len(mbi & bigrams(ans)) / max(1, len(mbi)),
                    float(bool(mtypes & etypes)), float(bool(mtypes) and bool(etypes) and not (mtypes & etypes)),
                    raw.lexical[e]])
    return order, np.array(out)


def fit_clogit(groups, l2=1.0, steps=500, lr=0.1):
    d = groups[0][0].shape[1]
    allX = np.vstack([g[0] for g in groups]); mu, sd = allX.mean(0), allX.std(0) + 1e-9
    w = np.zeros(d)
    for _ in range(steps):
        g = l2 * w / len(groups)
        for X, y in groups:
            Z = (X - mu) / sd
            s = Z @ w; s -= s.max(); pr = np.exp(s); pr /= pr.sum()
            g += (Z.T @ (pr - np.eye(len(X))[y])) / len(groups)
        w -= lr * g
    return w, mu, sd


def main(feats):
    cols_f = [FEATS.index(f) for f in feats]
    base = [rescore(b) for b in DATA]
    texts = [entry_texts(b) for b in DATA]
    # first-stage probabilities, LOBO
    per = []
    for held in range(len(base)):
        model = T.train([b for i, b in enumerate(base) if i != held], COLS)
        items = []
        for row in base[held]["rows"]:
            x = (row["X"][:, COLS] - model[0]) / model[1]
            p = 1 / (1 + np.exp(-np.clip(x @ model[2] + model[3], -30, 30)))
            raw = row["raw"]
            trusted = (raw.lexical >= T.LEXICAL_TRUST) & ((raw.cover_q >= T.SURE_COVERAGE)
                                                          | (raw.q_cos - raw.general >= T.LEXICAL_GENERAL_MARGIN))
            p = 1.0 - (1.0 - p) * (1.0 - np.where(trusted, raw.lexical, 0.0))
            best, pf = T.decide(row, COLS, *model)
            order, F = cand_features(row, p, texts[held])
            items.append((row, best, pf, order, F[:, cols_f], bool(trusted[best]) and GUARD))
        per.append(items)
    res = {}
    for held in range(len(base)):
        groups = []
        for i, items in enumerate(per):
            if i == held:
                continue
            for row, best, pf, order, F, sure in items:
                if row["kind"] == "own" and row["label"] in order:
                    groups.append((F, int(np.flatnonzero(order == row["label"])[0])))
        w, mu, sd = fit_clogit(groups)
        first0 = first1 = n = ok0 = ok1 = nown = 0
        for row, best, pf, order, F, sure in per[held]:
            new = order[int(np.argmax(((F - mu) / sd) @ w))]
            if sure:
                new = best
            # the trusted-lexical fusion can pick outside; keep fused best when it is not in top K
            new = new if best in order else best
            if row["kind"] == "own":
                nown += 1
                ok0 += T.right(row, best, pf, THRESH); ok1 += T.right(row, new, pf, THRESH)
                if row["label"] >= 0:
                    n += 1; first0 += best == row["label"]; first1 += new == row["label"]
        res[base[held]["name"]] = (first0 / n, first1 / n, ok0 / nown, ok1 / nown, w.round(2))
    print(feats)
    for k, v in res.items():
        print(f"  {k}: first {v[0]:.3f} -> {v[1]:.3f}; decision {v[2]:.3f} -> {v[3]:.3f}")
    print("  mean first %.3f -> %.3f, decision %.3f -> %.3f" % tuple(np.mean([v[i] for v in res.values()]) for i in range(4)), flush=True)




def load_data():
    if not VECTORS.exists():
        VECTORS.write_bytes(pickle.dumps(asyncio.run(collect())))
    return pickle.loads(VECTORS.read_bytes())


DATA = load_data()

if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "adapter":
        base = [rescore(b) for b in DATA]
        table(evaluate(base), "baseline")
        for cfg in [eval(a) for a in args]:
            data = []
            for held in range(len(DATA)):
                W = train_adapter([b for i, b in enumerate(DATA) if i != held], **cfg)
                data.append([rescore(b, W) for b in DATA])
            res = {}
            for held in range(len(DATA)):
                res.update(evaluate(data[held], [held]))
            table(res, str(cfg))
    else:
        K = int(os.environ.get("K", 3))
        for arg in args:
            main(arg.split(","))

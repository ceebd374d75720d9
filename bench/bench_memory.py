#!/usr/bin/env python3
"""Memory held per 10,000 active conversations, with the memory and the Redis state backends.

    .venv/bin/python bench/bench_memory.py               # 10,000 users; Redis rows need redis-server

Two measurements per backend:

- ``store``: the conversation store alone, 10,000 users x 10 turns (5 exchanges; the default
  ``conversation.max_turns``) of realistic Chinese text: customer questions (12-40 characters) and
  answers (60-300 characters) built from the demo FAQ, each a distinct string as real messages are.
- ``bot``: everything the bot keeps after 10,000 users sent 3 FAQ messages each through the
  gateway path (coordinator, answer records kept for ``delivery.record_ttl``, rate-limit buckets,
  history, caches), as bench_pipeline.py drives it.

Memory backend: Python allocations (tracemalloc) and the process RSS growth. Redis backend:
``INFO memory`` used_memory growth of a private redis-server on a free port (started and stopped
here), plus the bot process's own RSS growth.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import shutil
import subprocess
import sys
import tomllib
import tracemalloc

from common import (
    BENCH_DIR,
    ROOT,
    RedisServer,
    md_table,
    report_header,
    rss_kib,
    signer,
)

#: Messages in flight at once (the HTTP benchmark's 32 connections).
CONCURRENCY = 32
FAQ_QUESTIONS = ["你们几点营业", "怎么退货", "客服电话多少", "发货要多久", "可以开发票吗", "积分怎么用"]


def corpus() -> tuple[list[str], list[str]]:
    """Questions and answers of the demo FAQ (plugins/faq/data/faq.toml) as sample texts."""
    data = tomllib.loads((ROOT / "plugins" / "faq" / "data" / "faq.toml").read_text(encoding="utf-8"))
    questions = [q for e in data.get("entry", []) for q in e.get("questions", [])]
    answers = [e["answer"].strip() for e in data.get("entry", []) if e.get("answer")]
    return questions, answers


def conversation_texts(users: int, turns: int, seed: int = 7):
    """(user, [(role, text)...]) with distinct strings, question 12-40 chars, answer 60-300 chars."""
    questions, answers = corpus()
    rng = random.Random(seed)
    for u in range(users):
        texts = []
        for t in range(turns // 2):
            q = rng.choice(questions) + f"，我的订单号是{rng.randrange(10**11, 10**12)}"
            q = q[:rng.randint(12, 40)]
            a = rng.choice(answers)
            while len(a) < 60:
                a += rng.choice(answers)
            a = a[:rng.randint(60, 300)] + f"（工单{u}-{t}）"
            texts += [("user", q), ("assistant", a)]
        yield f"o_mem_{u:06d}", texts


def settings(backend: str, redis_url: str = ""):
    from core.settings import load_settings

    overrides: dict = {"state": {"backend": backend}}
    if redis_url:
        overrides["state"].update(redis_url=redis_url, key_prefix="skillbot-membench:")
    return load_settings(BENCH_DIR / "settings.bench.toml", overrides)


async def fill_store(store, users: int, turns: int) -> None:
    from core.state.conversation import Turn

    batch = []
    for user, texts in conversation_texts(users, turns):
        batch.append(append_all(store, user, [Turn(role, text, plugin="faq" if role == "assistant" else None,
                                                   intent="faq" if role == "assistant" else None)
                                              for role, text in texts]))
        if len(batch) >= CONCURRENCY:
            await asyncio.gather(*batch)
            batch = []
    await asyncio.gather(*batch)


async def append_all(store, user: str, turns) -> None:
    for i in range(0, len(turns), 2):  # one exchange (question, answer) at a time, as the bot does
        await store.append(user, *turns[i:i + 2])


async def run_bot(bot, users: int, per_user: int) -> None:
    from core.access.messages import build_message
    from core.app import build_webhook
    from core.access.wechat_xml import parse_xml
    from core.operations.wechat_client import text_xml

    gateway = build_webhook(bot)
    sign = signer("plain")

    async def one(i: int, k: int) -> None:
        request = sign.sign(text_xml(FAQ_QUESTIONS[(i + k) % len(FAQ_QUESTIONS)], from_user=f"o_mem_{i:06d}"))
        gateway.check_signature(request.params)
        message = build_message(parse_xml(request.body))
        outcome = await gateway.delivery.on_try(message, "mem", connected=lambda: True)
        if outcome.payload is None or outcome.payload.get("plugin") != "faq":
            raise SystemExit(f"message of user {i} not answered by the FAQ: {outcome}")

    for k in range(per_user):
        for start in range(0, users, CONCURRENCY):
            await asyncio.gather(*(one(i, k) for i in range(start, min(users, start + CONCURRENCY))))
    await gateway.delivery.drain()
    if bot.state.health is not None and (bot.state.status != "up" or bot.state.health.changes != 1):
        raise SystemExit("Redis was reported unreachable during the run (see the log): the figures "
                         "would mix backends")


async def traced_growth(fn, trace: bool) -> int:
    """Bytes ``await fn()`` leaves allocated: tracemalloc's count if ``trace``, else RSS growth."""
    gc.collect()
    if trace:
        tracemalloc.start()
        before, _ = tracemalloc.get_traced_memory()
    else:
        before = rss_kib()[0] * 1024
    await fn()
    gc.collect()
    if trace:
        after, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    else:
        after = rss_kib()[0] * 1024
    return after - before


async def measure_case(case: str, trace: bool, users: int, turns: int, per_user: int) -> dict:
    """One measurement, in this (fresh) process: {"grown": bytes, "redis": bytes or None}."""
    from core.processing.bot import Bot
    from core.state.stores import build_state

    backend, what = case.split("-")
    redis = RedisServer().start() if backend == "redis" else None
    try:
        used = (lambda: int(redis.info_memory()["used_memory"])) if redis else (lambda: 0)
        url = redis.url if redis else ""
        if what == "store":
            state = build_state(settings(backend, url))
            await state.start()
            try:
                base = used()
                grown = await traced_growth(lambda: fill_store(state.conversations, users, turns), trace)
                if state.health is not None and (state.status != "up" or state.health.changes != 1):
                    raise SystemExit("Redis was reported unreachable while filling the store")
                return {"grown": grown, "redis": used() - base if redis else None}
            finally:
                await state.stop()
        # Start-up (jieba's dictionary, plugins) is not conversation memory: start, then measure.
        bot = Bot(settings(backend, url))
        await bot.start()
        try:
            if redis and bot.state.status != "up":
                raise SystemExit("the bot could not reach the bench's redis-server")
            base = used()
            grown = await traced_growth(lambda: run_bot(bot, users, per_user), trace)
            return {"grown": grown, "redis": used() - base if redis else None}
        finally:
            await bot.stop()
    finally:
        if redis is not None:
            redis.stop()


def run_case(case: str, trace: bool, args: argparse.Namespace) -> dict:
    """Run one measurement in a fresh process, so no earlier case's freed memory is reused."""
    argv = [sys.executable, __file__, "--case", case, "--users", str(args.users), "--turns", str(args.turns),
            "--messages", str(args.messages)] + (["--trace"] if trace else [])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("MEMJSON "):
            return json.loads(line[len("MEMJSON "):])
    raise RuntimeError(f"{case} failed ({out.returncode}): {out.stderr[-3000:]}")


def mib10k(value, per: float) -> str:
    return f"{value * per / 2**20:.1f}" if isinstance(value, int) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description="memory per 10,000 active conversations")
    parser.add_argument("--users", type=int, default=10000, help="active users (default 10000)")
    parser.add_argument("--turns", type=int, default=10, help="turns per user in the store case (default 10)")
    parser.add_argument("--messages", type=int, default=3, help="FAQ messages per user in the bot case (default 3)")
    parser.add_argument("--backends", default="memory,redis", help="memory,redis (default both)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import logging

    logging.getLogger().setLevel(logging.WARNING)
    if args.case:  # one measurement, in a child process
        result = asyncio.run(measure_case(args.case, args.trace, args.users, args.turns, args.messages))
        print("MEMJSON " + json.dumps(result), flush=True)
        return
    rows = []
    for backend in args.backends.split(","):
        if backend == "redis" and shutil.which("redis-server") is None:
            print("redis rows skipped: redis-server is not installed", file=sys.stderr)
            continue
        for what in ("store", "bot"):
            case = f"{backend}-{what}"
            label = (f"store: {args.users} users x {args.turns} turns" if what == "store"
                     else f"bot: {args.users} users x {args.messages} FAQ messages")
            rss = run_case(case, False, args)
            traced = run_case(case, True, args)
            print(f"{case}: {rss} {traced}", file=sys.stderr)
            rows.append([backend, label, traced["grown"], rss["grown"],
                         rss["redis"] if rss["redis"] is not None else "-"])
    per = 10000 / args.users
    lines = report_header("Memory per 10,000 active conversations")
    lines += [f"- {args.users} users, figures scaled to 10,000; store = the conversation store only "
              f"({args.turns} turns each, Chinese text); bot = everything kept after {args.messages} FAQ "
              "messages per user through the gateway path (answer records within record_ttl, "
              "rate-limit buckets, history, caches)",
              "- traced = Python allocations still held by the bot's process (tracemalloc); RSS = process "
              "growth (a separate, untraced run); Redis = used_memory growth of a private redis-server; "
              "every figure from a fresh process. KiB per user: traced (memory backend), Redis (Redis "
              "store), Redis + traced (Redis bot: the process keeps a local copy of answer records)", ""]
    table = []
    for backend, case, traced, rss, redis_bytes in rows:
        main_figure = redis_bytes + traced if backend == "redis" and "bot" in case else (
            redis_bytes if backend == "redis" else traced)
        table.append([backend, case, mib10k(traced, per), mib10k(rss, per), mib10k(redis_bytes, per),
                      f"{main_figure / args.users / 1024:.1f}"])
    lines += md_table(["backend", "case", "traced MiB / 10k", "RSS MiB / 10k", "Redis MiB / 10k",
                       "KiB per user"], table)
    print("\n".join(lines))


if __name__ == "__main__":
    os.chdir(ROOT)
    main()

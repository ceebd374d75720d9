#!/usr/bin/env python3
"""Time per pipeline stage, in-process, on the FAQ path: p50 and p99 in microseconds.

    .venv/bin/python bench/bench_pipeline.py             # 5,000 FAQ messages, plain and safe mode
    .venv/bin/python bench/bench_pipeline.py --stream paraphrase --log-level INFO --modes plain
        # the demo FAQ's customer phrasings with Zipf repetition (bench_werobot.py's stream), the
        # per-message log line written to a file as shipped

Each message goes through the same pieces, in the same order, as a webhook POST does in
core/access/webhook.py, minus the socket: signature check, XML parsing, decryption (safe mode), message
building, the delivery coordinator running the bot's work (rate limit, pending answers, history,
then the pipeline stages inbound filter / routing / skill / fallback / outbound filter and the
record of the exchange) and rendering (plus encryption and signing in safe mode).

Stages:
  verify   signature (and msg_signature) check     parse    XML parsing and building the message
  decrypt  AES decryption (safe mode)              filter   inbound filter (plugin "filter")
  route    tokenizing and intent routing            skill    the chosen skill (the FAQ plugin)
  outbound outbound filter                          state    history, rate limit, answer record,
  render   reply XML (and encryption, safe mode)             records and the coordinator
  total    the whole in-process path, end to end
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import sys
import time
from collections import defaultdict

from common import BENCH_DIR, md_table, percentile, report_header, signer

FAQ_QUESTIONS = ["你们几点营业", "怎么退货", "客服电话多少", "发货要多久", "可以开发票吗", "积分怎么用"]
STAGES = ["verify", "parse", "decrypt", "filter", "route", "skill", "outbound", "state", "render", "total"]


async def measure(mode: str, count: int, users: int, profile: cProfile.Profile | None,
                  stream: str = "faq") -> dict[str, list[float]]:
    from core.access.crypto import verify_signature
    from core.access.messages import build_message
    from core.access.replies import SuccessReply
    from core.access.replies import Answer
    from core.app import build_webhook
    from core.access.wechat_xml import parse_xml
    from core.operations.wechat_client import text_xml
    from core.processing.bot import Bot
    from core.settings import load_settings

    name = "settings.bench.safe.toml" if mode == "safe" else "settings.bench.toml"
    bot = Bot(load_settings(BENCH_DIR / name))
    await bot.start()
    gateway = build_webhook(bot)
    sign = signer(mode)
    # Prepared before timing: signed (and encrypted) requests, each with its own MsgId.
    if stream == "paraphrase":
        from bench_http import paraphrase_stream

        texts = paraphrase_stream(count + 500, 0)
    else:
        texts = [FAQ_QUESTIONS[i % len(FAQ_QUESTIONS)] for i in range(count + 500)]
    requests = [sign.sign(text_xml(text, from_user=f"o_p_{i % users:05d}")) for i, text in enumerate(texts)]
    timings: dict[str, list[float]] = defaultdict(list)
    perf = time.perf_counter
    gc_started: list[float] = []

    def gc_watch(phase: str, info: dict) -> None:  # full (generation 2) collections and their pauses
        if info["generation"] != 2:
            return
        if phase == "start":
            gc_started.append(perf())
        elif gc_started and len(gc_started) > len(timings["gc2_ms"]):
            timings["gc2_ms"].append((perf() - gc_started[-1]) * 1000)

    gc.callbacks.append(gc_watch)
    try:
        for n, request in enumerate(requests):
            warm = n < 500  # the first 500 warm caches and code paths; not counted
            if profile is not None and n == 500:
                profile.enable()
            query, body = request.params, request.body
            t0 = perf()
            gateway.check_signature(query)
            t1 = perf()
            outer = parse_xml(body)
            t2 = perf()
            verify = t1 - t0
            decrypt = 0.0
            parse = t2 - t1
            if mode == "safe":
                encrypt = outer["Encrypt"]
                if not verify_signature(query["msg_signature"], gateway.token, query["timestamp"],
                                        query["nonce"], encrypt):
                    raise SystemExit("bad msg_signature in the bench's own requests")
                t3 = perf()
                inner = gateway.crypto.decrypt(encrypt)
                t4 = perf()
                fields = parse_xml(inner.encode("utf-8"))
                t5 = perf()
                verify += t3 - t2
                decrypt = t4 - t3
                parse += t5 - t4
            else:
                fields = outer
                t5 = perf()
            message = build_message(fields)
            t6 = perf()
            parse += t6 - t5
            outcome = await gateway.delivery.on_try(message, "bench", connected=lambda: True)
            t7 = perf()
            if outcome.payload is None:
                raise SystemExit(f"message {n} was not answered on its first try: {outcome}")
            reply = await gateway.delivery.passive_reply(message, Answer.from_record(outcome.payload))
            if isinstance(reply, SuccessReply) or (stream == "faq" and reply.plugin != "faq"):
                raise SystemExit(f"message {n} was answered by {reply.plugin!r}, not the FAQ plugin")
            xml = gateway.renderer.render(reply, to_user=message.from_user, from_user=message.to_user)
            if mode == "safe":
                ts, nonce = str(int(time.time())), str(n)
                cipher = gateway.crypto.encrypt(xml)
                xml = gateway.renderer.render_encrypted(cipher, gateway.crypto.sign(ts, nonce, cipher), ts, nonce)
            t8 = perf()
            if warm:
                continue
            stages = outcome.payload["explain"]["timings_ms"]
            in_pipeline = 0.0
            for stage, key in (("filter", "inbound"), ("route", "route"), ("skill", "skill"),
                               ("outbound", "outbound")):
                value = stages.get(key, 0.0) / 1000
                in_pipeline += value + (stages.get("fallback", 0.0) / 1000 if key == "skill" else 0.0)
                timings[stage].append(value * 1e6)
            timings["verify"].append(verify * 1e6)
            timings["parse"].append(parse * 1e6)
            timings["decrypt"].append(decrypt * 1e6)
            timings["state"].append(max(0.0, (t7 - t6) - in_pipeline) * 1e6)
            timings["render"].append((t8 - t7) * 1e6)
            timings["total"].append((t8 - t0) * 1e6)
    finally:
        gc.callbacks.remove(gc_watch)
        if profile is not None:
            profile.disable()
        await gateway.delivery.drain()
        await bot.stop()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description="per-stage pipeline timing on the FAQ path")
    parser.add_argument("--messages", type=int, default=5000, help="timed messages per mode (default 5000)")
    parser.add_argument("--users", type=int, default=1000, help="distinct users the messages come from (default 1000)")
    parser.add_argument("--modes", default="plain,safe", help="plain,safe (default both)")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of the plain run")
    parser.add_argument("--stream", choices=["faq", "paraphrase"], default="faq",
                        help="faq: six stored FAQ questions in turn (default); paraphrase: the demo FAQ's "
                             "customer phrasings with Zipf repetition (tests/data/utterances.tsv)")
    parser.add_argument("--log-level", default="WARNING",
                        help="root log level (default WARNING: no per-message line); INFO writes the "
                             "per-message log line to a temporary file, as a shipped worker does")
    args = parser.parse_args()
    import logging
    import tempfile

    level = getattr(logging, args.log_level.upper())
    logging.getLogger().setLevel(level)
    if level <= logging.INFO:
        log_file = tempfile.NamedTemporaryFile(prefix="bench-pipeline-", suffix=".log", delete=False)
        from core.operations.logs import make_handler

        # run.py's handler (escaped text lines), writing to a file as `run.py > log` does
        logging.getLogger().handlers[:] = [make_handler(stream=open(log_file.name, "w", encoding="utf-8"))]
        logging.getLogger("jieba").setLevel(logging.WARNING)
    results = {}
    for mode in args.modes.split(","):
        profile = cProfile.Profile() if args.profile else None
        results[mode] = asyncio.run(measure(mode, args.messages, args.users, profile, args.stream))
        if profile is not None:
            pstats.Stats(profile, stream=sys.stderr).sort_stats(os.environ.get("BENCH_SORT", "cumulative")).print_stats(int(os.environ.get("BENCH_TOP", "45")))
    lines = report_header("In-process pipeline, per stage (FAQ path)")
    what = ("the demo FAQ's customer phrasings with Zipf repetition" if args.stream == "paraphrase"
            else "stored FAQ questions")
    lines += [f"- {args.messages} messages per mode ({what}) from {args.users} users, after 500 warm-up "
              f"messages; log level {args.log_level.upper()}; microseconds; the whole gateway path minus the "
              "socket (see bench/bench_pipeline.py)", ""]
    headers = ["stage"]
    for mode in results:
        headers += [f"{mode} p50 µs", f"{mode} p99 µs"]
    rows = []
    for stage in STAGES:
        row = [stage]
        for mode in results:
            values = results[mode][stage]
            row += [f"{percentile(values, 50):.0f}", f"{percentile(values, 99):.0f}"]
        rows.append(row)
    lines += md_table(headers, rows)
    lines.append("")
    for mode in results:
        total = results[mode]["total"]
        p99 = percentile(total, 99)
        pauses = results[mode]["gc2_ms"]
        lines.append(f"- {mode}: total p99 {p99 / 1000:.2f} ms (aim: under 2 ms on the FAQ path) -> "
                     f"{'met' if p99 < 2000 else 'NOT met'}; p99.9 {percentile(total, 99.9) / 1000:.2f} ms, "
                     f"max {max(total) / 1000:.1f} ms; full garbage collections during the run: {len(pauses)}"
                     + (f", longest {max(pauses):.0f} ms" if pauses else ""))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

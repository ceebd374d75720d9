#!/usr/bin/env python3
"""Redis-backed worker vs memory-backed worker on the same load, and the Redis calls per message.

    .venv/bin/python bench/bench_redis.py                      # this checkout
    .venv/bin/python bench/bench_redis.py --root /tmp/before   # another checkout (git archive of main)

In one run, alternating, at the same concurrency (bench/loadgen.py, or wrk when installed):

- ``memory``:   one worker, ``[state] backend = "memory"`` (bench/settings.bench.toml)
- ``redis``:    one worker, the same settings with ``backend = "redis"`` on a private redis-server
- ``redis x2``: ``run.py --workers 2`` on that Redis (SO_REUSEPORT; on a 2-core machine shared with
  the load generator)

FAQ messages as in bench_http.py (each with its own MsgId). Redis's ``total_reads_processed`` and
``total_commands_processed`` over each Redis run give round trips and commands per message under
load; bench/redis_calls.py gives them for one message at a time, counted in the bot's process.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import redis

from bench_http import load, make_requests
from common import BENCH_DIR, ROOT, RedisServer, Server, free_port, md_table, report_header


def server_stats(url: str) -> dict[str, int]:
    client = redis.Redis.from_url(url)
    try:
        info = client.info("stats")
        return {"reads": int(info["total_reads_processed"]), "commands": int(info["total_commands_processed"])}
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Redis worker vs memory worker throughput")
    parser.add_argument("--root", default=str(ROOT), help="checkout whose bot is measured (default: this one)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of each timed run (default 8)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up before each (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (default 32)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over all targets (default 2)")
    parser.add_argument("--targets", default="memory,redis,redis_x2", help="subset of memory,redis,redis_x2")
    parser.add_argument("--tool", choices=["auto", "wrk", "loadgen"], default="auto")
    args = parser.parse_args()
    root = Path(args.root).resolve()
    tool = ("wrk" if shutil.which("wrk") else "loadgen") if args.tool == "auto" else args.tool
    targets = [t for t in args.targets.split(",") if t]

    workdir = Path(tempfile.mkdtemp(prefix="skillbot-bench-redis-"))
    store = RedisServer().start()
    base = (BENCH_DIR / "settings.bench.toml").read_text(encoding="utf-8")
    memory_toml = workdir / "memory.toml"
    memory_toml.write_text(base, encoding="utf-8")
    redis_toml = workdir / "redis.toml"
    redis_toml.write_text(base + f'\n[state]\nbackend = "redis"\nredis_url = "{store.url}"\n', encoding="utf-8")

    def bot(settings: Path, port: int, workers: int = 1) -> Server:
        argv = [sys.executable, str(root / "run.py"), "--settings", str(settings), "--host", "127.0.0.1",
                "--port", str(port)] + (["--workers", str(workers)] if workers > 1 else [])
        return Server(argv, f"http://127.0.0.1:{port}/healthz", workdir / f"bot-{port}.log", cwd=root)

    ports = {t: free_port() for t in targets}
    servers = {"memory": lambda: bot(memory_toml, ports["memory"]),
               "redis": lambda: bot(redis_toml, ports["redis"]),
               "redis_x2": lambda: bot(redis_toml, ports["redis_x2"], workers=2)}
    calls = subprocess.run([sys.executable, str(BENCH_DIR / "redis_calls.py"), "--redis-url", store.url,
                            "--root", str(root), "-n", "200"], capture_output=True, text=True, cwd=root, check=False)
    one_by_one = next((json.loads(line[10:]) for line in calls.stdout.splitlines() if line.startswith("BENCHJSON ")),
                      None)
    if one_by_one is None:
        raise SystemExit(f"bench/redis_calls.py failed: {calls.stdout[-1500:]} {calls.stderr[-1500:]}")

    results: dict[str, list[dict]] = {t: [] for t in targets}
    counter = 0
    try:
        for round_no in range(args.rounds):
            for target in targets:
                server = servers[target]().start()
                try:
                    warm, timed = workdir / "warm.txt", workdir / "timed.txt"
                    make_requests(warm, "text", "plain", 6000, counter)
                    counter += 6000
                    load(tool, ports[target], warm, args.connections, args.warmup, 1)
                    n = int(4000 * args.duration) + 2000
                    make_requests(timed, "text", "plain", n, counter)
                    counter += n
                    before = server_stats(store.url)
                    result = load(tool, ports[target], timed, args.connections, args.duration, 1)
                    after = server_stats(store.url)
                finally:
                    server.stop()
                if target != "memory" and result["requests"]:
                    result["rt_per_msg"] = (after["reads"] - before["reads"]) / result["requests"]
                    result["cmd_per_msg"] = (after["commands"] - before["commands"]) / result["requests"]
                results[target].append(result)
                print(f"round {round_no + 1} {target:8s}: {result['rps']:7.0f} req/s p50 "
                      f"{result['p50_us'] / 1000:6.2f} ms answered {result['answered']}/{result['requests']}",
                      file=sys.stderr)
    finally:
        store.stop()

    def med(target: str, key: str) -> float:
        return statistics.median(r[key] for r in results[target])

    lines = report_header("Redis worker vs memory worker (FAQ messages)")
    lines += [f"- Checkout measured: `{root}`",
              f"- Load: {tool}, {args.connections} connections, {args.warmup:g} s warm-up + {args.duration:g} s "
              f"per run, {args.rounds} round(s) alternating {', '.join(targets)}; private redis-server; "
              "figures are medians over rounds", ""]
    rows = []
    for t in targets:
        rows.append([t, f"{med(t, 'rps'):.0f}", f"{med(t, 'p50_us') / 1000:.2f}", f"{med(t, 'p99_us') / 1000:.2f}",
                     f"{sum(r['answered'] for r in results[t])}/{sum(r['requests'] for r in results[t])}",
                     " / ".join(str(sum(r[k] for r in results[t])) for k in ("success_only", "other"))
                     + f" / {sum(r['connect_errors'] + r['read_errors'] + r['write_errors'] + r['timeouts'] for r in results[t])}",
                     f"{med(t, 'rt_per_msg'):.2f}" if t != "memory" else "-",
                     f"{med(t, 'cmd_per_msg'):.1f}" if t != "memory" else "-"])
    lines += md_table(["target", "req/s", "p50 ms", "p99 ms", "answered", "success only / other / errors",
                       "Redis reads / msg (load)", "Redis commands / msg (load)"], rows)
    lines.append("")
    m = one_by_one["messages"]
    lines.append(f"- One message at a time (bench/redis_calls.py, {m} FAQ messages, in-process): "
                 f"{one_by_one['round_trips'] / m:.1f} round trips carrying {one_by_one['sent'] / m:.1f} commands "
                 f"per message; Redis ran {one_by_one['commands'] / m:.1f} commands per message (those "
                 "inside Lua scripts and MULTI/EXEC counted)")
    if "memory" in results:
        for t in ("redis", "redis_x2"):
            if t in results:
                per_round = [r["rps"] / m["rps"] for r, m in zip(results[t], results["memory"])]
                lines.append(f"- {t} / memory throughput: {med(t, 'rps') / med('memory', 'rps'):.2f}x of the "
                             f"medians; per round (runs next to each other) "
                             f"{', '.join(f'{x:.2f}' for x in per_round)}x, median {statistics.median(per_round):.2f}x")
    lines.append("Per round: " + "; ".join(
        f"{t} " + "/".join(f"{r['rps']:.0f}" for r in results[t]) for t in targets) + " req/s")
    print("\n".join(lines))
    if all(r["answered"] == r["requests"] for rs in results.values() for r in rs):
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"- Not every request was answered: the bots' logs are kept in {workdir}", file=sys.stderr)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()

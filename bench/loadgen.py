#!/usr/bin/env python3
"""A small closed-loop HTTP load generator, used by bench_http.py when wrk is not installed.

Same input and output as bench/wrk_post.lua: a file of precomputed requests ("<path?query>\\t<body>"
per line), C connections each sending the next request as soon as the previous answer is read,
for D seconds; prints one ``BENCHJSON {...}`` line. Run it in its own process, apart from the
server it measures.

    .venv/bin/python bench/loadgen.py --url http://127.0.0.1:8080 --file reqs.txt -c 32 -d 10
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


async def main_async(args: argparse.Namespace) -> dict:
    requests: list[tuple[str, bytes]] = []
    with open(args.file, "rb") as fh:
        for line in fh:
            target, _, body = line.rstrip(b"\n").partition(b"\t")
            requests.append((target.decode(), body))
    prefix = args.prefix.encode()
    counts = {"answered": 0, "success_only": 0, "other": 0, "reused": 0, "errors": 0, "bytes": 0}
    latencies: list[float] = []
    next_index = 0
    connector = aiohttp.TCPConnector(limit=args.connections)
    started = time.perf_counter()
    deadline = started + args.duration
    async with aiohttp.ClientSession(base_url=args.url, connector=connector,
                                     headers={"Content-Type": "text/xml"}) as session:

        async def worker() -> None:
            nonlocal next_index
            while time.perf_counter() < deadline:
                target, body = requests[next_index % len(requests)]
                if next_index >= len(requests):
                    counts["reused"] += 1
                next_index += 1
                t0 = time.perf_counter()
                try:
                    async with session.post(target, data=body) as response:
                        data = await response.read()
                        status = response.status
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    counts["errors"] += 1
                    continue
                latencies.append(time.perf_counter() - t0)
                counts["bytes"] += len(data)
                if status == 200 and data.startswith(prefix):
                    counts["answered"] += 1
                elif status == 200 and data == b"success":
                    counts["success_only"] += 1
                else:
                    counts["other"] += 1

        await asyncio.gather(*(worker() for _ in range(args.connections)))
    duration = time.perf_counter() - started
    us = [x * 1e6 for x in latencies]
    return {"requests": len(latencies), "duration_us": int(duration * 1e6), "bytes": counts["bytes"],
            "connect_errors": counts["errors"], "read_errors": 0, "write_errors": 0, "status_errors": 0,
            "timeouts": 0, "p50_us": int(percentile(us, 50)), "p90_us": int(percentile(us, 90)),
            "p99_us": int(percentile(us, 99)), "max_us": int(max(us, default=0)),
            "answered": counts["answered"], "success_only": counts["success_only"],
            "other": counts["other"], "reused": counts["reused"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="server root, e.g. http://127.0.0.1:8080")
    parser.add_argument("--file", required=True, help="precomputed requests, one per line")
    parser.add_argument("-c", "--connections", type=int, default=32)
    parser.add_argument("-d", "--duration", type=float, default=10.0)
    parser.add_argument("--prefix", default="<xml>", help="a 200 body starting with this counts as answered")
    args = parser.parse_args()
    print("BENCHJSON " + json.dumps(asyncio.run(main_async(args))), flush=True)


if __name__ == "__main__":
    main()

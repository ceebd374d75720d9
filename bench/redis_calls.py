#!/usr/bin/env python3
"""Redis commands and round trips per message on the FAQ path, counted in one bot process.

    .venv/bin/python bench/redis_calls.py --redis-url redis://127.0.0.1:PORT/0 [--root CHECKOUT] [-n 200]

Runs the bot of ``--root`` (default: this checkout) in this process with the Redis backend, on a
real socket, and posts ``-n`` signed FAQ messages one after another (each with its own MsgId; users
rotate so most have history). Round trips are counted on the client, as writes to a Redis
connection (``Connection.send_packed_command``: a single command or a whole pipeline, the pub/sub
connection excluded), with the commands in them; commands run by the server, as the growth of ``INFO commandstats`` (a MULTI/EXEC
pipeline counts MULTI and EXEC too; commands run inside a Lua script count too). Prints one
``BENCHJSON {...}`` line. bench/bench_redis.py runs it before its throughput runs.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def total_calls(client) -> tuple[int, dict[str, int]]:
    stats = client.info("commandstats")
    per = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    per.pop("info", None)
    per.pop("config|resetstat", None)
    return sum(per.values()), per


async def main_async(args: argparse.Namespace) -> dict:
    import aiohttp
    import redis
    from aiohttp import web
    from redis.asyncio.connection import Connection

    sys.path.insert(0, str(BENCH_DIR))
    from common import query_string, signer

    import core
    from core.app import create_app
    from core.settings import load_settings

    writes = {"n": 0, "commands": 0}
    original = Connection.send_packed_command

    async def counted(self, command, check_health=True):
        # The result notifier's pub/sub connection only listens; its writes are its own (un)subscribe.
        if not getattr(self, "_skillbot_pubsub", False):
            writes["n"] += 1
        return await original(self, command, check_health)

    Connection.send_packed_command = counted
    original_pack = Connection.pack_command

    def counted_pack(self, *args):
        if not getattr(self, "_skillbot_pubsub", False):
            writes["commands"] += 1
        return original_pack(self, *args)

    Connection.pack_command = counted_pack
    try:  # the auto-pipeline packs with hiredis (this checkout); earlier code with redis-py
        import hiredis

        original_hiredis_pack = hiredis.pack_command

        def counted_hiredis_pack(command):
            writes["commands"] += 1
            return original_hiredis_pack(command)

        hiredis.pack_command = counted_hiredis_pack
    except ImportError:
        pass
    import redis.asyncio.client as aclient
    original_pubsub_connect = aclient.PubSub.connect

    async def mark_pubsub(self):
        await original_pubsub_connect(self)
        if self.connection is not None:
            self.connection._skillbot_pubsub = True

    aclient.PubSub.connect = mark_pubsub

    sync = redis.Redis.from_url(args.redis_url, decode_responses=True)
    sync.flushdb()
    bench_settings = (BENCH_DIR / "settings.bench.toml").read_text(encoding="utf-8")
    path = Path(tempfile.mkdtemp(prefix="skillbot-redis-calls-")) / "settings.toml"
    path.write_text(bench_settings + f'\n[state]\nbackend = "redis"\nredis_url = "{args.redis_url}"\n',
                    encoding="utf-8")
    app = create_app(load_settings(path))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    from bench_http import FAQ_QUESTIONS  # the same questions as the HTTP bench
    from core.operations.wechat_client import text_xml

    sign = signer("plain")
    answered = 0
    async with aiohttp.ClientSession() as session:
        async def post(i: int) -> str:
            request = sign.sign(text_xml(FAQ_QUESTIONS[i % len(FAQ_QUESTIONS)], from_user=f"o_calls_{i % 20:03d}"))
            url = f"http://127.0.0.1:{port}/wechat?{query_string(request.params)}"
            async with session.post(url, data=request.body) as response:
                return await response.text()

        for i in range(20):  # warm-up: caches filled, scripts loaded, pool connected
            await post(i)
        await asyncio.sleep(0.2)
        sync.config_resetstat()
        before_writes, before_sent = writes["n"], writes["commands"]
        for i in range(20, 20 + args.n):
            if "<xml>" in await post(i):
                answered += 1
        await asyncio.sleep(0.2)  # writes after the reply (answer records) land
        round_trips = writes["n"] - before_writes
        sent = writes["commands"] - before_sent
        commands, per = total_calls(sync)
    await runner.cleanup()
    sync.close()
    return {"core": str(Path(core.__file__).parent), "messages": args.n, "answered": answered, "round_trips": round_trips, "sent": sent, "commands": commands,
            "per_command": per}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", required=True, help="a Redis database this run may flush")
    parser.add_argument("--root", default=str(BENCH_DIR.parent), help="checkout whose bot is counted")
    parser.add_argument("-n", type=int, default=200, help="messages counted (default 200)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.root).resolve()))
    import core.app  # noqa: F401  (now, from --root: bench/common.py puts this checkout on the path)
    import plugins  # noqa: F401  (likewise)

    result = asyncio.run(main_async(args))
    print("BENCHJSON " + json.dumps(result))


if __name__ == "__main__":
    main()

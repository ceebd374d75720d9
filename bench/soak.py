#!/usr/bin/env python3
"""Soak test: sustained load for minutes with faults injected; every message must be answered.

    .venv/bin/python bench/soak.py                  # 3 minutes at 50 messages/s
    .venv/bin/python bench/soak.py --minutes 10 --rate 30

The whole bot runs in its own process (``python run.py``, one worker) with the Redis state backend
on a private redis-server this script starts, the real LLM plugin against the OpenAI-compatible
stand-in and the real weather plugin against the weather stand-in (Open-Meteo wire format). A load
of ``--rate`` messages per second (FAQ questions 40%, weather questions 20%, chit-chat for the
model 30%, follow/subscribe events 10%) comes from 3,000 simulated users, each sending one message
at a time, delivered as WeChat does (three tries, 5 s each: core.operations.wechat_client.deliver_like_wechat),
in real time with the shipped delivery settings. The run is split into six equal phases:

  1 normal          everything up; model latency lognormal, median 1.5 s (0.3-8 s)
  2 model timeouts  the model answers after 10 s, past the provider timeout (4 s)
  3 model 500s      half the model calls get an HTTP 500 (OpenAI's error body)
  4 weather down    the weather stand-in's port is closed (connection refused)
  5 redis down      redis-server is stopped (and started again, empty, at the phase's end)
  6 recovered       everything up again

Reported: messages sent; answered (a passive reply on one of the three tries; must equal sent);
5xx answers (must be 0); lost messages (no reply on any try, or only ``success`` to a text);
answers of the model delivered later with the user's next message; latency per phase; the bot's
RSS and Redis used_memory sampled every 10 s (flat = no leak; answer records are kept for
``delivery.record_ttl``, here 60 s by default instead of the shipped 300 s so that a 3-minute
run reaches the plateau: ``--record-ttl 300 --minutes 10`` for the shipped value); Redis outages
the bot logged.
Everything talks to 127.0.0.1 only; every loop is bounded.
"""
from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
from aiohttp import web
from common import (
    ROOT,
    WECHAT_TOML,
    RedisServer,
    Server,
    free_port,
    md_table,
    percentile,
    report_header,
    rss_kib,
    signer,
)

from core.operations.wechat_client import deliver_like_wechat, event_xml, text_xml
from tests.standins.openai_server import (
    OpenAIStandIn,
    StandInState,
    answer,
    server_error,
    slow,
)
from tests.standins.weather_server import WeatherStandIn

PHASES = ["normal", "model timeouts", "model 500s", "weather down", "redis down", "recovered"]
PENDING_REPLY = "正在思考中，请稍候发送任意消息获取回答。"
#: The LLM plugin's polite reply when no model answers (plugins/llm/templates/unavailable.j2).
UNAVAILABLE = (ROOT / "plugins" / "llm" / "templates" / "unavailable.j2").read_text(encoding="utf-8").strip()
FAQ = ["你们几点营业", "怎么退货", "客服电话多少", "发货要多久", "可以开发票吗", "积分怎么用", "运费怎么算"]
CITIES = ["北京", "上海", "广州", "深圳", "杭州", "成都", "武汉", "西安", "南京", "重庆"]
DAYS = ["今天", "明天", "后天", "周末"]
USERS = 3000


@dataclass
class PhasedModel(StandInState):
    """The OpenAI stand-in, behaving according to the soak's current phase."""

    phase: str = "normal"
    rng: random.Random = field(default_factory=lambda: random.Random(5))

    def next_behaviour(self):
        if self.phase == "model timeouts":
            return slow(10.0)
        if self.phase == "model 500s" and self.rng.random() < 0.5:
            return server_error(500)
        return answer(delay=min(8.0, max(0.3, self.rng.lognormvariate(math.log(1.5), 0.6))))


def settings_toml(redis_url: str, llm_url: str, weather_url: str, record_ttl: float) -> str:
    return f"""
{WECHAT_TOML}
[delivery]
record_ttl = {record_ttl}

[state]
backend = "redis"
redis_url = "{redis_url}"
key_prefix = "skillbot-soak:"

[ratelimit]
burst = 100

[plugins]
enabled = ["filter", "welcome", "faq", "weather", "llm"]
entry_points = false

[plugins.weather]
base_url = "{weather_url}"
timeout = 2.0
cache_ttl = 5            # short, so the provider is really called during the run

[plugins.llm]
total_timeout = 8.0

[[plugins.llm.providers]]
name = "standin"
base_url = "{llm_url}"
model = "standin-chat"
timeout = 4.0
"""


@dataclass
class Sent:
    kind: str
    phase: str
    user: str
    echo: str | None = None  # the model's answer, for chit-chat
    statuses: list = field(default_factory=list)
    answered: bool = False
    latency: float = 0.0
    pending: bool = False
    polite_failure: bool = False  # the model failed: the user got unavailable.j2 instead
    late_answer: bool = False  # the model's answer came with a later message


class WeatherSite:
    """The weather stand-in on a fixed port, which can be taken down and brought back."""

    def __init__(self) -> None:
        self.standin = WeatherStandIn(today=datetime.now(timezone(timedelta(hours=8))).date())
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    async def up(self) -> None:
        self.runner = web.AppRunner(self.standin.app(), handle_signals=False)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def down(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


async def soak(minutes: float, rate: float, record_ttl: float, workdir: Path) -> dict:
    duration = minutes * 60
    phase_len = duration / len(PHASES)
    rng = random.Random(11)
    redis = RedisServer().start()
    weather = WeatherSite()
    await weather.up()
    model = PhasedModel()
    records: list[Sent] = []
    outstanding: dict[str, set[str]] = defaultdict(set)  # user -> echoes still to be delivered
    samples: list[tuple[float, str, int, int, str]] = []
    idle: asyncio.Queue[str] = asyncio.Queue()
    for u in range(USERS):
        idle.put_nowait(f"o_soak_{u:05d}")
    counter = 0
    async with OpenAIStandIn(model) as llm:
        settings = workdir / "soak.toml"
        settings.write_text(settings_toml(redis.url, llm.base_url, f"http://127.0.0.1:{weather.port}", record_ttl),
                            encoding="utf-8")
        port = free_port()
        log_path = workdir / "bot.log"
        server = Server([sys.executable, str(ROOT / "run.py"), "--settings", str(settings), "--host", "127.0.0.1",
                         "--port", str(port)], f"http://127.0.0.1:{port}/healthz", log_path)
        await asyncio.to_thread(server.start)
        url = f"http://127.0.0.1:{port}/wechat"
        sign = signer("plain")
        started = time.monotonic()
        phase = "normal"

        def check_content(rec: Sent, content: str) -> None:
            for echo in list(outstanding[rec.user]):
                if echo in content:
                    outstanding[rec.user].discard(echo)
                    for earlier in records:
                        if earlier.echo == echo:
                            earlier.late_answer = True
                            break

        async def one(session: aiohttp.ClientSession, rec: Sent, xml: str) -> None:
            first = time.monotonic()
            tries = await deliver_like_wechat(session, url, sign, xml, try_timeout=5.0)
            for t in tries:
                rec.statuses.append(t.status)
                if t.status == 200 and (t.body or "").startswith("<xml>"):
                    rec.answered = True
                    rec.latency = t.ended - first
                    content = (sign.open_reply(t.body) or {}).get("Content", "")
                    check_content(rec, content)
                    if rec.echo is not None and rec.echo not in content:
                        if UNAVAILABLE in content:
                            rec.polite_failure = True
                        elif content == PENDING_REPLY:
                            rec.pending = True
                            outstanding[rec.user].add(rec.echo)
            await idle.put(rec.user)

        async def sampler() -> None:
            while True:
                rss, _ = rss_kib(server.pid)
                try:
                    used = int(redis.info_memory().get("used_memory", 0)) if redis.proc else -1
                except Exception:
                    used = -1
                health = "-"
                try:
                    async with aiohttp.ClientSession() as s:
                        async with s.get(f"http://127.0.0.1:{port}/healthz",
                                         timeout=aiohttp.ClientTimeout(total=2)) as r:
                            health = (await r.json()).get("status", "?")
                except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                    health = "unreachable"
                samples.append((time.monotonic() - started, phase, rss, used, health))
                await asyncio.sleep(10)

        async def set_phase(name: str) -> None:
            nonlocal phase
            previous, phase = phase, name
            model.phase = name
            print(f"[{time.monotonic() - started:6.1f}s] phase: {name}", file=sys.stderr)
            if name == "weather down":
                await weather.down()
            elif previous == "weather down":
                await weather.up()
            if name == "redis down":
                await asyncio.to_thread(redis.stop)
            elif previous == "redis down":
                await asyncio.to_thread(redis.start)

        tasks: set[asyncio.Task] = set()
        sampling = asyncio.ensure_future(sampler())
        connector = aiohttp.TCPConnector(limit=0)
        try:
            async with aiohttp.ClientSession(connector=connector) as session:
                total = int(duration * rate)
                for n in range(total):
                    at = started + n / rate
                    now = time.monotonic()
                    if at > now:
                        await asyncio.sleep(at - now)
                    wanted = PHASES[min(len(PHASES) - 1, int((time.monotonic() - started) / phase_len))]
                    if wanted != phase:
                        await set_phase(wanted)
                    user = await idle.get()
                    roll = rng.random()
                    counter += 1
                    if roll < 0.4:
                        rec, xml = Sent("faq", phase, user), text_xml(rng.choice(FAQ), from_user=user)
                    elif roll < 0.6:
                        rec = Sent("weather", phase, user)
                        xml = text_xml(f"{rng.choice(CITIES)}{rng.choice(DAYS)}天气怎么样", from_user=user)
                    elif roll < 0.9:
                        question = f"给我讲个笑话，编号{counter}"
                        rec, xml = Sent("chat", phase, user, echo=f"回声：{question}"), text_xml(question, from_user=user)
                    else:
                        rec, xml = Sent("event", phase, user), event_xml("subscribe", {"EventKey": ""}, from_user=user)
                    records.append(rec)
                    task = asyncio.ensure_future(one(session, rec, xml))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if tasks:
                    await asyncio.wait(list(tasks), timeout=60)
                middle_rss = samples[len(samples) // 2][2] if samples else 0
                # Collect the model's answers still waiting for each user's next message.
                for _ in range(3):
                    waiting = [u for u, echoes in outstanding.items() if echoes]
                    if not waiting:
                        break
                    await asyncio.sleep(5)
                    flush = []
                    for user in waiting:
                        rec = Sent("flush", "flush", user)
                        records.append(rec)
                        flush.append(one(session, rec, text_xml("你们几点营业", from_user=user)))
                    await asyncio.gather(*flush)
            end_rss, peak_rss = rss_kib(server.pid)
        finally:
            sampling.cancel()
            await asyncio.gather(sampling, return_exceptions=True)
            for task in tasks:
                task.cancel()
            await asyncio.to_thread(server.stop)
            await weather.down()
            redis.stop()
    log_text = log_path.read_text(encoding="utf-8", errors="replace")
    return {"records": records, "samples": samples, "elapsed": time.monotonic() - started,
            "middle_rss": middle_rss, "end_rss": end_rss, "peak_rss": peak_rss,
            "redis_down_logged": log_text.count("Redis unreachable"),
            "redis_up_logged": log_text.count("Redis reachable"),
            "max_connections_errors": log_text.count("MaxConnectionsError"),
            "tracebacks": log_text.count("Traceback"),
            "unanswered_echoes": sum(len(v) for v in outstanding.values()),
            "model_calls": model.call_count}


def main() -> None:
    parser = argparse.ArgumentParser(description="soak test with injected faults")
    parser.add_argument("--minutes", type=float, default=3.0, help="length of the run (default 3)")
    parser.add_argument("--rate", type=float, default=50.0, help="messages per second (default 50)")
    parser.add_argument("--record-ttl", type=float, default=60.0,
                        help="delivery.record_ttl in seconds (default 60, so answer records start "
                             "expiring within a short run; the shipped value is 300)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="skillbot-soak-"))
    result = asyncio.run(soak(args.minutes, args.rate, args.record_ttl, workdir))
    records = [r for r in result["records"] if r.kind != "flush"]
    flushes = [r for r in result["records"] if r.kind == "flush"]
    statuses = Counter(s for r in result["records"] for s in r.statuses)
    five_xx = sum(n for s, n in statuses.items() if s is not None and s >= 500)
    lines = report_header(f"Soak: {args.minutes:g} min at {args.rate:g} messages/s with faults injected")
    lines += ["- Bot: one worker (`python run.py`), Redis state backend (private redis-server), real "
              "LLM and weather plugins against local stand-ins; shipped delivery settings (try_budget "
              f"4.5 s, hold 8 s) but delivery.record_ttl = {args.record_ttl:g} s (answer records, kept "
              "in Redis and in a local copy, expire within the run; memory is flat only after that); "
              "WeChat simulated in real time (5 s per try, three tries)",
              f"- Bot log: {workdir / 'bot.log'}", ""]
    rows = []
    for name in PHASES:
        rs = [r for r in records if r.phase == name]
        lat = [r.latency for r in rs if r.answered]
        kinds = Counter(r.kind for r in rs)
        rows.append([name, len(rs), sum(r.answered for r in rs), len(rs) - sum(r.answered for r in rs),
                     sum(1 for r in rs for s in r.statuses if s is not None and s >= 500),
                     sum(r.polite_failure for r in rs), sum(r.pending for r in rs), sum(r.late_answer for r in rs),
                     f"{percentile(lat, 50) * 1000:.0f}" if lat else "-", f"{percentile(lat, 99) * 1000:.0f}" if lat else "-",
                     " ".join(f"{k} {v}" for k, v in sorted(kinds.items()))])
    lines += md_table(["phase", "sent", "answered", "lost", "5xx", "model failed: polite reply", "\"still thinking\"", "answer with next message",
                       "latency p50 ms", "latency p99 ms", "mix"], rows)
    sent = len(records)
    answered = sum(r.answered for r in records)
    lines += [""] + md_table(["total", "value"], [
        ["messages sent", sent], ["answered", answered], ["lost", sent - answered], ["5xx answers", five_xx],
        ["model answers delivered with a later message", sum(r.late_answer for r in records)],
        ["model answers never delivered (after up to 3 flush messages)", result["unanswered_echoes"]],
        ["flush messages sent at the end", len(flushes)],
        ["model calls", result["model_calls"]],
        ["Redis outages logged by the bot (unreachable / reachable)",
         f"{result['redis_down_logged']} / {result['redis_up_logged']}"],
        ["of which pool exhaustion (MaxConnectionsError)", result["max_connections_errors"]],
        ["tracebacks in the bot log", result["tracebacks"]],
        ["wall time s", f"{result['elapsed']:.0f}"]])
    lines += ["", "Samples (every 10 s): " + "; ".join(
        f"{t:.0f}s {phase} RSS {rss / 1024:.0f} MiB redis {used / 2**20:.1f} MiB {health}" if used >= 0
        else f"{t:.0f}s {phase} RSS {rss / 1024:.0f} MiB redis down {health}"
        for t, phase, rss, used, health in result["samples"])]
    rss_values = [s[2] for s in result["samples"]]
    half = [(t, rss) for t, _, rss, _, _ in result["samples"]][len(result["samples"]) // 2:]
    if len(half) >= 2 and half[-1][0] > half[0][0]:
        slope = (half[-1][1] - half[0][1]) / 1024 / ((half[-1][0] - half[0][0]) / 60)
        lines.append(f"- Bot RSS growth over the second half of the run: {slope:+.1f} MiB/min")
    if rss_values:
        lines.append(f"- Bot RSS: first sample {rss_values[0] / 1024:.0f} MiB, middle {result['middle_rss'] / 1024:.0f} MiB, "
                     f"end {result['end_rss'] / 1024:.0f} MiB, peak {result['peak_rss'] / 1024:.0f} MiB")
    ok = sent == answered and five_xx == 0 and result["unanswered_echoes"] == 0
    lines.append(f"- Verdict: {'every message answered, no 5xx' if ok else 'NOT every message answered or 5xx seen'}")
    print("\n".join(lines))


if __name__ == "__main__":
    os.chdir(ROOT)
    main()

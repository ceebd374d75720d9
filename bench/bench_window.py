#!/usr/bin/env python3
"""WeChat's 5-second window under load: N users, a model whose latency spreads from 0.5 to 12 s.

    .venv/bin/python bench/bench_window.py               # 100 and 1,000 users, both delivery modes

The whole bot runs in its own process (``python run.py`` with generated settings) with the real
LLM plugin pointed at the OpenAI-compatible stand-in (tests/standins/openai_server.py); in
customer-service mode the 客服 API is the WeChat API stand-in (tests/standins/wechat_api_server.py).
Every user sends one question the model answers (the stand-in echoes it: ``回声：…``), delivered
the way WeChat does (core.operations.wechat_client.deliver_like_wechat: three tries, each given 5 s). A user
who gets the "still thinking" text on the third try sends a follow-up (a FAQ question) 20 s later,
then every 20 s, up to 3 times, as the pending reply asks.

Time is scaled (``--scale``, default 0.5): WeChat's 5 s per try, the bot's try_budget (4.5 s) and
hold (8 s), the model's latency, the arrival spread and the follow-up delays are all multiplied
by it, so a 15 s window takes 7.5 s. CPU time is not scaled, so the bot's margin between its
try budget and WeChat's timeout (0.5 s) shrinks to 0.25 s and the message rate doubles in wall
time: on a loaded machine, smaller scales lose answers that a real-time run would not. Messages arrive evenly at ``--rate`` per real second (default
50/s: 1,000 users over 20 s). Model latency (real seconds) is drawn per request:

- ``realistic``: lognormal, median 3 s, sigma 0.6, clipped to 0.5..12 s (p90 ~6.5 s)
- ``slow``:      lognormal, median 8 s, sigma 0.7, clipped to 0.5..30 s (a congested provider;
                 exercises the next-message and 客服 paths)

Counted per user: the answer delivered on try 1, 2 or 3, with a follow-up message (next-message
path), by 客服 push; duplicates (the same answer delivered twice: must be 0), lost answers
(never delivered: must be 0); the bot process's RSS at start and peak (VmHWM).
"""
from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from common import (
    APP_ID,
    ROOT,
    WECHAT_TOML,
    Server,
    free_port,
    md_table,
    report_header,
    rss_kib,
    signer,
)

from core.operations.wechat_client import deliver_like_wechat, text_xml
from tests.standins.openai_server import OpenAIStandIn, StandInState, answer
from tests.standins.wechat_api_server import WeChatAPIState, create_wechat_api_app

PENDING_REPLY = "正在思考中，请稍候发送任意消息获取回答。"  # the shipped delivery.pending_reply
#: The LLM plugin's polite reply when the model fails or times out (plugins/llm/templates/unavailable.j2).
UNAVAILABLE = (ROOT / "plugins" / "llm" / "templates" / "unavailable.j2").read_text(encoding="utf-8").strip()
FOLLOW_UP = "你们几点营业"  # answered by the FAQ at once
DISTRIBUTIONS = {"realistic": (3.0, 0.6, 0.5, 12.0), "slow": (8.0, 0.7, 0.5, 30.0)}


@dataclass
class SpreadState(StandInState):
    """The OpenAI stand-in with a latency drawn per request (scaled seconds)."""

    rng: random.Random = field(default_factory=lambda: random.Random(1))
    median: float = 3.0
    sigma: float = 0.6
    low: float = 0.5
    high: float = 12.0
    scale: float = 0.2
    drawn: list[float] = field(default_factory=list)

    def next_behaviour(self):
        latency = min(self.high, max(self.low, self.rng.lognormvariate(math.log(self.median), self.sigma)))
        self.drawn.append(latency)
        return answer(delay=latency * self.scale)


def settings_toml(llm_url: str, scale: float, mode: str, api_base: str) -> str:
    return f"""
{WECHAT_TOML}
[delivery]
mode = "{mode}"
try_budget = {4.5 * scale}
hold_seconds = {8.0 * scale}
api_base = "{api_base}"

[pipeline]
fallback_timeout = {50.0 * scale}

[ratelimit]
burst = 100000

[logging]
level = "WARNING"

[plugins]
enabled = ["filter", "welcome", "faq", "weather", "llm"]
entry_points = false

[plugins.weather]
base_url = "http://127.0.0.1:9"

[plugins.llm]
total_timeout = {45.0 * scale}

[[plugins.llm.providers]]
name = "standin"
base_url = "{llm_url}"
model = "standin-chat"
timeout = {40.0 * scale}
"""


@dataclass
class UserResult:
    #: try1, try2, try3, next, push (the model's answer delivered); failed (the polite "cannot
    #: answer now" reply delivered instead); lost (nothing at all)
    outcome: str = "lost"
    deliveries: int = 0
    pending_shown: bool = False
    follow_ups: int = 0
    silent_tries: int = 0
    trace: list[str] = field(default_factory=list)


async def run_case(users: int, dist: str, mode: str, scale: float, rate: float, workdir: Path) -> dict:
    median, sigma, low, high = DISTRIBUTIONS[dist]
    state = SpreadState(median=median, sigma=sigma, low=low, high=high, scale=scale,
                        rng=random.Random(users * 7 + len(dist)))
    api_state = WeChatAPIState(app_id=APP_ID, secret="bench_secret")
    api_runner = web.AppRunner(create_wechat_api_app(api_state), handle_signals=False)
    await api_runner.setup()
    api_port = free_port()
    await web.TCPSite(api_runner, "127.0.0.1", api_port).start()
    results = [UserResult() for _ in range(users)]
    async with OpenAIStandIn(state) as llm:
        settings = workdir / f"window-{mode}.toml"
        settings.write_text(settings_toml(llm.base_url, scale, mode, f"http://127.0.0.1:{api_port}"),
                            encoding="utf-8")
        port = free_port()
        server = Server([sys.executable, str(ROOT / "run.py"), "--settings", str(settings), "--host", "127.0.0.1",
                         "--port", str(port)], f"http://127.0.0.1:{port}/healthz", workdir / f"bot-{mode}.log",
                        env={"WECHAT_APP_SECRET": api_state.secret})
        await asyncio.to_thread(server.start)
        start_rss, _ = rss_kib(server.pid)
        url = f"http://127.0.0.1:{port}/wechat"
        sign = signer("plain")
        try_timeout = 5.0 * scale
        started = time.monotonic()
        connector = aiohttp.TCPConnector(limit=0)
        try:
            async with aiohttp.ClientSession(connector=connector) as session:

                async def one(i: int) -> None:
                    r = results[i]
                    user = f"o_win_{i:05d}"
                    echo = f"回声：给我讲个笑话，编号{i}"
                    await asyncio.sleep(i / rate * scale)
                    tries = await deliver_like_wechat(session, url, sign, text_xml(f"给我讲个笑话，编号{i}", from_user=user),
                                                      try_timeout=try_timeout)
                    for t in tries:
                        r.trace.append(f"try{t.try_number}:{t.status}:{(t.body or '')[:12]!r}@{t.ended - t.started:.2f}s")
                        if t.status is None:
                            r.silent_tries += 1
                            continue
                        content = (sign.open_reply(t.body or "") or {}).get("Content", "")
                        if echo in content:
                            r.deliveries += 1
                            r.outcome = f"try{t.try_number}"
                        elif content == PENDING_REPLY:
                            r.pending_shown = True
                        elif UNAVAILABLE in content:
                            r.outcome = "failed"
                    if mode != "passive" or r.deliveries or not r.pending_shown:
                        return
                    for _ in range(3):
                        await asyncio.sleep(20.0 * scale)
                        r.follow_ups += 1
                        tries = await deliver_like_wechat(session, url, sign, text_xml(FOLLOW_UP, from_user=user),
                                                          try_timeout=try_timeout)
                        body = next((t.body for t in tries if t.status is not None), None)
                        content = (sign.open_reply(body or "") or {}).get("Content", "")
                        if echo in content:
                            r.deliveries += content.count(echo)
                            r.outcome = "next"
                            break
                        if UNAVAILABLE in content:
                            r.outcome = "failed"
                            break

                await asyncio.gather(*(one(i) for i in range(users)))
                if mode == "customer_service":
                    deadline = time.monotonic() + (high + 20) * scale + 10
                    while len(api_state.sent) < users and time.monotonic() < deadline:
                        await asyncio.sleep(0.1)
                    await asyncio.sleep(0.5)  # anything sent twice arrives meanwhile
                    for message in api_state.sent:
                        i = int(message["touser"].rsplit("_", 1)[1])
                        content = message.get("text", {}).get("content", "")
                        if f"回声：给我讲个笑话，编号{i}" in content:
                            results[i].deliveries += 1
                            if results[i].outcome in ("lost", "failed"):
                                results[i].outcome = "push"
                        elif UNAVAILABLE in content and results[i].outcome == "lost":
                            results[i].outcome = "failed"
            elapsed = time.monotonic() - started
            _, peak_rss = rss_kib(server.pid)
        finally:
            await asyncio.to_thread(server.stop)
            await api_runner.cleanup()
    outcomes = Counter(r.outcome for r in results)
    odd = [(i, r) for i, r in enumerate(results) if r.outcome == "lost" or r.deliveries > 1]
    for i, r in odd[:10]:  # what happened to the first few, for diagnosis
        print(f"  user {i}: {r.outcome} deliveries={r.deliveries} follow-ups={r.follow_ups} "
                  f"{' '.join(r.trace)}", file=sys.stderr)
    # Model calls in flight at once, as the stand-in saw them (arrival + drawn latency).
    events = sorted([(c.at, 1) for c in state.calls]
                    + [(c.at + d * scale, -1) for c, d in zip(state.calls, state.drawn)])
    in_flight = peak = 0
    for _, step in events:
        in_flight += step
        peak = max(peak, in_flight)
    return {"peak_calls": peak, "users": users, "dist": dist, "mode": mode, "outcomes": outcomes,
            "duplicates": sum(max(0, r.deliveries - 1) for r in results),
            "model_calls": state.call_count, "pending_shown": sum(r.pending_shown for r in results),
            "follow_ups": sum(r.follow_ups for r in results), "start_rss": start_rss, "peak_rss": peak_rss,
            "elapsed": elapsed, "drawn": sorted(state.drawn)}


def main() -> None:
    parser = argparse.ArgumentParser(description="the 5-second window: N users, a slow model")
    parser.add_argument("--users", default="100,1000", help="comma-separated user counts (default 100,1000)")
    parser.add_argument("--scale", type=float, default=0.5, help="time scale (default 0.5: 5 s -> 2.5 s)")
    parser.add_argument("--rate", type=float, default=50.0, help="messages arriving per real second (default 50)")
    parser.add_argument("--dists", default="realistic,slow", help="model latency spreads (default realistic,slow)")
    parser.add_argument("--modes", default="passive,customer_service", help="delivery modes (default both)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="skillbot-bench-window-"))
    cases = []
    for dist in args.dists.split(","):
        for users in (int(u) for u in args.users.split(",")):
            for mode in args.modes.split(","):
                case = asyncio.run(run_case(users, dist, mode, args.scale, args.rate, workdir))
                o = case["outcomes"]
                print(f"{dist:9s} {users:5d} {mode:16s} {dict(o)} dup={case['duplicates']} "
                      f"calls={case['model_calls']} peak={case['peak_rss'] / 1024:.0f} MiB "
                      f"{case['elapsed']:.1f}s", file=sys.stderr)
                cases.append(case)
    lines = report_header("The 5-second window: N users, model latency 0.5-12 s")
    lines += [f"- Time scale {args.scale:g} (WeChat's 5 s try -> {5 * args.scale:g} s; try_budget 4.5 s, "
              "hold 8 s, model latency, arrivals and follow-up delays scaled alike); arrivals "
              f"{args.rate:g} messages per real second; the bot in its own process (run.py), the "
              "real LLM plugin against the OpenAI stand-in",
              "- Model latency (real seconds): realistic = lognormal median 3 s, sigma 0.6, clipped "
              "0.5-12 s; slow = median 8 s, sigma 0.7, clipped 0.5-30 s",
              "- Shares are of users; each user's answer must be delivered exactly once. polite "
              "failure = the model call failed or timed out and the user got the LLM plugin's "
              "unavailable.j2 reply instead; lost = the user got nothing at all", ""]
    rows = []
    for c in cases:
        o, n = c["outcomes"], c["users"]
        share = lambda k: f"{o.get(k, 0) / n:.1%}"  # noqa: E731
        drawn = c["drawn"]
        rows.append([c["dist"], n, c["mode"], share("try1"), share("try2"), share("try3"), share("next"),
                     share("push"), share("failed"), o.get("lost", 0), c["duplicates"], c["model_calls"], c["peak_calls"],
                     f"{drawn[len(drawn) // 2]:.1f} / {drawn[int(len(drawn) * 0.9)]:.1f} / {drawn[-1]:.1f}" if drawn else "-",
                     f"{c['start_rss'] / 1024:.0f} / {c['peak_rss'] / 1024:.0f}"])
    lines += md_table(["latency", "users", "delivery", "try 1", "try 2", "try 3", "next message", "客服 push",
                       "polite failure", "lost", "duplicates", "model calls", "most calls at once", "latency p50/p90/max s", "bot RSS start/peak MiB"],
                      rows)
    lines.append("")
    bad = [c for c in cases if c["duplicates"] or c["outcomes"].get("lost", 0)]
    lines.append("- Duplicates and lost messages: " + ("none" if not bad else "FOUND in " + ", ".join(
        f"{c['dist']}/{c['users']}/{c['mode']}" for c in bad)))
    print("\n".join(lines))
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()

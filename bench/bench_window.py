#!/usr/bin/env python3
"""WeChat's 5-second window under load: N users, a model whose latency spreads from 0.5 to 12 s,
and a streaming model whose answers take 5 to 60 s.

    .venv/bin/python bench/bench_window.py               # 100 and 1,000 users, both delivery modes
    .venv/bin/python bench/bench_window.py --cases stream --scale 0.5   # the streaming model only
    bench/local_model.sh run                             # a real local model (--local-model URL)

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

The streaming cases (``--cases stream``): the stand-in streams each user's answer as server-sent
events in OpenAI's chunk format, the first token after 0.5-3 s, the whole answer lognormal
(median 15 s, sigma 0.7) clipped to 5-60 s, 25 characters a second in chunks every 0.5 s,
sentences and paragraphs of their own (so a long one is cut into parts and fetched with
「继续」). The user side follows the conversation as a person would: 「继续」 after a part ending in
the continue hint (a passive reply or a 客服 push), a follow-up 20 s after a reply without the whole answer (passive mode, at most 4),
and records every passive reply and 客服 push. Measured: the share of users who saw the beginning
of the answer before writing again (of all, and of those whose first sentence was ready within
14 s), the time to the first visible text (p50, p95), and whether the concatenation of everything a
user received (hints, the pending text and the follow-up's own answer taken out, white space
ignored) equals the model's full text: complete, duplicate, lost (nothing or only a beginning) or
mismatch. ``--local-model URL`` runs the same user side against a real model server through a
recording proxy that keeps what the model wrote (real time, the users taking turns).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
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
from plugins.llm.plaintext import markdown_to_text, sentence_cuts
from tests.standins.openai_server import OpenAIStandIn, StandInState, answer, streamed
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
        server, start_rss, url = await start_bot(settings, workdir / f"bot-{mode}.log", api_state.secret)
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


# ---- a streaming model: first token after 0.5-3 s, the whole answer in 5-60 s (issue 15) ----------

#: Real seconds: the first token after FIRST_TOKEN (uniform), the answer's total time lognormal
#: (median, sigma) clipped to (low, high).
FIRST_TOKEN = (0.5, 3.0)
STREAM_TOTAL = (15.0, 0.7, 5.0, 60.0)
#: Characters the model writes per real second, and seconds between two streamed chunks.
CHARS_PER_SECOND = 25.0
CHUNK_SECONDS = 0.5
#: A first sentence ready within this many seconds can be shown inside WeChat's window (3 tries of
#: 5 s, less the bot's margin): the users the "without writing again" share is about.
READY_WITHIN = 14.0
STREAM_PLUGINS = '"filter", "welcome", "faq", "weather", "llm"'
#: Without the sensitive-word filter: it may mask words in a small model's (often garbled)
#: Chinese, and the user's text would then rightly differ from the model's.
LOCAL_PLUGINS = '"welcome", "faq", "weather", "llm"'
#: WeChat's window for one message: three tries of 5 s.
WINDOW = 15.0
#: A user reads a part before sending 「继续」 (real seconds), writes again this long after the
#: "still thinking" text, at most this many times.
READ_PAUSE = 3.0
FOLLOW_UP_AFTER = 20.0
MAX_FOLLOW_UPS = 4
#: delivery.push_gather (unscaled seconds; --push-gather), the shipped default unless asked otherwise
PUSH_GATHER = [6.0]
CONTINUE_WORD = "继续"
CONTINUE_HINT = "（回复「继续」查看更多）"  # the shipped delivery.continue_hint
CONTINUE_WAIT = "还在写，请稍后回复「继续」查看。"  # the shipped delivery.continue_wait
NOTES = [(ROOT / "plugins" / "llm" / "templates" / name).read_text(encoding="utf-8").strip()
         for name in ("truncated_note.j2", "interrupted_note.j2")]
FILLER = ("长城是中国古代的军事防御工程东起山海关西至嘉峪关蜿蜒于崇山峻岭之间修筑历史可上溯到西周时期"
          "秦灭六国统一天下后连接和修缮战国长城始有万里长城之称明朝是最后一个大规模修筑长城的朝代")
USER_NUMBER = re.compile(r"(?:编号|#)(\d+)")


@dataclass
class StreamPlan:
    """One answer as the model writes it (real seconds from the request)."""

    text: str
    first_token: float = 0.0
    first_sentence: float = 0.0
    total: float = 0.0


def stream_plan(i: int) -> tuple[StreamPlan, list[str], float]:
    """User ``i``'s answer, its chunks and the gap between them (real seconds); deterministic."""
    rng = random.Random(1_000_003 * (i + 1))
    first = rng.uniform(*FIRST_TOKEN)
    median, sigma, low, high = STREAM_TOTAL
    total = max(first + 1.0, min(high, max(low, rng.lognormvariate(math.log(median), sigma))))
    wanted = int(CHARS_PER_SECOND * (total - first))
    sentences: list[str] = []
    size = 0
    k = 0
    while size < wanted or not sentences:
        k += 1
        start = rng.randrange(len(FILLER) - 20)
        body = FILLER[start:start + rng.randint(8, 20)]
        sentence = f"编号{i}的第{k}句：{body}。"
        if k % 4 == 0:
            sentence += "\n\n"  # a paragraph every four sentences
        sentences.append(sentence)
        size += len(sentence)
    text = "".join(sentences).rstrip()
    n = max(2, round((total - first) / CHUNK_SECONDS) + 1)
    step = max(1, math.ceil(len(text) / n))
    chunks = [text[j:j + step] for j in range(0, len(text), step)]
    gap = (total - first) / max(1, len(chunks) - 1)
    end_of_first = sentence_cuts(text)[0] if sentence_cuts(text) else len(text)
    first_sentence = first + gap * ((end_of_first - 1) // step)
    return StreamPlan(text, first, first_sentence, first + gap * (len(chunks) - 1)), chunks, gap


@dataclass
class StreamingState(StandInState):
    """The OpenAI stand-in streaming each user's planned answer (times scaled)."""

    scale: float = 0.5
    plans: dict[int, StreamPlan] = field(default_factory=dict)

    def next_behaviour(self):
        # The request being answered is the last one received (kept before this is asked).
        question = self.calls[-1].messages[-1].get("content", "") if self.calls else ""
        found = USER_NUMBER.search(question if isinstance(question, str) else "")
        if found is None:  # not a bench question: a short answer at once
            return streamed("好的。")
        i = int(found[1])
        plan, chunks, gap = stream_plan(i)
        self.plans[i] = plan
        return streamed(pieces=chunks, first_delay=plan.first_token * self.scale, gap=gap * self.scale)


class RecordingProxy:
    """Between the bot and a real model server: passes each streamed answer through unchanged and
    keeps what the model wrote (the full text, when its first token and first sentence came)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.plans: dict[int, StreamPlan] = {}
        self.calls = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        started = time.monotonic()
        self.calls += 1
        try:
            question = json.loads(body)["messages"][-1]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            question = ""
        found = USER_NUMBER.search(question if isinstance(question, str) else "")
        plan = StreamPlan("")
        if found is not None:
            self.plans[int(found[1])] = plan
        raw = ""
        buffer = b""
        async with self.session.post(f"{self.upstream}/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"}) as upstream:
            response = web.StreamResponse(status=upstream.status, headers={
                "Content-Type": upstream.headers.get("Content-Type", "application/json")})
            await response.prepare(request)
            async for data in upstream.content.iter_any():
                try:
                    await response.write(data)
                except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                    break  # the bot stopped reading (its time ran out): the rest is not the user's
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    line = line.strip()
                    if not line.startswith(b"data:") or line == b"data: [DONE]":
                        continue
                    try:
                        chunk = json.loads(line[5:])
                        piece = chunk["choices"][0]["delta"].get("content") or ""
                    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                        continue
                    if piece:
                        now = time.monotonic() - started
                        raw += piece
                        plan.first_token = plan.first_token or now
                        if not plan.first_sentence and sentence_cuts(markdown_to_text(raw)):
                            plan.first_sentence = now
            else:
                try:
                    await response.write_eof()
                except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                    pass  # the bot closed the stream at data: [DONE], before the last empty chunk
        plan.total = time.monotonic() - started
        plan.text = markdown_to_text(raw)
        plan.first_sentence = plan.first_sentence or plan.total
        return response

    async def start(self) -> str:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600))
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._forward)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return f"http://127.0.0.1:{self.port}/v1"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self.session.close()


async def start_bot(settings: Path, log: Path, app_secret: str) -> tuple[Server, int, str]:
    """``run.py`` with ``settings`` on a free port: the server, its RSS at start (KiB) and its
    webhook URL."""
    port = free_port()
    server = Server([sys.executable, str(ROOT / "run.py"), "--settings", str(settings), "--host", "127.0.0.1",
                     "--port", str(port)], f"http://127.0.0.1:{port}/healthz", log,
                    env={"WECHAT_APP_SECRET": app_secret})
    await asyncio.to_thread(server.start)
    start_rss, _ = rss_kib(server.pid)
    return server, start_rss, f"http://127.0.0.1:{port}/wechat"


def settings_toml(llm_url: str, scale: float, mode: str, api_base: str, *, model: str = "standin-chat",
                  answer_seconds: float = 45.0, max_tokens: int | None = None,
                  plugins: str = '"filter", "welcome", "faq", "weather", "llm"') -> str:
    """The bot's settings: WeChat's times scaled by ``scale``; the model may take
    ``answer_seconds`` (unscaled) for a whole answer."""
    tokens = f"max_tokens = {max_tokens}" if max_tokens else ""
    return f"""
{WECHAT_TOML}
[delivery]
mode = "{mode}"
try_budget = {4.5 * scale}
hold_seconds = {8.0 * scale}
wechat_wait = {5.0 * scale}
stream_reply_after = {0.5 * scale}
push_gather = {PUSH_GATHER[0] * scale}
api_base = "{api_base}"

[pipeline]
fallback_timeout = {(answer_seconds + 5.0) * scale}

[ratelimit]
burst = 100000

[logging]
level = "WARNING"

[plugins]
enabled = [{plugins}]
entry_points = false

[plugins.weather]
base_url = "http://127.0.0.1:9"

[plugins.llm]
total_timeout = {answer_seconds * scale}

[[plugins.llm.providers]]
name = "standin"
base_url = "{llm_url}"
model = "{model}"
timeout = {40.0 * scale}
{tokens}
"""


def squeeze(text: str) -> str:
    return "".join(text.split())


@dataclass
class StreamUser:
    #: (seconds since the question, text of the model's answer in it), in the order received
    received: list[tuple[float, str]] = field(default_factory=list)
    #: seconds since the question when the user first wrote again (a message other than 「继续」)
    wrote_again_at: float | None = None
    follow_ups: int = 0
    continues: int = 0
    pending_shown: bool = False
    failed: bool = False
    #: the question's three tries all went unanswered (WeChat would show nothing)
    silent_start: bool = False
    #: still missing part of the answer after the follow-ups; wrote once more at the end
    late: bool = False
    trace: list[str] = field(default_factory=list)


def answer_part(content: str, faq_answer: str) -> str:
    """What of a reply is the model's answer: hints, notes, the pending text and the follow-up's
    own answer taken out."""
    for fixed in (CONTINUE_HINT, CONTINUE_WAIT, PENDING_REPLY, faq_answer, *NOTES):
        if fixed:
            content = content.replace(fixed, "")
    return content.strip()


def verdict(user: StreamUser, plan: StreamPlan | None, faq_answer: str) -> str:
    """ok, lost (nothing or only a beginning), duplicate (some text twice) or mismatch."""
    got = squeeze("".join(text for _, text in sorted(user.received, key=lambda r: r[0])))
    got = got.replace(squeeze(faq_answer), "") if faq_answer else got
    want = squeeze(plan.text) if plan is not None else ""
    if want and got == want:
        return "ok"
    if not got or (want and want.startswith(got)):
        return "lost"
    if want and (got.count(want) > 1 or (got.startswith(want) and len(got) > len(want))):
        return "duplicate"
    return "mismatch"


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_stream_case(users: int, mode: str, scale: float, rate: float, workdir: Path,
                          local_model: str | None = None, questions: list[str] | None = None,
                          max_tokens: int = 800) -> dict:
    """N users each ask for a long streamed answer; follow each user's side of the conversation."""
    api_state = WeChatAPIState(app_id=APP_ID, secret="bench_secret")
    api_runner = web.AppRunner(create_wechat_api_app(api_state), handle_signals=False)
    await api_runner.setup()
    api_port = free_port()
    await web.TCPSite(api_runner, "127.0.0.1", api_port).start()
    proxy: RecordingProxy | None = None
    standin: OpenAIStandIn | None = None
    if local_model:
        proxy = RecordingProxy(local_model)
        llm_url, model_name, plans = await proxy.start(), "local", proxy.plans
    else:
        standin = await OpenAIStandIn(StreamingState(scale=scale)).start()
        llm_url, model_name, plans = standin.base_url, "standin-stream", standin.state.plans
    results = [StreamUser() for _ in range(users)]
    pushes: list[tuple[float, str, str]] = []  # (monotonic time seen, openid, text)
    started_at: dict[int, float] = {}
    faq_answer = ""

    def merged(r: StreamUser, i: int) -> StreamUser:
        """The user's passive replies and 客服 pushes, in the order they arrived."""
        openid = f"o_stream_{i:05d}"
        t0 = started_at.get(i, 0.0)
        extra = [(at - t0, answer_part(text, faq_answer)) for at, who, text in pushes if who == openid]
        return StreamUser(received=r.received + [e for e in extra if e[1]], wrote_again_at=r.wrote_again_at)

    settings = workdir / f"stream-{mode}.toml"
    settings.write_text(settings_toml(llm_url, scale, mode, f"http://127.0.0.1:{api_port}", model=model_name,
                                      answer_seconds=90.0, max_tokens=max_tokens,
                                      plugins=LOCAL_PLUGINS if local_model else STREAM_PLUGINS),
                        encoding="utf-8")
    # A real model answers one request at a time: its users take turns, each conversation whole.
    one_at_a_time = asyncio.Lock() if local_model else None
    server, start_rss, url = await start_bot(settings, workdir / f"bot-stream-{mode}.log", api_state.secret)
    sign = signer("plain")
    try_timeout = 5.0 * scale
    stop_polling = asyncio.Event()
    hinted: asyncio.Queue[str] = asyncio.Queue()  # users sent a push ending with the continue hint

    async def poll_pushes() -> None:
        # The WeChat API stand-in keeps what it was sent; note when each push arrived.
        seen = 0
        while not stop_polling.is_set():
            sent = api_state.sent
            while seen < len(sent):
                message = sent[seen]
                seen += 1
                if message.get("msgtype") == "text":
                    text = message.get("text", {}).get("content", "")
                    pushes.append((time.monotonic(), message.get("touser", ""), text))
                    if text.endswith(CONTINUE_HINT):  # the user reads it, then sends 「继续」
                        hinted.put_nowait(message.get("touser", ""))
            await asyncio.sleep(0.02)

    started = time.monotonic()
    poller = asyncio.ensure_future(poll_pushes())
    connector = aiohttp.TCPConnector(limit=0)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:

            async def say(user: str, text: str) -> tuple[str | None, float]:
                """One message the way WeChat sends it; the reply's text and when it arrived."""
                tries = await deliver_like_wechat(session, url, sign, text_xml(text, from_user=user),
                                                  try_timeout=try_timeout)
                answered = next((t for t in tries if t.status is not None), None)
                if answered is None:
                    return None, time.monotonic()
                return (sign.open_reply(answered.body or "") or {}).get("Content", ""), answered.ended

            # The follow-up's own answer (the FAQ), to take out of the replies it is merged into.
            probe, _ = await say("o_stream_probe", FOLLOW_UP)
            faq_answer = (probe or "").strip()

            async def follow(i: int, content: str | None, at: float, follow_ups: bool) -> None:
                """Read each reply; 「继续」 after a part with the hint; in passive mode write again
                after a reply without the whole answer (``follow_ups``), until it is all there."""
                r = results[i]
                user, t0 = f"o_stream_{i:05d}", started_at[i]
                for _ in range(40):
                    if content is None:
                        r.trace.append(f"{(at - t0) / scale:.1f}s:silent")
                    else:
                        part = answer_part(content, faq_answer)
                        r.trace.append(f"{(at - t0) / scale:.1f}s:{content[:16]!r}")
                        if content.strip() == PENDING_REPLY:
                            r.pending_shown = True
                        elif UNAVAILABLE in content:
                            r.failed = True
                        if part:
                            r.received.append((at - t0, part))
                    if proxy is not None and content is not None and answer_part(content, faq_answer):
                        # the reply may come before the proxy has finished its own record of the answer
                        settle = time.monotonic() + 3
                        while time.monotonic() < settle and not (plans.get(i) and plans[i].total):
                            await asyncio.sleep(0.05)
                    plan = plans.get(i)
                    if plan is not None and plan.text and verdict(r, plan, faq_answer) == "ok":
                        return
                    if content is not None and content.endswith(CONTINUE_HINT):
                        await asyncio.sleep(READ_PAUSE * scale)
                        r.continues += 1
                        content, at = await say(user, CONTINUE_WORD)
                    elif follow_ups and r.follow_ups < MAX_FOLLOW_UPS and not r.failed:
                        await asyncio.sleep(FOLLOW_UP_AFTER * scale)
                        content, at = await write_again(i)
                    else:
                        return

            async def continue_after_pushes() -> None:
                """Customer-service mode: a push ending with the continue hint is read, then the
                user sends 「继续」 (its reply is ``success``; the next part is pushed)."""
                reading: set[asyncio.Task] = set()

                async def read_on(user: str) -> None:
                    i = int(user.rsplit("_", 1)[1])
                    await asyncio.sleep(READ_PAUSE * scale)
                    results[i].continues += 1
                    await say(user, CONTINUE_WORD)

                try:
                    while True:
                        task = asyncio.ensure_future(read_on(await hinted.get()))
                        reading.add(task)
                        task.add_done_callback(reading.discard)
                finally:
                    await asyncio.gather(*reading, return_exceptions=True)

            continuing = asyncio.ensure_future(continue_after_pushes())

            async def write_again(i: int) -> tuple[str | None, float]:
                r = results[i]
                r.follow_ups += 1
                if r.wrote_again_at is None:
                    r.wrote_again_at = time.monotonic() - started_at[i]
                return await say(f"o_stream_{i:05d}", FOLLOW_UP)

            async def one(i: int) -> None:
                user = f"o_stream_{i:05d}"
                question = (questions[i % len(questions)] + f" #{i}") if questions else f"给我讲一个长故事，编号{i}"
                if one_at_a_time is not None:
                    async with one_at_a_time:
                        await converse(i, user, question)
                else:
                    await asyncio.sleep(i / rate * scale)
                    await converse(i, user, question)

            async def converse(i: int, user: str, question: str) -> None:
                started_at[i] = time.monotonic()
                content, at = await say(user, question)
                results[i].silent_start = content is None
                await follow(i, content, at, follow_ups=mode == "passive")
                if one_at_a_time is not None:
                    # the turn ends when the model has finished and its pushes have arrived
                    deadline = time.monotonic() + 120
                    while time.monotonic() < deadline and not (plans.get(i) and plans[i].total):
                        await asyncio.sleep(0.1)
                    settle = time.monotonic() + 5
                    while (time.monotonic() < settle
                           and verdict(merged(results[i], i), plans.get(i), faq_answer) != "ok"):
                        await asyncio.sleep(0.1)

            await asyncio.gather(*(one(i) for i in range(users)))
            # Wait for the model to finish every answer (and 客服 pushes to arrive) ...
            deadline = time.monotonic() + (STREAM_TOTAL[3] + 30) * scale + 30
            while time.monotonic() < deadline:
                if all(verdict(merged(results[i], i), plans.get(i), faq_answer) == "ok" for i in range(users)):
                    break
                finished = (standin.state.streams_done + standin.state.streams_aborted >= standin.state.call_count
                            if standin is not None else all(p.total for p in plans.values()))
                if finished and mode == "passive":
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.5)  # anything sent twice arrives meanwhile
            # ... then a user still missing part of it writes once more: "late", not lost, if it comes then.
            if mode == "passive":
                missing = [i for i in range(users) if verdict(merged(results[i], i), plans.get(i), faq_answer) != "ok"]
                for i in missing:
                    results[i].late = True

                async def once_more(i: int) -> None:
                    content, at = await write_again(i)
                    await follow(i, content, at, follow_ups=False)

                await asyncio.gather(*(once_more(i) for i in missing))
            continuing.cancel()
            await asyncio.gather(continuing, return_exceptions=True)
        elapsed = time.monotonic() - started
        _, peak_rss = rss_kib(server.pid)
    finally:
        stop_polling.set()
        await poller
        await asyncio.to_thread(server.stop)
        await api_runner.cleanup()
        if standin is not None:
            await standin.close()
        if proxy is not None:
            await proxy.close()
    rows = []
    for i, r in enumerate(results):
        m = merged(r, i)
        plan = plans.get(i)
        first_seen = min((at for at, _ in m.received), default=None)
        seen_before_writing = first_seen is not None and (m.wrote_again_at is None or first_seen <= m.wrote_again_at)
        rows.append({
            "verdict": verdict(m, plan, faq_answer),
            "ready_in_window": plan is not None and plan.first_sentence <= READY_WITHIN,
            "first_seen": None if first_seen is None else first_seen / scale,
            "without_writing": seen_before_writing,
            "wrote_again": r.follow_ups > 0, "continues": r.continues, "failed": r.failed,
            "silent_start": r.silent_start, "late": r.late and verdict(m, plan, faq_answer) == "ok",
            "pushes": sum(1 for _, who, _ in pushes if who == f"o_stream_{i:05d}"),
            "plan": plan})
    for i, row in enumerate(rows[:users]):
        if row["verdict"] != "ok" and sum(1 for x in rows[:i] if x["verdict"] != "ok") < 5:
            sent = [text for _, who, text in pushes if who == f"o_stream_{i:05d}"]
            print(f"  user {i}: {row['verdict']} {' '.join(results[i].trace)}"
                  + (f" pushes={len(sent)} last={sent[-1][-16:]!r}" if sent else ""), file=sys.stderr)
            if row["verdict"] == "mismatch":
                got = squeeze("".join(t for _, t in sorted(merged(results[i], i).received, key=lambda x: x[0])))
                want = squeeze(row["plan"].text if row["plan"] else "")
                at = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
                print(f"    differs at {at}: got {got[max(0, at - 20):at + 40]!r}\n"
                      f"                want {want[max(0, at - 20):at + 40]!r}", file=sys.stderr)
    return {"users": users, "mode": mode, "rows": rows, "elapsed": elapsed, "start_rss": start_rss,
            "peak_rss": peak_rss, "model_calls": proxy.calls if proxy else standin.state.call_count,
            "scale": scale, "local": bool(local_model)}


def stream_summary(case: dict) -> dict:
    rows = case["rows"]
    n = len(rows)
    ready = [r for r in rows if r["ready_in_window"]]
    seen = [r["first_seen"] for r in rows if r["first_seen"] is not None]
    verdicts = Counter(r["verdict"] for r in rows)
    plans = [r["plan"] for r in rows if r["plan"] is not None]
    return {
        "ready": len(ready),
        "ready_share": (sum(r["without_writing"] for r in ready) / len(ready)) if ready else None,
        "all_share": sum(r["without_writing"] for r in rows) / n if n else 0.0,
        "window_share": (sum(r["without_writing"] and r["first_seen"] is not None and r["first_seen"] <= WINDOW
                             for r in ready) / len(ready)) if ready else None,
        "p50": percentile(seen, 0.5), "p95": percentile(seen, 0.95),
        "wrote_again": sum(r["wrote_again"] for r in rows), "continues": sum(r["continues"] for r in rows),
        "complete": verdicts.get("ok", 0), "duplicates": verdicts.get("duplicate", 0),
        "lost": verdicts.get("lost", 0), "mismatch": verdicts.get("mismatch", 0),
        "failed": sum(r["failed"] for r in rows),
        "silent_start": sum(r["silent_start"] for r in rows), "late": sum(r["late"] for r in rows),
        "first_token_p50": percentile([p.first_token for p in plans], 0.5),
        "first_sentence_p50": percentile([p.first_sentence for p in plans], 0.5),
        "total_p50": percentile([p.total for p in plans], 0.5),
        "total_max": max((p.total for p in plans), default=None),
        "chars_p50": percentile([len(p.text) for p in plans], 0.5),
    }


def stream_report(cases: list[dict], args: argparse.Namespace, title: str) -> list[str]:
    fmt = lambda v, spec="{:.1f}": "-" if v is None else spec.format(v)  # noqa: E731
    lines = ["", f"## {title}", ""]
    if cases and cases[0]["local"]:
        lines.append(f"- A real model ({args.local_model}) behind a recording proxy (the full text, first "
                     "token and first sentence as the model wrote them); real time (scale 1); the users take turns "
                     f"(the server answers one request at a time); max_tokens {args.local_max_tokens}; the "
                     "sensitive-word filter off (it may mask words of a small model's garbled Chinese)")
    else:
        lines.append(f"- Time scale {args.scale:g}; the stand-in streams each answer (SSE, OpenAI chunks): "
                     "first token after 0.5-3 s (uniform), whole answer lognormal median 15 s, sigma 0.7, "
                     f"clipped 5-60 s, {CHARS_PER_SECOND:g} characters/s, a chunk every {CHUNK_SECONDS:g} s; "
                     f"arrivals {args.rate:g} messages per real second")
    lines += [f"- User side: 「继续」 {READ_PAUSE:g} s after a part (passive reply or 客服 push) that ends with the "
              "continue hint; in passive "
              f"mode a follow-up ({FOLLOW_UP}) {FOLLOW_UP_AFTER:g} s after a reply without the whole answer, at most "
              f"{MAX_FOLLOW_UPS} times (writing again); times in real (unscaled) seconds from the question",
              "- seen without writing again: the user's first visible text of the answer came before "
              "any follow-up; 'of ready' counts only users whose first sentence was ready within "
              f"{READY_WITHIN:g} s. complete / duplicates / lost / mismatch: everything the user received "
              "(passive replies and 客服 pushes, hints and the follow-up's own answer taken out, white space "
              "ignored) compared with the model's full text; late: complete only with one more message "
              f"after the {MAX_FOLLOW_UPS} follow-ups, once the model had finished", ""]
    rows = []
    for c in cases:
        s = stream_summary(c)
        n = c["users"]
        rows.append([n, c["mode"], f"{s['ready']}", fmt(s["ready_share"], "{:.1%}"), fmt(s["window_share"], "{:.1%}"),
                     f"{s['all_share']:.1%}",
                     f"{fmt(s['p50'])} / {fmt(s['p95'])}", s["wrote_again"], s["continues"],
                     s["silent_start"], f"{s['complete']}/{n}", s["late"], s["duplicates"], s["lost"],
                     s["mismatch"], s["failed"],
                     c["model_calls"],
                     f"{fmt(s['first_token_p50'])} / {fmt(s['first_sentence_p50'])} / {fmt(s['total_p50'])} / "
                     f"{fmt(s['total_max'])}; {fmt(s['chars_p50'], '{:.0f}')}",
                     f"{c['start_rss'] / 1024:.0f} / {c['peak_rss'] / 1024:.0f}"])
    lines += md_table(["users", "delivery", "first sentence ready ≤14 s", "seen without writing again, of ready",
                       "of ready, seen within 15 s", "seen without writing again, all", "first visible text p50 / p95 s", "users who wrote again",
                       "「继续」 sent", "question's 3 tries unanswered", "complete", "of them late",
                       "duplicates", "lost", "mismatch", "polite failure", "model calls",
                       "model first token / first sentence / whole p50, whole max s; characters p50", "bot RSS start/peak MiB"], rows)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description="the 5-second window: N users, a slow model")
    parser.add_argument("--push-gather", type=float, default=6.0,
                        help="customer_service: delivery.push_gather in unscaled seconds (default 6, shipped; 0 = "
                             "a push per paragraph)")
    parser.add_argument("--users", default="100,1000", help="comma-separated user counts (default 100,1000)")
    parser.add_argument("--scale", type=float, default=0.5, help="time scale (default 0.5: 5 s -> 2.5 s)")
    parser.add_argument("--rate", type=float, default=50.0, help="messages arriving per real second (default 50)")
    parser.add_argument("--dists", default="realistic,slow", help="model latency spreads (default realistic,slow)")
    parser.add_argument("--modes", default="passive,customer_service", help="delivery modes (default both)")
    parser.add_argument("--cases", default="window,stream",
                        help="window: the answer in one piece, latency 0.5-12 s; stream: a streaming model, "
                             "first token 0.5-3 s, answers 5-60 s (default both)")
    parser.add_argument("--local-model", metavar="URL",
                        help="instead: a real OpenAI-compatible model server at URL (…/v1), real time, "
                             "one user at a time (bench/local_model.sh starts one)")
    parser.add_argument("--local-users", type=int, default=6, help="users asking the local model (default 6)")
    parser.add_argument("--local-max-tokens", type=int, default=200,
                        help="the provider's max_tokens for the local model (default 200: a short WeChat answer)")
    args = parser.parse_args()
    PUSH_GATHER[0] = args.push_gather
    workdir = Path(tempfile.mkdtemp(prefix="skillbot-bench-window-"))
    if args.local_model:
        lines = report_header("A real local model end to end")
        cases = []
        for mode in args.modes.split(","):
            case = asyncio.run(run_stream_case(args.local_users, mode, 1.0, 1.0, workdir,
                                               local_model=args.local_model, questions=LOCAL_QUESTIONS,
                                               max_tokens=args.local_max_tokens))
            print(f"local {mode:16s} {stream_summary(case)}", file=sys.stderr)
            cases.append(case)
        lines += stream_report(cases, args, "A real local model: time to the first visible text")
        print("\n".join(lines))
        shutil.rmtree(workdir, ignore_errors=True)
        return
    kinds = args.cases.split(",")
    lines: list[str] = []
    if "window" in kinds:
        lines += window_report(args, workdir)
    if "stream" in kinds:
        cases = []
        for users in (int(u) for u in args.users.split(",")):
            for mode in args.modes.split(","):
                case = asyncio.run(run_stream_case(users, mode, args.scale, args.rate, workdir))
                s = stream_summary(case)
                print(f"stream {users:5d} {mode:16s} ready={s['ready']} share={s['ready_share']} "
                      f"p50={s['p50']} p95={s['p95']} complete={s['complete']} dup={s['duplicates']} "
                      f"lost={s['lost']} mismatch={s['mismatch']} {case['elapsed']:.1f}s", file=sys.stderr)
                cases.append(case)
        if not lines:
            lines = report_header("A streaming model and WeChat's window")
        lines += stream_report(cases, args, "A streaming model: first token 0.5-3 s, answers 5-60 s")
        bad = [c for c in cases if (lambda s: s["duplicates"] or s["lost"] or s["mismatch"])(stream_summary(c))]
        lines.append("")
        lines.append("- Streamed answers duplicated, lost or garbled: " + ("none" if not bad else "FOUND in " + ", ".join(
            f"{c['users']}/{c['mode']}" for c in bad)))
        for c in cases:
            if c["mode"] == "customer_service":
                counts = [r["pushes"] for r in c["rows"]]
                lines.append(f"- {c['users']} users, customer_service (push_gather {PUSH_GATHER[0]:g} s): 客服 pushes "
                             f"per answer mean {sum(counts) / max(len(counts), 1):.2f}, max {max(counts, default=0)}; "
                             f"answers that needed 「继续」: {sum(1 for r in c['rows'] if r['continues'])}")
    print("\n".join(lines))
    shutil.rmtree(workdir, ignore_errors=True)


#: Short questions for a small local model (SmolLM2 speaks English best); a number is added to each.
LOCAL_QUESTIONS = ["What is the Great Wall of China? Answer in two sentences.",
                   "Give me three tips for learning a new language.",
                   "Why is the sky blue?",
                   "Write a short poem about the sea.",
                   "What should I pack for a weekend trip?",
                   "Explain what a computer program is to a child."]


def window_report(args: argparse.Namespace, workdir: Path) -> list[str]:
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
    return lines


if __name__ == "__main__":
    os.chdir(ROOT)
    main()

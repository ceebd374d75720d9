"""/metrics in the Prometheus text format, filled by real messages through the real webhook,
and the one-line-per-message log."""
from __future__ import annotations

import asyncio
import json
import logging
import re

from core import TextReply, hookimpl
from core.operations.logs import JsonFormatter
from core.operations.metrics import Counter, Histogram, Registry, hash_user
from core.operations.wechat_client import deliver_like_wechat, text_xml
from tests.standins.openai_server import OpenAIStandIn, server_error

# ---- a strict reader of the exposition format ------------------------------------------------------

_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*"'
_SAMPLE = re.compile(rf'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{{{_LABEL}(?:,{_LABEL})*\}})? '
                     r'(-?[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?|\+Inf|-Inf|NaN)$')
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"')


def parse_exposition(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample as {(name, labels): value}; asserts HELP/TYPE precede each family."""
    assert text.endswith("\n")
    samples: dict[tuple[str, frozenset], float] = {}
    typed: dict[str, str] = {}
    helped: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in ("counter", "gauge", "histogram"), line
            assert name in helped, f"TYPE before HELP: {line}"
            typed[name] = kind
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a valid sample line: {line!r}"
        name, labels, value = match.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in typed else name
        assert family in typed, f"sample without TYPE: {line}"
        pairs = frozenset((k, v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\"))
                          for k, v in _PAIR.findall(labels or ""))
        key = (name, pairs)
        assert key not in samples, f"duplicate sample {line}"
        samples[key] = float(value)
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: dict, name: str, **labels: str) -> float:
    """Sum over every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, pairs), v in samples.items() if n == name and wanted <= set(pairs))


async def scrape(h, token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await h.client.get("/metrics", headers=headers)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse_exposition(await response.text())


# ---- plugins used as stand-in skills ---------------------------------------------------------------

class Echo:
    @hookimpl
    def skillbot_fallback(self, ctx):
        return TextReply("回声：" + ctx.message.text) if ctx.message.text else None


class CachedAnswer:
    """Answers from a named cache, filling it on a miss (like a skill caching an upstream call)."""

    def __init__(self):
        self.cache = None

    @hookimpl
    def skillbot_startup(self, bot, config):
        self.cache = bot.cache("demo_answers", maxsize=16, ttl=60)

    @hookimpl
    async def skillbot_fallback(self, ctx):
        text = ctx.message.text
        if not text:
            return None
        cached = await self.cache.get(text)
        if cached is None:
            cached = "答：" + text
            await self.cache.set(text, cached)
        return TextReply(cached)


class Gate:
    """A fallback that waits until the test opens the gate: an answer slower than every try."""

    def __init__(self):
        self.open = asyncio.Event()

    @hookimpl
    async def skillbot_fallback(self, ctx):
        await self.open.wait()
        return TextReply("终于好了")


# ---- the registry ------------------------------------------------------------------------------------

def test_registry_renders_counters_and_cumulative_histograms():
    registry = Registry()
    counter = registry.add(Counter("demo_total", "A demo counter.", ("kind",)))
    histogram = registry.add(Histogram("demo_seconds", "A demo histogram.", ("stage",), (0.1, 1.0)))
    counter.inc('quote"back\\slash\nline')
    counter.inc("plain", amount=2)
    for seconds in (0.05, 0.5, 0.5, 7.0):
        histogram.observe(seconds, "route")
    samples = parse_exposition(registry.render())
    assert value(samples, "demo_total", kind='quote"back\\slash\nline') == 1
    assert value(samples, "demo_total", kind="plain") == 2
    assert value(samples, "demo_seconds_bucket", stage="route", le="0.1") == 1
    assert value(samples, "demo_seconds_bucket", stage="route", le="1") == 3
    assert value(samples, "demo_seconds_bucket", stage="route", le="+Inf") == 4
    assert value(samples, "demo_seconds_count", stage="route") == 4
    assert value(samples, "demo_seconds_sum", stage="route") == 8.05


# ---- end to end --------------------------------------------------------------------------------------

async def test_messages_stages_rejections_and_retries_are_counted(wechat):
    h = await wechat(enabled=["welcome"], plugins={"echo": Echo()})
    assert (await h.say("你好", user="o_m1"))[0] == 200
    assert (await h.event("subscribe", user="o_m2"))[0] == 200
    retried = text_xml("重复的消息", from_user="o_m3", msg_id=777001)
    first = await h.post_xml(retried)
    second = await h.post_xml(retried)  # WeChat's retry: our first reply did not reach it
    # the same reply again; rendered anew, so its CreateTime may be the next second
    same = [re.sub(r"<CreateTime>\d+</CreateTime>", "", await r.text()) for r in (first, second)]
    assert "回声" in same[0] and same[1] == same[0]
    bad = h.signer.sign(text_xml("x"))
    bad.params["signature"] = "0" * 40
    assert (await h.client.post(h.path, params=bad.params, data=bad.body)).status == 403

    samples = await scrape(h)
    assert value(samples, "skillbot_messages_total", type="text", intent="fallback", plugin="echo") == 2
    assert value(samples, "skillbot_messages_total", type="event.subscribe", intent="welcome.subscribe",
                 plugin="welcome") == 1
    assert value(samples, "skillbot_message_outcomes_total", outcome="answered") == 3
    assert value(samples, "skillbot_requests_total", type="text") == 3  # the retry is a request
    assert value(samples, "skillbot_rejected_total", status="403") == 1
    assert value(samples, "skillbot_tries_total", result="repeated") == 1  # the same answer again
    assert value(samples, "skillbot_retries_deduplicated_total") == 0
    assert value(samples, "skillbot_tries_total", result="first_try") == 3
    for stage in ("verify", "parse", "inbound", "route", "fallback", "outbound", "pipeline", "render", "request"):
        assert value(samples, "skillbot_stage_seconds_count", stage=stage) >= 1, stage
    assert value(samples, "skillbot_state_up", backend="memory") == 1


async def test_model_latency_tokens_and_errors(wechat):
    async with OpenAIStandIn() as llm:
        h = await wechat(enabled=["llm"], overrides={"plugins": {"llm": {
            "providers": [llm.provider("standin"), llm.provider("backup")],
            "circuit_breaker_failures": 5}}})
        assert (await h.say("讲个笑话", user="o_llm"))[1]["Content"] == "回声：讲个笑话"
        llm.state.default = server_error(500)
        status, fields, _ = await h.say("再讲一个", user="o_llm")
        assert status == 200 and "回声" not in fields["Content"]  # the polite apology
        samples = await scrape(h)
    assert value(samples, "skillbot_model_latency_seconds_count", provider="standin") == 1
    assert value(samples, "skillbot_model_tokens_total", provider="standin", kind="prompt") > 0
    assert value(samples, "skillbot_model_tokens_total", provider="standin", kind="completion") > 0
    assert value(samples, "skillbot_model_attempts_total", provider="standin", outcome="ok") == 1
    assert value(samples, "skillbot_model_attempts_total", provider="standin", outcome="server_error") == 1
    assert value(samples, "skillbot_model_attempts_total", provider="backup", outcome="server_error") == 1
    assert total(samples, "skillbot_model_errors_total") == 1


async def test_cache_and_filter_hits(wechat):
    h = await wechat(enabled=["filter", "welcome"], plugins={"cached": CachedAnswer()})
    for _ in range(3):
        await h.say("营业时间", user="o_cache")
    status, fields, _ = await h.say("你这个脑残", user="o_filter")  # masked insult
    assert status == 200 and "脑残" not in fields["Content"]
    status, fields, _ = await h.say("傻逼", user="o_filter")  # blocked
    samples = await scrape(h)
    assert value(samples, "skillbot_cache_misses_total", cache="demo_answers") >= 1
    assert value(samples, "skillbot_cache_hits_total", cache="demo_answers") == 2
    assert value(samples, "skillbot_filter_hits_total", direction="inbound", action="mask",
                 category="insult") == 1
    assert total(samples, "skillbot_filter_hits_total", direction="inbound", action="block") == 1
    assert value(samples, "skillbot_message_outcomes_total", outcome="filtered") == 1


async def test_answer_that_misses_every_try_is_counted(wechat):
    gate = Gate()
    h = await wechat(enabled=["welcome"], plugins={"gate": gate},
                     overrides={"delivery": {"try_budget": 0.2, "hold_seconds": 0.3}})
    url = str(h.client.make_url(h.path))
    results = await deliver_like_wechat(h.client.session, url, h.signer,
                                        text_xml("慢问题", from_user="o_slow", msg_id=880001), try_timeout=0.5)
    assert [r.status for r in results] == [None, None, 200]  # the third try gets "still thinking"
    gate.open.set()
    samples = await scrape(h)
    assert value(samples, "skillbot_answers_missed_window_total") == 1
    assert value(samples, "skillbot_tries_total", result="held") == 2


async def test_metrics_need_the_admin_token_when_one_is_set(wechat):
    h = await wechat(enabled=["welcome"], overrides={"server": {"admin_token": "s3cret"}})
    response = await h.client.get("/metrics")
    assert response.status == 401 and "skillbot_" not in await response.text()
    response = await h.client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert response.status == 401
    samples = await scrape(h, token="s3cret")
    assert ("skillbot_start_time_seconds", frozenset()) in samples


# ---- the message log line ------------------------------------------------------------------------------

async def test_one_log_line_per_message_with_hashed_user(wechat, caplog):
    h = await wechat(enabled=["welcome"], plugins={"echo": Echo()})
    caplog.set_level(logging.INFO, logger="skillbot.gateway")
    xml = text_xml("日志测试", from_user="o_secret_openid", msg_id=990001)
    await h.post_xml(xml)
    await h.post_xml(xml)  # a retry: no second message line
    lines = [r for r in caplog.records if r.name == "skillbot.gateway" and getattr(r, "total_ms", None) is not None]
    assert len(lines) == 1
    record = lines[0]
    assert record.user == hash_user("o_secret_openid") and len(record.user) == 10
    assert (record.intent, record.plugin, record.status) == ("fallback", "echo", "answered")
    assert "o_secret_openid" not in record.getMessage()
    data = json.loads(JsonFormatter().format(record))
    assert {"msg_id", "user", "intent", "plugin", "status", "total_ms"} <= set(data)
    assert data["user"] == record.user and data["msg_id"] == record.msg_id

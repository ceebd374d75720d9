"""Hooks that no skill test covers on its own: skillbot_jieba_words, skillbot_message_done,
skillbot_explain, skillbot_metrics and skillbot_add_hookspecs, and the stop rule read from the spec."""
from __future__ import annotations

import json

import pytest

from core import Counter, Explanation, Intent, TextReply, hookimpl, hookspec
from core.app import create_app
from core.appkeys import GATEWAY_KEY
from core.operations.chat_console import Exchange, Inbound, describe, signer_for
from core.operations.reload import RELOADER_KEY
from core.operations.wechat_client import text_xml
from core.settings import load_settings
from core.testing import write_settings


class CakeShop:
    """Adds product names to jieba so they stay whole, and routes on them."""

    @hookimpl
    def skillbot_jieba_words(self):
        return ["蓝莓芝士蛋糕", ("抹茶千层", 2000, "n")]

    @hookimpl
    def skillbot_intents(self):
        return [Intent("cake.price", keywords=["抹茶千层", "蓝莓芝士蛋糕"])]

    @hookimpl
    def skillbot_handle(self, ctx, candidate):
        return TextReply("蛋糕：" + "/".join(candidate.evidence.get("keywords", [])))


async def test_skillbot_jieba_words_keeps_words_whole(make_bot):
    async with make_bot({"plugins": {"enabled": ["welcome"]}}, plugins={"cakes": CakeShop()}) as bot:
        assert "蓝莓芝士蛋糕" in bot.tokenize("我想要一个蓝莓芝士蛋糕")
        assert "抹茶千层" in bot.tokenize("抹茶千层多少钱")
        reply = await bot.send("抹茶千层多少钱")
        assert (reply.plugin, reply.intent) == ("cakes", "cake.price")
    async with make_bot({"plugins": {"enabled": ["welcome"]}}) as other:
        assert "蓝莓芝士蛋糕" not in other.tokenize("我想要一个蓝莓芝士蛋糕")  # words never leak between bots


class Audit:
    def __init__(self):
        self.seen = []

    @hookimpl
    def skillbot_message_done(self, ctx, reply):
        self.seen.append((ctx.message.text, reply.content, reply.plugin, set(ctx.timings)))


class Broken:
    @hookimpl
    def skillbot_message_done(self, ctx, reply):
        raise RuntimeError("observer bug")


class Masks:
    @hookimpl
    def skillbot_fallback(self, ctx):
        return TextReply("原始回复")

    @hookimpl
    def skillbot_outbound_filter(self, ctx, reply):
        return TextReply("改过的回复")


async def test_skillbot_message_done_sees_the_final_reply_and_cannot_break_it(make_bot):
    audit = Audit()
    plugins = {"broken": Broken(), "masks": Masks(), "audit": audit}
    async with make_bot({"plugins": {"enabled": ["welcome"]}}, plugins=plugins) as bot:
        reply = await bot.send("随便说点什么")
    assert reply.content == "改过的回复"  # the raising observer changed nothing
    text, content, plugin, stages = audit.seen[0]  # every implementation is called, even after one raised
    assert (text, content, plugin) == ("随便说点什么", "改过的回复", "masks")
    assert {"inbound", "route", "skill", "fallback", "outbound"} <= stages


# ---- skillbot_explain --------------------------------------------------------------------------------

class Explainer:
    @hookimpl
    def skillbot_fallback(self, ctx):
        ctx.extra["explainer"] = {"looked_at": ctx.message.text}
        return TextReply("解释过了")

    @hookimpl
    def skillbot_explain(self, ctx):
        seen = ctx.extra.get("explainer")
        if seen is None:
            return None
        return Explanation("explainer", "looked at one message", items=[seen["looked_at"]],
                           data={**seen, "not json": {1: {"a set"}}})


class WrongExplainer:
    @hookimpl
    def skillbot_explain(self, ctx):
        return {"title": "not an Explanation"}


async def test_skillbot_explain_blocks_reach_the_explanation_and_the_chat_console(make_bot, caplog):
    plugins = {"explainer": Explainer(), "wrong": WrongExplainer()}
    async with make_bot({"plugins": {"enabled": ["filter"]}}, plugins=plugins) as bot:
        await bot.send("你这个脑残在看什么")  # masked by the filter, then answered by the fallback
        explain = bot.explain(bot.last_context)
    by_plugin = {block["plugin"]: block for block in explain["blocks"]}
    assert set(by_plugin) == {"filter", "explainer"}  # the dict from "wrong" is left out, with a warning
    assert by_plugin["explainer"] == {"plugin": "explainer", "title": "explainer",
                                      "summary": "looked at one message", "items": ["你这个**在看什么"],
                                      "data": {"looked_at": "你这个**在看什么", "not json": {"1": "{'a set'}"}}}
    json.dumps(explain)  # stored with the answer record: plain JSON whatever a plugin put in data
    assert by_plugin["filter"]["title"] == "敏感词命中" and by_plugin["filter"]["data"]["hits"][0]["word"] == "脑残"
    assert "plugin wrong: skillbot_explain returned dict, not an Explanation" in caplog.text
    exchange = Exchange(Inbound(xml="<xml/>", key="k", kind="text"), [], reply={"MsgType": "text", "Content": "解释过了"},
                        explain=explain)
    lines = describe(exchange)
    assert "     explainer: looked at one message" in lines and "     敏感词命中: 1 处" in lines
    assert "       - 你这个**在看什么" not in lines and "       - 你这个**在看什么" in describe(exchange, verbose=True)


async def test_an_explanation_names_no_plugin_data_of_its_own(make_bot):
    async with make_bot({"plugins": {"enabled": ["welcome"]}}) as bot:
        await bot.send("随便说点什么")
        explain = bot.explain(bot.last_context)
    assert set(explain) == {"id", "timings_ms", "route", "plugin", "intent", "blocks"} and explain["blocks"] == []


# ---- skillbot_metrics --------------------------------------------------------------------------------

class Tally:
    """Counts the replies it saw, by plugin, in a family of its own."""

    def __init__(self):
        self.replies = Counter("tally_replies_total", "Replies seen by the tally plugin.", ("plugin",))

    @hookimpl
    def skillbot_metrics(self):
        return [self.replies, Counter("skillbot_messages_total", "a name the core uses", ()), object()]

    @hookimpl
    def skillbot_message_done(self, ctx, reply):
        self.replies.inc(reply.plugin or "-")


def samples(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name)]


async def scrape(client) -> str:
    response = await client.get("/metrics")
    assert response.status == 200
    return await response.text()


async def test_skillbot_metrics_families_are_rendered_by_the_core(wechat, caplog):
    h = await wechat(enabled=["welcome"], plugins={"tally": Tally()})
    for _ in range(2):
        status, fields, _ = await h.say("随便说点什么", user="o_tally")
        assert status == 200
    text = await scrape(h.client)
    assert "# TYPE tally_replies_total counter" in text
    assert samples(text, "tally_replies_total") == ['tally_replies_total{plugin="core"} 2']
    assert text.count("# TYPE skillbot_messages_total ") == 1  # the core's own name is not taken over
    assert "plugin tally: skillbot_metrics returned object, not a metric family" in caplog.text


FILTERED = {"server": {"reload_interval": 0}}


async def test_plugin_metrics_keep_counting_across_a_settings_reload(aiohttp_client, tmp_path):
    """The filter is a folder plugin (a fresh instance after a reload); the tally is given in code
    (the same instance is registered again): neither count goes back, neither is counted twice."""
    path = tmp_path / "settings.toml"
    write_settings(path, {**FILTERED, "plugins": {"enabled": ["filter", "welcome"]}})
    app = create_app(load_settings(path), {"tally": Tally()})
    client = await aiohttp_client(app)
    signer = signer_for(app[GATEWAY_KEY].bot.settings)

    async def say(text: str) -> None:
        request = signer.sign(text_xml(text, from_user="o_reload_metrics"))
        assert (await client.post("/wechat", params=request.params, data=request.body)).status == 200

    await say("你这个脑残")
    old_filter = app[GATEWAY_KEY].bot.pm.get_plugin("filter")
    write_settings(path, {**FILTERED, "plugins": {"enabled": ["filter", "welcome"],
                                                  "filter": {"mask_char": "#"}}})
    assert (await app[RELOADER_KEY].check()).outcome == "applied"
    await app[RELOADER_KEY].drain()
    assert app[GATEWAY_KEY].bot.pm.get_plugin("filter") is not old_filter
    await say("你这个脑残")
    text = await scrape(client)
    assert 'skillbot_filter_hits_total{direction="inbound",action="mask",category="insult"} 2' in text
    assert sum(float(line.rsplit(" ", 1)[1]) for line in samples(text, "tally_replies_total")) == 2


# ---- skillbot_add_hookspecs, and the stop rule read from the spec ---------------------------------------

class GreetingSpecs:
    """Hooks a plugin adds: one that stops at the first answer, one that asks everybody."""

    @hookspec(firstresult=True)
    def skillbot_greeting(self, name: str) -> str | None:
        """The greeting for ``name``. Stops at the first non-None result."""

    @hookspec
    def skillbot_greeting_words(self) -> list[str]:
        """Words of greeting. Every implementation is called."""


class Greeter:
    """Declares the hooks and answers one of them."""

    def __init__(self):
        self.said = []

    @hookimpl
    def skillbot_add_hookspecs(self, pm):
        pm.add_hookspecs(GreetingSpecs)

    @hookimpl
    def skillbot_greeting(self, name):
        self.said.append(name)
        return f"你好，{name}"

    @hookimpl
    def skillbot_greeting_words(self):
        return ["你好"]


class Polite:
    """Implements the added hooks; registered before the plugin that declares them."""

    def __init__(self):
        self.said = []

    @hookimpl
    async def skillbot_greeting(self, name):
        self.said.append(name)
        return f"您好，{name}"

    @hookimpl
    def skillbot_greeting_words(self):
        return ["您好"]


async def test_a_plugin_adds_hooks_and_the_caller_applies_their_stop_rule(make_bot):
    greeter, polite = Greeter(), Polite()
    async with make_bot({"plugins": {"enabled": ["welcome"]}},
                        plugins={"polite": polite, "greeter": greeter}) as bot:
        assert bot.hooks.stops_at_first("skillbot_greeting")
        assert not bot.hooks.stops_at_first("skillbot_greeting_words")
        first = await bot.hooks.call("skillbot_greeting", {"name": "小明"})
        assert [(r.plugin, r.value) for r in first] == [("polite", "您好，小明")]
        assert polite.said == ["小明"] and greeter.said == []  # stopped at the first answer
        every = await bot.hooks.call("skillbot_greeting_words", {})
        assert [(r.plugin, r.value) for r in every] == [("polite", ["您好"]), ("greeter", ["你好"])]


async def test_the_core_stop_rules_come_from_the_specs(make_bot):
    async with make_bot({"plugins": {"enabled": ["welcome"]}}) as bot:
        first = {name for name in ("skillbot_inbound_filter", "skillbot_handle", "skillbot_fallback",
                                   "skillbot_outbound_filter", "skillbot_message_done", "skillbot_health")
                 if bot.hooks.stops_at_first(name)}
    assert first == {"skillbot_inbound_filter", "skillbot_handle", "skillbot_fallback"}


class Misspelt:
    @hookimpl
    def skillbot_greting(self, name):  # neither core nor any plugin declares this
        return "?"


async def test_an_implementation_of_a_hook_nobody_added_stops_start_up(make_bot):
    with pytest.raises(Exception, match="skillbot_greting"):
        async with make_bot({"plugins": {"enabled": ["welcome"]}},
                            plugins={"greeter": Greeter(), "misspelt": Misspelt()}):
            pass

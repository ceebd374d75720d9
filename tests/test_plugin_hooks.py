"""Hooks that no skill test covers on its own: skillbot_jieba_words and skillbot_message_done."""
from __future__ import annotations

from core import Intent, TextReply, hookimpl


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

"""Continuation (「继续」) and the rate limit are stages of the bot's pipeline (Bot.answer), so the
test helper plugin authors use (core.testing.running_bot) goes through them as WeChat's do."""
from __future__ import annotations

from core import TextReply, hookimpl
from core.testing import running_bot


class Echo:
    """Answers every text and notes what reached the plugins."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.done = 0

    @hookimpl
    def skillbot_fallback(self, ctx):
        self.seen.append(ctx.message.text)
        return TextReply("回声：" + ctx.message.text) if ctx.message.text else None

    @hookimpl
    def skillbot_message_done(self, ctx, reply):
        self.done += 1


async def test_the_test_helper_sees_the_rate_limit():
    echo = Echo()
    # Two messages of burst, and a refill too slow to matter within the test.
    async with running_bot({"ratelimit": {"enabled": True, "burst": 2, "rate": 0.0001}}, [echo]) as bot:
        replies = [await bot.send(f"第{i}条") for i in range(3)]
        refusal = bot.settings.ratelimit.reply
        other_user = await bot.send("我是别人", user="o_other")
        event = await bot.send_event("subscribe")  # events are never limited
        history = await bot.conversations.history("test_user")
    assert [r.intent for r in replies] == ["fallback", "fallback", "rate_limited"]
    assert replies[2] == TextReply(refusal) and replies[2].plugin == "core"
    assert other_user.content == "回声：我是别人"
    assert event.intent != "rate_limited"
    # The refused message reached no plugin and is not in the user's history.
    assert echo.seen == ["第0条", "第1条", "我是别人"]
    assert "第2条" not in [turn.text for turn in history]


async def test_the_test_helper_sees_continuation():
    echo = Echo()
    async with running_bot(plugins=[echo]) as bot:
        hint = bot.settings.delivery.continue_hint
        # What the delivery keeps after sending the first part of a long answer.
        await bot.state.answers.set_parts("test_user", ["第二段", "第三段"], 60)
        second = await bot.send("继续")
        third = await bot.send("更多")
        nothing_left = await bot.send("继续")
        explained = bot.explain(bot.last_context)
    assert (second.content, second.plugin, second.intent) == ("第二段" + hint, "core", "continue")
    assert (third.content, third.intent) == ("第三段", "continue")
    # With nothing kept, 「继续」 is an ordinary message for the plugins.
    assert nothing_left.content == "回声：继续"
    assert echo.seen == ["继续"] and echo.done == 1
    assert explained["intent"] == "fallback"


async def test_bot_answer_gives_the_reply_its_explanation_and_stage():
    async with running_bot(plugins=[Echo()]) as bot:
        await bot.state.answers.set_parts("test_user", ["下一段"], 60)
        continued = await bot.answer(bot.text_message("继续"))
        answered = await bot.answer(bot.text_message("请重复这句话"))
    assert (continued.stage, continued.reply.content, continued.intent) == ("continuation", "下一段", "continue")
    assert (answered.stage, answered.plugin, answered.intent) == ("pipeline", "test_plugin_0", "fallback")
    assert answered.explanation["route"] is not None
    record = answered.to_record()
    assert record["explain"] == answered.explanation and "stage" not in record
    assert type(answered).from_record(record).reply == answered.reply

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
    # No FAQ: what an ordinary message means to the demo shop is not this test's business.
    async with running_bot({"plugins": {"enabled": ["filter", "llm"]}}, plugins=[echo]) as bot:
        hint = bot.settings.delivery.continue_hint
        # What the delivery keeps after sending the first part of a long answer.
        await bot.state.answers.enqueue("test_user", "rest:1", ["第二段。", "第三段。"], 60, closed=True)
        second = await bot.send("继续")
        third = await bot.send("更多")
        nothing_left = await bot.send("继续")
        explained = bot.explain(bot.last_context)
    assert (second.content, second.plugin, second.intent) == ("第二段。第三段。", "core", "continue")
    assert (third.content, third.intent) == ("回声：更多", "fallback")  # nothing waits any more
    # With nothing kept, 「继续」 is an ordinary message for the plugins.
    assert nothing_left.content == "回声：继续"
    assert echo.seen == ["更多", "继续"] and echo.done == 2
    assert explained["intent"] == "fallback"


async def test_bot_answer_gives_the_reply_its_explanation_and_stage():
    async with running_bot(plugins=[Echo()]) as bot:
        await bot.state.answers.enqueue("test_user", "rest:1", ["下一段"], 60, closed=True)
        continued = await bot.answer(bot.text_message("继续"))
        answered = await bot.answer(bot.text_message("请重复这句话"))
    assert (continued.stage, continued.reply.content, continued.intent) == ("continuation", "下一段", "continue")
    assert (answered.stage, answered.plugin, answered.intent) == ("pipeline", "test_plugin_0", "fallback")
    assert answered.explanation["route"] is not None
    record = answered.to_record()
    assert record["explain"] == answered.explanation and "stage" not in record
    assert type(answered).from_record(record).reply == answered.reply


async def test_through_the_webhook_a_refused_message_keeps_answers_waiting_for_the_user(wechat):
    """The webhook path goes through the same stages: 「继续」 takes everything waiting for the
    user, in order, in one message when it fits; the rate limit's refusal takes nothing."""
    from core.access.replies import Answer
    from core.appkeys import BOTS_KEY

    echo = Echo()
    h = await wechat(overrides={"ratelimit": {"enabled": True, "burst": 1, "rate": 0.0001}},
                     plugins={"echo": echo}, enabled=[])
    bot = h.client.app[BOTS_KEY].bot
    kept = Answer(TextReply("早先的回答", plugin="echo", intent="fallback")).to_record()
    await bot.state.answers.enqueue("o_user_1", "rest:1", ["后半段"], 60, closed=True)
    await bot.state.answers.enqueue("o_user_1", "kept:1", [kept["content"]], 60, closed=True)
    _, continued, _ = await h.say("继续")
    _, first, _ = await h.say("第一条")
    _, refused, _ = await h.say("第二条")
    scraped = await (await h.client.get("/metrics")).text()
    assert continued["Content"] == "后半段\n\n早先的回答"  # all that waits, in order, in one message
    assert first["Content"] == "回声：第一条"
    assert refused["Content"] == bot.settings.ratelimit.reply
    assert echo.seen == ["第一条"]
    assert "skillbot_rate_limited_total 1\n" in scraped
    assert 'skillbot_message_outcomes_total{outcome="continue"} 1' in scraped

"""The LLM plugin's answer cache through a running bot and a local OpenAI-compatible stand-in that
counts calls: repeated questions without personal context are answered once by the model."""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from core import hookimpl
from core.testing import running_bot
from tests.standins.openai_server import OpenAIStandIn, answer, cut, filtered, server_error
from tests.test_metrics import scrape, value


def cache_settings(llm: OpenAIStandIn, *, enabled: bool = True, **cache: Any) -> dict[str, Any]:
    return {"plugins": {"enabled": ["llm"], "llm": {
        "providers": [llm.provider()], "circuit_breaker_failures": 50,
        "answer_cache": {"enabled": enabled, **cache}}}}


@pytest.fixture
async def llm():
    async with OpenAIStandIn() as server:
        server.state.responder = lambda messages: "长城是中国古代的军事防御工程。"
        yield server


class Nickname:
    """An inbound filter that knows the user's nickname (as a user-info plugin would)."""

    @hookimpl
    def skillbot_inbound_filter(self, ctx):
        if ctx.user == "named_user":
            ctx.extra["nickname"] = "小明"


async def test_a_repeated_question_is_answered_by_one_model_call(llm):
    async with running_bot(cache_settings(llm)) as bot:
        replies = [await bot.send("长城有多长", user=f"user_{i}") for i in range(4)]
        explain = bot.explain(bot.last_context)
        assert await bot.conversations.history("user_3") != []  # a cached answer is history too
    assert {r.content for r in replies} == {"长城是中国古代的军事防御工程。"}
    assert llm.state.call_count == 1
    block = next(b for b in explain["blocks"] if b["plugin"] == "llm")
    assert block["data"]["cache"] == "stored" and "来自回答缓存" in block["summary"]
    assert block["data"]["tokens_saved"] > 0


async def test_the_cache_is_off_by_default(llm):
    settings = cache_settings(llm)
    del settings["plugins"]["llm"]["answer_cache"]
    async with running_bot(settings) as bot:
        for i in range(3):
            await bot.send("长城有多长", user=f"user_{i}")
    assert llm.state.call_count == 3


async def test_wordings_with_the_same_normal_form_share_an_answer(llm):
    async with running_bot(cache_settings(llm)) as bot:
        await bot.send("什么是机器学习？", user="a")
        await bot.send("什麼是機器學習?", user="b")  # traditional characters
        await bot.send("什么是机器学习 ？？😀", user="c")  # full-width, repeated, emoji
        await bot.send("ＡＰＩ是什么", user="d")
        await bot.send("api是什么", user="e")  # full-width letters and case
        await bot.send("什么是深度学习", user="f")  # another question
    assert [c.messages[-1]["content"] for c in llm.state.calls] == [
        "什么是机器学习？", "ＡＰＩ是什么", "什么是深度学习"]


async def test_a_question_with_conversation_history_asks_the_model(llm):
    async with running_bot(cache_settings(llm)) as bot:
        await bot.send("它有多长", user="a")
        await bot.send("我在说长城", user="b")
        reply = await bot.send("它有多长", user="b")  # "它" means what b said before
        await bot.send("它有多长", user="c")  # no context: the cache answers
    assert reply.content == "长城是中国古代的军事防御工程。"
    assert llm.state.call_count == 3
    assert [m["role"] for m in llm.state.calls[2].messages] == ["system", "user", "assistant", "user"]


async def test_after_a_reset_the_cache_answers_again(llm):
    async with running_bot(cache_settings(llm)) as bot:
        await bot.send("长城有多长", user="a")
        await bot.send("你好", user="b")
        await bot.send("重新开始", user="b")
        await bot.send("长城有多长", user="b")
    assert llm.state.call_count == 2  # "长城有多长" once, "你好" once


async def test_a_nickname_in_the_prompt_keeps_answers_apart(llm):
    async with running_bot(cache_settings(llm), plugins=[Nickname()]) as bot:
        await bot.send("讲个笑话", user="named_user")
        await bot.send("讲个笑话", user="plain_user")
        await bot.send("讲个笑话", user="another_plain_user")
    assert llm.state.call_count == 2


@pytest.mark.parametrize("failure", ["error", "cut", "filtered"])
async def test_failed_cut_and_filtered_answers_are_not_kept(llm, failure):
    llm.state.script.append({"error": server_error(500), "cut": cut("长城是"),
                             "filtered": filtered()}[failure])
    async with running_bot(cache_settings(llm)) as bot:
        first = await bot.send("长城有多长", user="a")
        second = await bot.send("长城有多长", user="b")
        third = await bot.send("长城有多长", user="c")
    assert first.content != "长城是中国古代的军事防御工程。"
    assert second.content == third.content == "长城是中国古代的军事防御工程。"
    assert llm.state.call_count == 2  # the failure, then one good answer kept for c


async def test_an_answer_longer_than_max_chars_is_not_kept(llm):
    async with running_bot(cache_settings(llm, max_chars=5)) as bot:
        await bot.send("长城有多长", user="a")
        await bot.send("长城有多长", user="b")
    assert llm.state.call_count == 2


async def test_answers_expire_after_ttl_seconds(llm):
    async with running_bot(cache_settings(llm, ttl_seconds=1.0)) as bot:
        await bot.send("长城有多长", user="a")
        await bot.send("长城有多长", user="b")
        assert llm.state.call_count == 1
        await asyncio.sleep(1.3)
        await bot.send("长城有多长", user="c")
    assert llm.state.call_count == 2


async def test_concurrent_identical_questions_make_one_call(llm):
    llm.state.delay = 0.4
    async with running_bot(cache_settings(llm)) as bot:
        replies = await asyncio.gather(*(bot.send("长城有多长", user=f"u{i}") for i in range(6)))
        assert llm.state.call_count == 1
        assert {r.content for r in replies} == {"长城是中国古代的军事防御工程。"}
        llm.state.script.append(server_error(500))  # a failed first call: the others ask themselves
        await asyncio.gather(*(bot.send("黄河有多长", user=f"u{i}") for i in range(6, 9)))
    assert llm.state.call_count == 1 + 3


async def test_two_bots_on_one_redis_share_the_cache(llm, redis_url):
    prefix = f"skillbot-test-{uuid.uuid4().hex[:8]}:"
    settings = cache_settings(llm)
    settings["state"] = {"backend": "redis", "redis_url": redis_url, "key_prefix": prefix}
    async with running_bot(settings) as first, running_bot(settings) as second:
        assert first.state.backend == "redis"
        await first.send("长城有多长", user="a")
        reply = await second.send("长城有多长", user="b")
    assert reply.content == "长城是中国古代的军事防御工程。"
    assert llm.state.call_count == 1


async def test_metrics_count_hits_misses_and_tokens_saved(wechat, llm):
    h = await wechat(enabled=["llm"], overrides=cache_settings(llm))
    for i in range(3):
        status, fields, _ = await h.say("长城有多长", user=f"o_cache_{i}")
        assert status == 200 and fields["Content"] == "长城是中国古代的军事防御工程。"
    samples = await scrape(h)
    assert value(samples, "skillbot_model_cache_misses_total") == 1
    assert value(samples, "skillbot_model_cache_stored_total") == 1
    assert value(samples, "skillbot_model_cache_hits_total", how="stored") == 2
    usage = llm.state.calls[0]
    assert value(samples, "skillbot_model_cache_tokens_saved_total") > 2 * len("长城有多长")
    assert value(samples, "skillbot_model_tokens_total", provider="standin", kind="completion") == len(
        "长城是中国古代的军事防御工程。")  # tokens were spent once
    assert usage.body["messages"][-1]["content"] == "长城有多长"


@pytest.mark.parametrize("table,key", [({"ttl_seconds": 0}, "ttl_seconds"),
                                       ({"max_entries": 0}, "max_entries"),
                                       ({"max_chars": 0}, "max_chars"),
                                       ({"size": 10}, "size")])
async def test_bad_cache_settings_stop_start_up_naming_the_key(llm, table, key):
    from core.settings_schema import ConfigError

    with pytest.raises(ConfigError, match=rf"plugins\.llm\.answer_cache\.{key}"):
        async with running_bot(cache_settings(llm, **table)):
            pass


async def test_a_cache_whose_redis_stops_is_a_miss_not_a_failed_answer(llm, private_redis):
    settings = cache_settings(llm)
    settings["state"] = {"backend": "redis", "redis_url": private_redis.url,
                         "key_prefix": f"skillbot-test-{uuid.uuid4().hex[:8]}:"}
    async with running_bot(settings) as bot:
        await bot.send("长城有多长", user="a")
        assert llm.state.call_count == 1
        private_redis.stop()
        reply = await bot.send("黄河有多长", user="b")  # not in any cache: the model answers
        again = await bot.send("黄河有多长", user="c")  # kept in local memory meanwhile
    assert reply.content == again.content == "长城是中国古代的军事防御工程。"
    assert llm.state.call_count == 2

"""The filter plugin in a running bot: block / mask / log inbound, every reply checked outbound
(a skill's text and news, the LLM through a local OpenAI-compatible stand-in), settings, and list
reloading without a restart."""
from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from core import Article, Intent, NewsReply, TextReply, hookimpl
from core.settings import PROJECT_ROOT, load_settings
from core.settings_schema import ConfigError
from core.testing import running_bot
from plugins.filter import Plugin, resolve_list_path
from plugins.filter.config import Config
from tests.standins.openai_server import OpenAIStandIn, answer

DEFAULTS = Config()


def settings(llm: OpenAIStandIn | None = None, **filter_table: Any) -> dict[str, Any]:
    enabled = ["filter"] + (["llm"] if llm is not None else [])
    plugins: dict[str, Any] = {"enabled": enabled}
    if filter_table:
        plugins["filter"] = filter_table
    if llm is not None:
        plugins["llm"] = {"providers": [llm.provider()]}
    return {"plugins": plugins}


def filter_plugin(bot) -> Plugin:
    return bot.pm.get_plugin("filter")


class Skills:
    """Two small real skills whose answers contain listed words (as scraped content might)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def skillbot_intents(self):
        return [Intent("test.news", patterns=[r"^新闻$"]), Intent("test.quote", patterns=[r"^语录"])]

    @hookimpl
    def skillbot_handle(self, ctx, candidate):
        self.seen.append(ctx.message.text)
        if candidate.name == "test.news":
            return NewsReply([Article("网友怒斥：傻逼行为", "有人在直播中赌博", url="https://example.com/1"),
                              Article("今日天气晴", "适合出游")])
        return TextReply("他说：你这个脑 残！")


# ---- inbound -------------------------------------------------------------------------------------

async def test_a_blocked_message_never_reaches_skills_or_the_llm(llm):
    skills = Skills()
    async with running_bot(settings(llm), plugins=[skills]) as bot:
        reply = await bot.send("你就是个傻 逼")
        hits = bot.last_context.extra["filter_hits"]
        history = await bot.conversations.history("test_user")
    assert isinstance(reply, TextReply)
    assert reply.content == DEFAULTS.block_reply
    assert (reply.plugin, reply.intent, reply.record) == ("filter", "filtered", False)
    assert llm.state.calls == [] and skills.seen == []
    assert history == []
    assert [(h.word, h.action, h.text, h.direction) for h in hits] == [("傻逼", "block", "傻 逼", "inbound")]


async def test_a_masked_word_is_replaced_before_the_llm_sees_it(llm):
    async with running_bot(settings(llm)) as bot:
        reply = await bot.send("你真是个脑残啊，帮我写首诗")
        message = bot.last_context.message
        await bot.send("再来一首")
    assert reply.content == "回声：你真是个**啊，帮我写首诗"
    assert message.text == "你真是个**啊，帮我写首诗"
    assert message.fields["Content"] == "你真是个脑残啊，帮我写首诗"   # the original is kept
    first, second = llm.state.calls
    assert first.messages[-1] == {"role": "user", "content": "你真是个**啊，帮我写首诗"}
    assert all("脑残" not in m["content"] for call in (first, second) for m in call.messages)


async def test_a_logged_word_passes_unchanged_and_is_logged(llm, caplog):
    with caplog.at_level(logging.INFO, logger="skillbot.message"):
        async with running_bot(settings(llm)) as bot:
            reply = await bot.send("网上赌博为什么违法？")
            hits = bot.last_context.extra["filter_hits"]
    assert reply.content == "回声：网上赌博为什么违法？"
    assert llm.state.calls[0].messages[-1]["content"] == "网上赌博为什么违法？"
    # the echoed answer contains the word too: logged again outbound, not masked
    assert [(h.word, h.category, h.action, h.direction) for h in hits] == [
        ("赌博", "gambling", "log", "inbound"), ("赌博", "gambling", "log", "outbound")]
    assert any("filter inbound" in r.getMessage() and "赌博" in r.getMessage() for r in caplog.records)


async def test_block_beats_mask_in_one_message(llm):
    async with running_bot(settings(llm)) as bot:
        reply = await bot.send("脑残，出售冰毒")
    assert reply.content == DEFAULTS.block_reply
    assert llm.state.calls == []


async def test_category_actions_and_replies_come_from_settings(llm):
    overrides = settings(llm, categories={"insult": "block"}, default_action="mask",
                         block_reply="请注意用语。", mask_char="#")
    async with running_bot(overrides) as bot:
        blocked = await bot.send("白痴")
        masked = await bot.send("你是傻逼吗")
    assert blocked.content == "请注意用语。"
    assert masked.content == "回声：你是##吗"


async def test_voice_recognition_is_filtered_too(llm):
    async with running_bot(settings(llm)) as bot:
        reply = await bot.send_voice("你个傻逼")
    assert reply.content == DEFAULTS.block_reply


async def test_ordinary_messages_pass_untouched(llm):
    async with running_bot(settings(llm)) as bot:
        for text in ("他一点也不傻，逼急了也会反抗。", "我们去办证大厅办理身份证", "My husband is at home"):
            reply = await bot.send(text)
            assert reply.content == f"回声：{text}"
            assert bot.last_context.extra.get("filter_hits", []) == []


async def test_events_pass_through():
    async with running_bot(settings()) as bot:
        reply = await bot.send_event("subscribe")
    assert reply.reply_type == "success"


# ---- outbound ------------------------------------------------------------------------------------

async def test_an_llm_answer_is_masked_before_it_is_sent(llm):
    llm.state.script.append(answer("好的！这里有两个建议：\n1. 别再说傻逼这种词；\n2. 他妈的也尽量少说。"))
    async with running_bot(settings(llm)) as bot:
        reply = await bot.send("怎么文明用语")
        hits = bot.last_context.extra["filter_hits"]
        history = await bot.conversations.history("test_user")
    assert reply.content == "好的！这里有两个建议：\n1. 别再说**这种词；\n2. ***也尽量少说。"
    assert (reply.plugin, reply.record) == ("llm", True)
    assert {(h.word, h.action, h.direction) for h in hits} == {
        ("傻逼", "mask", "outbound"), ("他妈的", "mask", "outbound")}
    # the history (what the model sees next time) has the masked answer
    assert history[-1].text == reply.content


async def test_a_logged_category_is_not_masked_outbound(llm):
    llm.state.script.append(answer("赌博在中国大陆是违法的。"))
    async with running_bot(settings(llm)) as bot:
        reply = await bot.send("这样合法吗")
        hits = bot.last_context.extra["filter_hits"]
    assert reply.content == "赌博在中国大陆是违法的。"
    assert [(h.word, h.action, h.direction) for h in hits] == [("赌博", "log", "outbound")]


async def test_outbound_block_replaces_the_answer(llm):
    llm.state.script.append(answer("你才是傻逼"))
    async with running_bot(settings(llm, outbound_action="block")) as bot:
        reply = await bot.send("你好")
        history = await bot.conversations.history("test_user")
    assert reply.content == DEFAULTS.outbound_block_reply
    assert (reply.plugin, reply.record) == ("llm", False)
    assert history == []


async def test_skill_text_and_news_replies_are_masked():
    skills = Skills()
    async with running_bot(settings(), plugins=[skills]) as bot:
        news = await bot.send("新闻")
        quote = await bot.send("语录")
    assert isinstance(news, NewsReply)
    assert [(a.title, a.description, a.url) for a in news.articles] == [
        ("网友怒斥：**行为", "有人在直播中赌博", "https://example.com/1"),
        ("今日天气晴", "适合出游", "")]
    assert quote.content == "他说：你这个***！"
    assert quote.intent == "test.quote"


async def test_a_clean_reply_is_left_alone(llm):
    async with running_bot(settings(llm)) as bot:
        reply = await bot.send("今天天气不错")
        plugin = filter_plugin(bot)
        ctx = bot.last_context
        assert plugin.skillbot_outbound_filter(ctx, reply) is None


# ---- settings ------------------------------------------------------------------------------------

@pytest.mark.parametrize("table, key", [
    ({"mask_char": "**"}, "plugins.filter"),
    ({"categories": {"insult": "delete"}}, "plugins.filter.categories.insult"),
    ({"outbound_action": "drop"}, "plugins.filter.outbound_action"),
    ({"hard_separators": "，a"}, "plugins.filter"),
    ({"reload_interval": -1.0}, "plugins.filter"),
    ({"word_list": ["x"]}, "plugins.filter.word_list"),
])
async def test_invalid_settings_name_the_key(table, key):
    with pytest.raises(ConfigError) as info:
        async with running_bot(settings(**table)):
            pass
    assert str(info.value).startswith(key)


async def test_a_broken_list_stops_start_up_with_file_and_line(tmp_path, caplog):
    broken = tmp_path / "words.txt"
    broken.write_text("傻逼\n坏\t行\t多\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match="plugin filter failed to start"):
        async with running_bot(settings(word_files=[str(broken)], allow_files=[])):
            pass
    assert "words.txt:2: more than one tab" in caplog.text


def test_list_paths_follow_the_one_path_rule(tmp_path):
    """Set in the settings: relative to the settings file's folder (even when the project root or
    the plugin's folder has a file of that name); the plugin's default: relative to the plugin."""
    settings_file = tmp_path / "conf" / "settings.toml"
    settings_file.parent.mkdir()
    settings_file.write_text('[plugins.filter]\nword_files = ["data/demo_words.txt"]\n', encoding="utf-8")
    given = load_settings(settings_file)
    assert resolve_list_path("data/demo_words.txt", given, "word_files") == tmp_path / "conf" / "data" / "demo_words.txt"
    default = resolve_list_path("data/demo_allow.txt", given, "allow_files")
    assert default == PROJECT_ROOT / "plugins" / "filter" / "data" / "demo_allow.txt" and default.is_file()
    assert resolve_list_path("data/demo_words.txt").is_file()  # no settings: the plugin's own
    absolute = tmp_path / "mine.txt"
    assert resolve_list_path(str(absolute), given) == absolute


# ---- reloading -----------------------------------------------------------------------------------

def rewrite(path: Path, text: str) -> None:
    path.write_bytes(text.encode("utf-8"))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


async def test_lists_reload_without_a_restart(tmp_path, llm):
    words = tmp_path / "words.txt"
    words.write_text("傻逼\n", encoding="utf-8")
    async with running_bot(settings(llm, word_files=[str(words)], allow_files=[],
                                    reload_interval=0.0)) as bot:
        plugin = filter_plugin(bot)
        assert (await bot.send("出售冰毒")).content == "回声：出售冰毒"
        rewrite(words, "傻逼\n冰毒\tdrugs\n")
        assert plugin.reload_if_changed() is True
        assert (await bot.send("出售冰 毒")).content == DEFAULTS.block_reply
        # a broken edit keeps the lists in use
        rewrite(words, "傻逼\n冰毒\tdrugs\t?\n")
        assert plugin.reload_if_changed() is False
        assert (await bot.send("出售冰毒")).content == DEFAULTS.block_reply
        assert "words.txt:2" in plugin.filter.last_error
        (check,) = plugin.skillbot_health(bot, False)
        assert not check.ok and "previous lists in use" in check.detail
        # fixed again: healthy, with the new list
        rewrite(words, "傻逼\n冰毒\tdrugs\n大麻\n")
        assert plugin.reload_if_changed() is True
        (check,) = plugin.skillbot_health(bot, False)
        assert check.ok and check.detail == "3 words, 0 allowed"


async def test_the_background_watcher_picks_up_a_change(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("傻逼\n", encoding="utf-8")
    async with running_bot(settings(word_files=[str(words)], allow_files=[],
                                    reload_interval=0.05)) as bot:
        plugin = filter_plugin(bot)
        first = plugin.engine
        rewrite(words, "傻逼\n冰毒\n")
        for _ in range(400):  # wait for the event, not for a time: up to ~20 s on a busy machine
            if plugin.engine is not first:
                break
            await asyncio.sleep(0.05)
        assert plugin.engine is not first
        assert (await bot.send("冰毒")).content == DEFAULTS.block_reply
        watcher = plugin._watcher
        assert watcher is not None and not watcher.done()
    assert plugin._watcher is None and watcher.done()


async def test_no_watcher_when_reloading_is_off():
    async with running_bot(settings(reload_interval=0.0)) as bot:
        assert filter_plugin(bot)._watcher is None

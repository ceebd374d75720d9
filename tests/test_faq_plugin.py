"""The FAQ plugin end to end: a real bot (core.testing.running_bot), real files, real jieba."""
from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from core import Candidate, Intent, TextReply
from core.processing.bot import Bot
from core.settings_schema import ConfigError
from core.testing import build_settings, running_bot

FAQ_V1 = '''
[variables]
shop_name = "测试小店"
service_phone = "400-000-0001"

[synonyms]
"退款" = ["退钱"]

[[entry]]
id = "phone"
questions = ["客服电话是多少", "怎么联系客服", "人工客服"]
keywords = ["客服电话"]
answer = "{{ shop_name }}客服电话：{{ service_phone }}"

[[entry]]
id = "refund"
questions = ["怎么退款", "如何申请退款", "退款流程"]
keywords = ["退款"]
answer = "{{ nickname or '亲' }}，{{ date }} 申请的退款会在 3 个工作日内原路退回。"

[[entry]]
id = "hours"
questions = ["营业时间", "几点上班", "周末营业吗"]
keywords = ["营业时间"]
answer = "每天 9:00-21:00"
'''


def faq_settings(path: Path, **faq) -> dict:
    return {"plugins": {"enabled": ["faq"], "faq": {"path": str(path), "reload_interval": 0, **faq}}}


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    # make every write visible to an mtime check, even within the same clock tick
    stamp = path.stat().st_mtime_ns + 1_000_000_000
    os.utime(path, ns=(stamp, stamp))


@pytest.fixture
def faq_file(tmp_path) -> Path:
    path = tmp_path / "faq.toml"
    write(path, FAQ_V1)
    return path


def content(reply) -> str:
    assert isinstance(reply, TextReply), reply
    return reply.content


async def test_demo_faq_answers_through_the_bot_with_the_shipped_file():
    async with running_bot({"plugins": {"enabled": ["faq"]}}) as bot:
        reply = await bot.send("客服电话多少")
        assert reply.plugin == "faq" and reply.intent == "faq"
        assert "400-820-6688" in content(reply)
        assert bot.last_context.extra["faq_id"] == "contact_service"
        # FAQ keywords are in the bot's jieba dictionary
        assert "上门取件" in bot.tokenize("退货能上门取件吗")


async def test_settings_variables_override_the_file(faq_file):
    overrides = faq_settings(faq_file, variables={"service_phone": "400-999-9999"})
    async with running_bot(overrides) as bot:
        assert content(await bot.send("客服电话是多少")) == "测试小店客服电话：400-999-9999"


async def test_answers_use_nickname_and_date_and_are_not_shared_between_users(faq_file):
    async with running_bot(faq_settings(faq_file)) as bot:
        await bot.conversations.update_slots("alice", nickname="Alice")
        first = content(await bot.send("我要退钱", user="alice"))
        assert first.startswith("Alice，") and "退款会在 3 个工作日内" in first
        second = content(await bot.send("我要退钱", user="bob"))
        assert second.startswith("亲，")
        # the date is today's in China (utc_offset = 8 by default)
        china_today = datetime.now(timezone(timedelta(hours=8))).strftime("%Y-%m-%d")
        assert china_today in first or (datetime.now(timezone(timedelta(hours=8))) - timedelta(
            minutes=1)).strftime("%Y-%m-%d") in first


async def test_static_answers_are_cached_by_normalised_question(faq_file):
    async with running_bot(faq_settings(faq_file, cache_size=16, cache_ttl=60)) as bot:
        cache = bot.cache("faq")
        a = await bot.send("客服电话是多少？")
        b = await bot.send("客服电话是多少")  # same question once punctuation is dropped
        assert content(a) == content(b)
        assert cache.hits == 1 and len(cache) == 1
        plugin = bot.pm.get_plugin("faq")
        assert len(plugin.lookups) == 1  # the router's lookups are memoised too


async def test_unrelated_messages_are_not_claimed(faq_file):
    async with running_bot(faq_settings(faq_file)) as bot:
        for text in ("你好", "讲个笑话", "今天心情不好"):
            await bot.send(text)
            route = bot.last_context.route
            assert all(c.name != "faq" for c in route.chosen), (text, route.explain())


async def test_file_changes_reload_without_restart_and_broken_files_keep_old_entries(faq_file, caplog):
    async with running_bot(faq_settings(faq_file)) as bot:
        plugin = bot.pm.get_plugin("faq")
        assert content(await bot.send("营业时间")) == "每天 9:00-21:00"
        assert plugin.reload_if_changed() is False  # nothing changed

        write(faq_file, FAQ_V1.replace("每天 9:00-21:00", "每天 8:00-22:00") + '''
[[entry]]
id = "invoice"
questions = ["能开发票吗", "发票怎么开"]
keywords = ["增值税专票"]
answer = "可以开发票"
''')
        assert plugin.reload_if_changed() is True
        assert content(await bot.send("营业时间")) == "每天 8:00-22:00"
        assert content(await bot.send("能开发票吗")) == "可以开发票"
        assert "增值税专票" in bot.tokenize("要开增值税专票")  # new keywords join jieba

        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="skillbot.plugins.faq"):
            write(faq_file, FAQ_V1.replace('answer = "每天 9:00-21:00"', 'answer = "{% if %}"'))
            assert plugin.reload_if_changed() is False
            assert plugin.reload_if_changed() is False  # the same broken version is not retried
        assert "not reloaded, keeping 4 entries" in caplog.text
        assert "entry 'hours'" in plugin.last_error
        assert content(await bot.send("营业时间")) == "每天 8:00-22:00"

        write(faq_file, FAQ_V1)
        assert plugin.reload_if_changed() is True and plugin.last_error is None
        assert content(await bot.send("营业时间")) == "每天 9:00-21:00"


async def test_the_watcher_reloads_on_its_own(faq_file):
    async with running_bot(faq_settings(faq_file, reload_interval=0.05)) as bot:
        write(faq_file, FAQ_V1.replace("每天 9:00-21:00", "全天营业"))
        for _ in range(200):  # a generous deadline; the watcher checks every 0.05 s
            if "全天营业" in content(await bot.send("营业时间")):
                break
            await asyncio.sleep(0.05)
        assert content(await bot.send("营业时间")) == "全天营业"


async def test_a_broken_file_at_start_up_stops_the_bot_with_the_reason(tmp_path, caplog):
    path = tmp_path / "faq.toml"
    write(path, "[[entry]]\nid = 'x'\n")
    bot = Bot(build_settings(faq_settings(path)))
    try:
        with caplog.at_level(logging.ERROR):
            with pytest.raises(RuntimeError, match="plugin faq failed to start"):
                await bot.start()
        assert "FAQ file unusable: faq.toml: entry 'x': questions" in caplog.text
    finally:
        await bot.stop()


async def test_invalid_settings_name_the_key(faq_file):
    with pytest.raises(ConfigError, match="plugins.faq"):
        Bot(build_settings(faq_settings(faq_file, threshold=1.5)))
    with pytest.raises(ConfigError, match="plugins.faq.cache_size"):
        Bot(build_settings(faq_settings(faq_file, cache_size="big")))


async def test_the_skill_declines_an_entry_that_no_longer_exists(faq_file):
    async with running_bot(faq_settings(faq_file)) as bot:
        await bot.send("营业时间")
        ctx = bot.last_context
        plugin = bot.pm.get_plugin("faq")
        gone = Candidate(intent=Intent("faq"), score=0.9, slots={"faq_id": "removed"})
        assert await plugin.skillbot_handle(ctx, gone) is None


async def test_weather_words_do_not_steal_faq_questions():
    async with running_bot({"plugins": {"enabled": ["faq", "weather"]}}) as bot:
        reply = await bot.send("天气预报这个APP怎么退款")
        assert reply.plugin == "faq" and bot.last_context.extra["faq_id"] == "refund"
        route = bot.last_context.route
        names = [c.name for c in route.candidates]
        assert names[0] == "faq" and "weather" in names  # weather scored, FAQ ranked first

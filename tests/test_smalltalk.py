"""Built-in small talk (issue 12, item 20): answered without a model, from an editable file,
and never in the way of a real question."""
from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import pytest

from core.appkeys import GATEWAY_KEY
from core.testing import build_settings

DATA = Path(__file__).resolve().parent.parent / "plugins" / "smalltalk" / "data" / "smalltalk.toml"
TOPICS = {t["name"]: t for t in tomllib.loads(DATA.read_text(encoding="utf-8"))["topics"]}
NO_PROVIDER = (Path(__file__).resolve().parent.parent / "plugins" / "llm" / "templates"
               / "no_provider.j2").read_text(encoding="utf-8").strip()


@pytest.mark.parametrize("text, topic", [
    ("你好", "greeting"), ("你好呀！", "greeting"), ("Hello", "greeting"), ("小助手你好", "greeting"),
    ("在吗？", "greeting"), ("谢谢", "thanks"), ("谢谢你啦~", "thanks"), ("thank you!", "thanks"),
    ("你是谁", "identity"), ("你是谁？", "identity"), ("你能做什么", "identity"),
    ("再见", "goodbye"), ("拜拜～", "goodbye"), ("你真棒👍", "praise"), ("好的", "acknowledge"),
])
async def test_small_talk_is_answered_without_a_model(wechat, text, topic):
    h = await wechat()
    status, reply, _ = await h.say(text)
    assert status == 200 and reply is not None
    assert reply["Content"] in TOPICS[topic]["answers"]
    assert reply["Content"] != NO_PROVIDER


@pytest.mark.parametrize("text", ["你好，怎么退货", "谢谢，运费怎么算", "你好，明天北京天气怎么样"])
async def test_small_talk_does_not_steal_real_questions(wechat, text):
    h = await wechat()
    status, reply, _ = await h.say(text)
    bot = h.client.app[GATEWAY_KEY].bot
    route = bot.router.route(None, text)
    assert route.chosen and route.chosen[0].intent.plugin in ("faq", "weather")
    every_answer = {a for t in TOPICS.values() for a in t["answers"]}
    assert status == 200 and reply is not None and reply["Content"] not in every_answer


async def test_answers_come_from_the_operators_file(wechat, tmp_path):
    edited = tmp_path / "talk.toml"
    edited.write_text('particles = []\nnames = []\n[[topics]]\nname = "greeting"\n'
                      'phrasings = ["吃了吗"]\nanswers = ["吃过啦，您呢？"]\n', encoding="utf-8")
    h = await wechat(overrides={"plugins": {"smalltalk": {"path": str(edited)}}})
    assert (await h.say("吃了吗？"))[1]["Content"] == "吃过啦，您呢？"
    assert (await h.say("你好"))[1]["Content"] == NO_PROVIDER  # not in this file any more


async def test_no_model_is_said_once_at_start_up_not_warned(caplog, make_bot, monkeypatch):
    """Without a provider the llm plugin says how to add one at INFO, once per process: a second
    bot (a settings reload) says nothing, and nothing is a WARNING."""
    import sys

    caplog.set_level(logging.INFO, logger="skillbot")
    async with make_bot() as bot:
        monkeypatch.setattr(sys.modules[type(bot.pm.get_plugin("llm")).__module__], "_SAID_NO_PROVIDER", False)
    caplog.clear()
    for _ in range(2):
        async with make_bot():
            pass
    said = [r for r in caplog.records if "provider" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.INFO], said
    assert "[[plugins.llm.providers]]" in said[0].getMessage() and "docs/llm.md" in said[0].getMessage()

"""The LLM fallback end to end through a running bot and a local OpenAI-compatible stand-in:
context across turns, skill answers as context, reset, failover, no provider configured."""
from __future__ import annotations

import logging
from typing import Any

import pytest

from core import Intent, TextReply, hookimpl
from core.access.messages import build_message
from core.testing import running_bot
from tests.standins.openai_server import (
    OpenAIStandIn,
    answer,
    broken_stream,
    cut,
    filtered,
    html_502,
    server_error,
    streamed,
)


def reply_template(name: str) -> str:
    from core.processing.templating import text_environment
    from plugins.llm import PLUGIN_DIR
    return text_environment(PLUGIN_DIR / "templates").get_template(name).render().strip()


def llm_settings(*providers: dict[str, Any], **llm: Any) -> dict[str, Any]:
    table: dict[str, Any] = {"providers": list(providers)}
    table.update(llm)
    return {"plugins": {"enabled": ["llm"], "llm": table}}


@pytest.fixture
async def llm_backup():
    async with OpenAIStandIn() as server:
        yield server


class WeatherSkill:
    """A tiny real skill: answers "...天气" so the model later sees its answer as context."""

    @hookimpl
    def skillbot_intents(self):
        return [Intent("test.weather", patterns=[r"^(?P<city>北京|上海)天气$"])]

    @hookimpl
    def skillbot_handle(self, ctx, candidate):
        return TextReply(f"{candidate.slots['city']}今天晴，20℃。")


class Nickname:
    """An inbound filter that knows the user's nickname (as a user-info plugin would)."""

    @hookimpl
    def skillbot_inbound_filter(self, ctx):
        ctx.extra["nickname"] = "小明"


# ---- no provider --------------------------------------------------------------------------------

async def test_no_provider_configured_answers_with_the_configured_reply(caplog):
    with caplog.at_level(logging.WARNING, logger="skillbot.llm"):
        async with running_bot({"plugins": {"enabled": ["llm"]}}) as bot:
            reply = await bot.send("给我讲个笑话")
            assert isinstance(reply, TextReply)
            assert reply.content == reply_template("no_provider.j2")
            assert reply.plugin == "llm"
            assert await bot.conversations.history("test_user") == []
    # Said once per process at INFO, never warned (tests/test_smalltalk.py pins the message).
    assert not [r for r in caplog.records if "provider" in r.getMessage()]


async def test_a_provider_whose_key_is_missing_is_warned_about(llm, caplog, monkeypatch):
    monkeypatch.delenv("SKILLBOT_TEST_MISSING_KEY", raising=False)
    with caplog.at_level(logging.WARNING, logger="skillbot.llm"):
        async with running_bot(llm_settings(llm.provider("cloud", api_key_env="SKILLBOT_TEST_MISSING_KEY"))) as bot:
            reply = await bot.send("你好")
    assert reply.content == reply_template("no_provider.j2")
    assert llm.state.calls == []
    assert any("SKILLBOT_TEST_MISSING_KEY is not set" in r.getMessage() for r in caplog.records)


async def test_the_api_key_comes_from_the_environment(llm, monkeypatch):
    monkeypatch.setenv("SKILLBOT_TEST_LLM_KEY", "sk-standin-42")
    llm.state.api_key = "sk-standin-42"
    async with running_bot(llm_settings(llm.provider("cloud", api_key_env="SKILLBOT_TEST_LLM_KEY"))) as bot:
        reply = await bot.send("你好")
    assert reply.content == "回声：你好"


# ---- context across turns ------------------------------------------------------------------------

async def test_context_is_carried_across_turns(llm):
    async with running_bot(llm_settings(llm.provider())) as bot:
        first = await bot.send("我最喜欢的颜色是蓝色")
        assert first.content == "回声：我最喜欢的颜色是蓝色"
        assert first.plugin == "llm"
        second = await bot.send("你刚才说什么")
        assert second.content == "回声：你刚才说什么"
    first_call, second_call = llm.state.calls
    assert [m["role"] for m in first_call.messages] == ["system", "user"]
    assert second_call.messages[1:] == [
        {"role": "user", "content": "我最喜欢的颜色是蓝色"},
        {"role": "assistant", "content": "回声：我最喜欢的颜色是蓝色"},
        {"role": "user", "content": "你刚才说什么"},
    ]
    system = second_call.messages[0]["content"]
    assert system.startswith("你是一个微信公众号里的智能助手") and "北京时间" in system


async def test_what_was_just_said_survives_a_long_answer(llm):
    long_answer = "这是一段很长的回答。" * 250  # 2500 characters: more than the store keeps
    llm.state.script.append(answer(long_answer))
    async with running_bot(llm_settings(llm.provider())) as bot:
        await bot.send("详细介绍一下长城")
        await bot.send("你刚才说什么")
    history = llm.state.calls[1].messages[1:-1]
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert history[1]["content"].startswith("这是一段很长的回答。")
    assert llm.state.calls[1].messages[-1] == {"role": "user", "content": "你刚才说什么"}


async def test_users_do_not_share_context(llm):
    async with running_bot(llm_settings(llm.provider())) as bot:
        await bot.send("我是甲", user="user_a")
        await bot.send("我是谁", user="user_b")
    assert [m["role"] for m in llm.state.calls[1].messages] == ["system", "user"]


async def test_a_skill_answer_is_context_for_the_model(llm):
    async with running_bot(llm_settings(llm.provider()), plugins=[WeatherSkill()]) as bot:
        weather = await bot.send("北京天气")
        assert weather.content == "北京今天晴，20℃。"
        assert llm.state.calls == []
        await bot.send("那明天呢")
    assert llm.state.calls[0].messages[1:] == [
        {"role": "user", "content": "北京天气"},
        {"role": "assistant", "content": "北京今天晴，20℃。"},
        {"role": "user", "content": "那明天呢"},
    ]


async def test_history_is_bounded_by_the_plugin_settings(llm):
    async with running_bot(llm_settings(llm.provider(), max_history_turns=2)) as bot:
        for text in ("一", "二", "三"):
            await bot.send(text)
    assert [m["content"] for m in llm.state.calls[2].messages[1:]] == ["二", "回声：二", "三"]


async def test_reset_command_clears_the_context(llm):
    async with running_bot(llm_settings(llm.provider())) as bot:
        await bot.send("记住：暗号是芝麻开门")
        reset = await bot.send("重新开始")
        assert reset.content == reply_template("reset_done.j2")
        assert reset.intent == "llm.reset"
        assert await bot.conversations.history("test_user") == []
        await bot.send("暗号是什么")
    assert len(llm.state.calls) == 2
    assert [m["role"] for m in llm.state.calls[1].messages] == ["system", "user"]


async def test_reset_commands_are_configurable(llm):
    async with running_bot(llm_settings(llm.provider(), reset_commands=["忘掉吧"])) as bot:
        await bot.send("你好")
        reply = await bot.send("忘掉吧！")
        assert reply.intent == "llm.reset"
        other = await bot.send("重新开始")
        assert other.intent == "fallback"


async def test_voice_recognition_goes_to_the_model_and_events_do_not(llm):
    async with running_bot(llm_settings(llm.provider())) as bot:
        voice = await bot.send_voice("今天星期几")
        assert voice.content == "回声：今天星期几"
        event = await bot.send_event("subscribe")
        assert event.reply_type == "success"
    assert len(llm.state.calls) == 1


@pytest.mark.parametrize("configured", [True, False])
async def test_voice_without_recognition_says_how_to_turn_it_on(llm, configured):
    settings = llm_settings(llm.provider()) if configured else {"plugins": {"enabled": ["llm"]}}
    async with running_bot(settings) as bot:
        reply = await bot.send_voice("")
        assert reply.content == reply_template("voice_unrecognized.j2")
        assert "设置与开发 → 接口权限 → 接收语音识别结果" in reply.content
        assert reply.plugin == "llm"
        assert await bot.conversations.history("test_user") == []
    assert llm.state.calls == []


async def test_nickname_reaches_the_system_prompt(llm):
    async with running_bot(llm_settings(llm.provider(), account_name="天气早知道"),
                           plugins=[Nickname()]) as bot:
        await bot.send("你好")
    system = llm.state.calls[0].messages[0]["content"]
    assert "小明" in system and "天气早知道" in system


# ---- answers -------------------------------------------------------------------------------------

async def test_markdown_answers_become_plain_text(llm):
    llm.state.default = answer("## 建议\n\n1. **多喝水**\n2. 早点睡，见[指南](https://example.com)")
    async with running_bot(llm_settings(llm.provider())) as bot:
        reply = await bot.send("怎么保持健康")
        assert reply.content == "建议\n\n1. 多喝水\n2. 早点睡，见指南（https://example.com）"
        metrics = bot.last_context.extra["llm"]
    assert metrics["provider"] == "standin" and metrics["completion_tokens"] > 0


async def test_a_cut_answer_says_so(llm):
    llm.state.script.append(cut("这个问题要从很久以前说起"))
    async with running_bot(llm_settings(llm.provider())) as bot:
        reply = await bot.send("讲讲历史")
    assert reply.content == "这个问题要从很久以前说起\n" + reply_template("truncated_note.j2")


async def test_content_filter_gets_the_refusal_template(llm):
    llm.state.script.append(filtered())
    async with running_bot(llm_settings(llm.provider())) as bot:
        reply = await bot.send("不该问的问题")
        assert reply.content == reply_template("content_filter.j2")
        assert await bot.conversations.history("test_user") == []


# ---- failures --------------------------------------------------------------------------------------

async def test_failover_to_the_second_provider(llm, llm_backup):
    llm.state.default = server_error(503)
    llm_backup.state.default = answer("备用回答")
    async with running_bot(llm_settings(llm.provider("first"), llm_backup.provider("second"))) as bot:
        reply = await bot.send("你好")
        assert reply.content == "备用回答"
        assert bot.last_context.extra["llm"]["attempts"] == ["first:server_error", "second:ok"]


async def test_every_provider_failing_gives_a_polite_reply(llm, llm_backup):
    llm.state.default = server_error(500)
    llm_backup.state.default = html_502()
    async with running_bot(llm_settings(llm.provider("first"), llm_backup.provider("second"))) as bot:
        reply = await bot.send("你好")
        assert reply.content == reply_template("unavailable.j2")
        assert "502" not in reply.content and "Error" not in reply.content
        # The failed exchange is not kept as context.
        assert await bot.conversations.history("test_user") == []


async def test_operator_templates_override_the_plugins(tmp_path):
    folder = tmp_path / "llm"
    folder.mkdir()
    (folder / "no_provider.j2").write_text("本号暂不支持自由问答。", encoding="utf-8")
    async with running_bot({"plugins": {"enabled": ["llm"]},
                            "pipeline": {"templates_dir": str(tmp_path)}}) as bot:
        reply = await bot.send("随便聊聊")
    assert reply.content == "本号暂不支持自由问答。"


async def test_bad_provider_settings_stop_start_up_naming_the_key():
    from core.settings_schema import ConfigError

    with pytest.raises(ConfigError, match=r"plugins\.llm\.providers\[0\]\.base_url"):
        async with running_bot(llm_settings({"name": "x", "base_url": "api.example.com",
                                             "model": "m"})):
            pass


def image_message(url: str = "http://mmbiz.qpic.cn/mmbiz_jpg/abc/0", user: str = "test_user"):
    return build_message({"ToUserName": "gh", "FromUserName": user, "CreateTime": "1",
                          "MsgType": "image", "PicUrl": url, "MediaId": "m", "MsgId": "1"})


async def test_an_image_without_a_vision_provider_gets_the_core_reply(llm):
    async with running_bot(llm_settings(llm.provider())) as bot:
        reply = await bot.send_message(image_message())
        assert reply.plugin == "core"
        assert reply.content == bot.settings.pipeline.unsupported_reply
    assert llm.state.calls == []


async def test_an_image_goes_to_the_vision_provider_with_the_conversation(llm, llm_backup):
    llm_backup.state.default = streamed(pieces=["图里是一只", "**橘猫**。", "它在晒太阳。"])
    async with running_bot(llm_settings(llm.provider("text"),
                                        llm_backup.provider("eyes", vision=True))) as bot:
        await bot.send("我家猫叫大橘")
        reply = await bot.send_message(image_message())
        assert reply.content == "图里是一只橘猫。它在晒太阳。"
        assert reply.plugin == "llm"
        assert bot.last_context.extra["llm"]["provider"] == "eyes"
    assert len(llm.state.calls) == 1            # the text message only
    (call,) = llm_backup.state.calls
    assert call.messages[1:3] == [{"role": "user", "content": "我家猫叫大橘"},
                                  {"role": "assistant", "content": "回声：我家猫叫大橘"}]
    parts = call.messages[-1]["content"]
    assert call.messages[-1]["role"] == "user"
    assert parts[0] == {"type": "text", "text": reply_template("image_prompt.j2")}
    assert parts[1] == {"type": "image_url", "image_url": {"url": "http://mmbiz.qpic.cn/mmbiz_jpg/abc/0"}}


async def test_an_image_the_vision_provider_cannot_answer_gets_the_polite_reply(llm):
    llm.state.default = server_error(500)
    async with running_bot(llm_settings(llm.provider("eyes", vision=True))) as bot:
        reply = await bot.send_message(image_message())
        assert reply.content == reply_template("unavailable.j2")
        bad_url = await bot.send_message(image_message(url="javascript:alert(1)"))
        assert bad_url.plugin == "core"
    assert len(llm.state.calls) == 1


async def test_a_stream_broken_mid_answer_ends_with_the_note(llm, llm_backup):
    llm.state.script.append(broken_stream(["长城是中国古代的", "**防御**工程。它东起"]))
    async with running_bot(llm_settings(llm.provider("first"), llm_backup.provider("second"))) as bot:
        reply = await bot.send("介绍一下长城")
        assert reply.content == "长城是中国古代的防御工程。它东起\n" + reply_template("interrupted_note.j2")
        assert bot.last_context.extra["llm"]["finish_reason"] == "interrupted"
    assert llm_backup.state.calls == []


async def test_a_provider_that_cannot_stream_still_answers(llm):
    llm.state.can_stream = False
    async with running_bot(llm_settings(llm.provider())) as bot:
        assert (await bot.send("你好")).content == "回声：你好"
    async with running_bot(llm_settings(llm.provider(stream=False))) as bot:
        assert (await bot.send("再见")).content == "回声：再见"
    assert [c.body["stream"] for c in llm.state.calls] == [True, False]

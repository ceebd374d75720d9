"""Building the messages array: system prompt template, bounded history, the new message."""
from __future__ import annotations

import re
from datetime import datetime

import pytest

from core.processing.templating import text_environment
from core.settings_schema import from_table
from core.state.conversation import Turn
from plugins.llm import PLUGIN_DIR
from plugins.llm.config import Config, ProviderConfig
from plugins.llm.prompt import (
    bound_exchanges,
    build_messages,
    china_timezone,
    exchanges_from_history,
    history_messages,
    is_reset_command,
    prompt_variables,
    reset_pattern,
)

NOW = 1_700_000_000.0


def turns(*pairs: tuple[str, str], start: float = NOW - 100, step: float = 1.0) -> list[Turn]:
    return [Turn(role, text, at=start + i * step) for i, (role, text) in enumerate(pairs)]


def test_history_maps_roles_oldest_first():
    history = turns(("user", "北京明天天气"), ("assistant", "北京明天晴，20℃。"),
                    ("user", "你好"), ("assistant", "你好！"))
    assert history_messages(history, max_turns=10, max_chars=2000, now=NOW) == [
        {"role": "user", "content": "北京明天天气"},
        {"role": "assistant", "content": "北京明天晴，20℃。"},
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "你好！"},
    ]


def test_bounded_by_turns_keeps_the_newest_whole_exchanges():
    history = turns(*[(r, f"{r}{i}") for i in range(6) for r in ("user", "assistant")])
    messages = history_messages(history, max_turns=4, max_chars=2000, now=NOW)
    assert [m["content"] for m in messages] == ["user4", "assistant4", "user5", "assistant5"]
    # An odd bound rounds down to whole exchanges.
    messages = history_messages(history, max_turns=3, max_chars=2000, now=NOW)
    assert [m["content"] for m in messages] == ["user5", "assistant5"]
    assert history_messages(history, max_turns=0, max_chars=2000, now=NOW) == []


def test_bounded_by_characters():
    history = turns(("user", "甲" * 10), ("assistant", "乙" * 40),
                    ("user", "丙" * 10), ("assistant", "丁" * 40))
    messages = history_messages(history, max_turns=10, max_chars=60, now=NOW)
    assert [m["content"] for m in messages] == ["丙" * 10, "丁" * 40]
    messages = history_messages(history, max_turns=10, max_chars=100, now=NOW)
    assert len(messages) == 4
    assert history_messages(history, max_turns=10, max_chars=0, now=NOW) == []


def test_a_too_long_newest_exchange_is_cut_to_fit():
    history = turns(("user", "问" * 30), ("assistant", "答" * 500))
    messages = history_messages(history, max_turns=10, max_chars=100, now=NOW)
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert sum(len(m["content"]) for m in messages) <= 100
    assert messages[0]["content"] == "问" * 30
    assert messages[1]["content"].startswith("答") and messages[1]["content"].endswith("…")


def test_unanswered_messages_and_orphan_replies_are_left_out():
    history = turns(("user", "重新开始"), ("assistant", "好的"),  # a reply after a reset command
                    ("user", "敏感内容"),                   # refused, reply not recorded
                    ("user", "北京天气"), ("assistant", "晴"),
                    ("assistant", "（第二部分）"),           # a second reply to the same message
                    ("user", "还在想"))                     # no answer yet
    messages = history_messages(history, max_turns=10, max_chars=2000, now=NOW,
                                reset_commands=["重新开始"])
    assert messages == [{"role": "user", "content": "北京天气"},
                        {"role": "assistant", "content": "晴\n（第二部分）"}]


def test_a_long_answer_whose_question_the_store_dropped_is_kept():
    history = turns(("assistant", "很长的回答" * 100), ("user", "谢谢"), ("assistant", "不客气"))
    messages = history_messages(history, max_turns=10, max_chars=5000, now=NOW)
    assert messages[0] == {"role": "user", "content": "…"}
    assert messages[1] == {"role": "assistant", "content": "很长的回答" * 100}
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]


def test_roles_always_alternate():
    history = turns(("user", "a"), ("user", "b"), ("assistant", "c"), ("assistant", "d"),
                    ("user", "e"), ("assistant", "f"), ("assistant", ""), ("user", "g"))
    roles = [m["role"] for m in history_messages(history, max_turns=10, max_chars=2000, now=NOW)]
    assert roles == ["user", "assistant"] * (len(roles) // 2)


def test_idle_gap_starts_a_new_conversation():
    old = turns(("user", "旧问题"), ("assistant", "旧回答"), start=NOW - 7200)
    new = turns(("user", "新问题"), ("assistant", "新回答"), start=NOW - 60)
    messages = history_messages(old + new, max_turns=10, max_chars=2000, idle_seconds=1800, now=NOW)
    assert [m["content"] for m in messages] == ["新问题", "新回答"]
    # Everything is stale when the last message is older than the idle time.
    assert history_messages(old, max_turns=10, max_chars=2000, idle_seconds=1800, now=NOW) == []
    # 0 disables the idle rule.
    assert len(history_messages(old + new, max_turns=10, max_chars=2000, idle_seconds=0, now=NOW)) == 4


def test_a_reset_command_in_history_forgets_what_came_before():
    history = turns(("user", "旧问题"), ("assistant", "旧回答"), ("user", "重新开始"),
                    ("user", "新问题"), ("assistant", "新回答"))
    exchanges = exchanges_from_history(history, reset_commands=["重新开始"], now=NOW)
    assert exchanges == [("新问题", "新回答")]


@pytest.mark.parametrize("text", ["重新开始", " 重新开始 ", "重新开始。", "重新开始!", "清除上下文！！"])
def test_reset_commands_match_whole_messages(text):
    assert is_reset_command(text, ["重新开始", "清除上下文"])


@pytest.mark.parametrize("text", ["我想重新开始学习", "重新开始吧朋友", "清除"])
def test_reset_commands_do_not_match_inside_sentences(text):
    assert not is_reset_command(text, ["重新开始", "清除上下文"])
    assert not any(re.search(reset_pattern(c), text) for c in ["重新开始", "清除上下文"])


def test_reset_pattern_escapes_regex_characters():
    assert re.match(reset_pattern("reset (all)"), "reset (all)")
    assert not re.match(reset_pattern("reset (all)"), "reset all")


def test_build_messages_order_and_empty_system_prompt():
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert build_messages("系统", history, "c") == [
        {"role": "system", "content": "系统"}, *history, {"role": "user", "content": "c"}]
    assert build_messages("  ", [], "c") == [{"role": "user", "content": "c"}]


def test_bound_exchanges_directly():
    exchanges = [("1", "一"), ("2", "二"), ("3", "三")]
    assert bound_exchanges(exchanges, 4, 1000) == [("2", "二"), ("3", "三")]
    assert bound_exchanges(exchanges, 100, 4) == [("2", "二"), ("3", "三")]


def test_system_prompt_template_renders_persona_date_and_nickname():
    env = text_environment(PLUGIN_DIR / "templates")
    now = datetime(2024, 10, 1, 9, 5, tzinfo=china_timezone())
    text = env.get_template("system_prompt.j2").render(**prompt_variables(
        persona="你是小助手。", account_name="天气早知道", nickname="小明", now=now))
    assert text.startswith("你是小助手。")
    assert "天气早知道" in text
    assert "2024年10月1日" in text and "星期二" in text and "09:05" in text
    assert "小明" in text
    bare = env.get_template("system_prompt.j2").render(**prompt_variables(persona="P", now=now))
    assert "昵称" not in bare and "公众号「" not in bare


def test_prompt_variables_default_to_now_in_china():
    now = prompt_variables(persona="P")["now"]
    assert now.utcoffset().total_seconds() == 8 * 3600


# ---- config ----------------------------------------------------------------------------------

def test_default_config_has_no_provider_and_is_valid():
    config = Config()
    config.validate()
    assert config.provider_configs() == []
    assert config.reset_commands == ["重新开始", "清除上下文"]


def test_provider_table_is_checked():
    provider = ProviderConfig.from_table(
        {"name": "deepseek", "base_url": "https://api.deepseek.com/v1/", "model": "deepseek-chat",
         "api_key_env": "DEEPSEEK_API_KEY", "temperature": 1, "max_tokens": 0}, 0)
    assert provider.url == "https://api.deepseek.com/v1/chat/completions"
    assert provider.temperature == 1.0 and provider.max_tokens == 0
    full = ProviderConfig.from_table({"name": "x", "model": "m",
                                      "base_url": "http://h:1/v1/chat/completions"}, 0)
    assert full.url == "http://h:1/v1/chat/completions"


@pytest.mark.parametrize("table, message", [
    ({"base_url": "http://h/v1", "model": "m"}, "providers[0].name"),
    ({"name": "a", "base_url": "ftp://h", "model": "m"}, "providers[0].base_url"),
    ({"name": "a", "base_url": "http://h/v1"}, "providers[0].model"),
    ({"name": "a", "base_url": "http://h/v1", "model": "m", "api_key": "sk-1"}, "providers[0].api_key: unknown setting"),
    ({"name": "a", "base_url": "http://h/v1", "model": "m", "api_key_env": "sk-abc"}, "api_key_env"),
    ({"name": "a", "base_url": "http://h/v1", "model": "m", "temperature": 3}, "temperature"),
    ({"name": "a", "base_url": "http://h/v1", "model": "m", "timeout": 0}, "timeout"),
    ({"name": "a", "base_url": "http://h/v1", "model": "m", "max_tokens": True}, "max_tokens"),
    ({"name": "a", "base_url": "http://h/v1", "model": "m", "extra_body": {"stream": True}}, "extra_body"),
    ({"name": "a b", "base_url": "http://h/v1", "model": "m"}, "providers[0].name"),
])
def test_bad_provider_tables_name_the_key(table, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        from_table(Config, {"providers": [table]}, "plugins.llm")


def test_duplicate_provider_names_are_rejected():
    table = {"name": "a", "base_url": "http://h/v1", "model": "m"}
    with pytest.raises(ValueError, match=r"providers\[1\].name: already used by an earlier provider"):
        from_table(Config, {"providers": [table, dict(table)]}, "plugins.llm")


@pytest.mark.parametrize("field, value", [
    ("circuit_breaker_failures", 0), ("circuit_breaker_reset_seconds", 0), ("total_timeout", -1),
    ("max_history_turns", -1), ("max_history_chars", -5), ("history_idle_seconds", -1),
    ("system_prompt_template", " "), ("reset_commands", ["重新开始", ""]),
])
def test_bad_plugin_settings(field, value):
    with pytest.raises(ValueError, match=field):
        Config(**{field: value}).validate()

"""Plugins from folders load like the built-ins; mistakes stop start-up with a clear message."""
from __future__ import annotations

import textwrap

import pytest

from core.processing.bot import Bot
from core.settings import settings_from_dict
from core.settings_schema import ConfigError
from core.testing import running_bot

GOOD = '''
from dataclasses import dataclass
from core import Intent, TextReply, hookimpl

@dataclass
class Config:
    greeting: str = "默认问候"

class Plugin:
    @hookimpl
    def skillbot_config_schema(self):
        return Config

    @hookimpl
    def skillbot_startup(self, bot, config):
        self.config = config

    @hookimpl
    def skillbot_intents(self):
        return [Intent("shop.greet", patterns=[r"^打个招呼$"], priority=5)]

    @hookimpl
    def skillbot_handle(self, ctx, candidate):
        return TextReply(self.config.greeting)
'''


def write_plugin(base, name, source):
    folder = base / name
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return folder


async def test_third_party_folder_plugin_is_loaded_and_configured(tmp_path):
    write_plugin(tmp_path, "shopgreet", GOOD)
    overrides = {"plugins": {"enabled": ["welcome", "shopgreet"], "paths": [str(tmp_path)],
                             "shopgreet": {"greeting": "欢迎光临小店"}}}
    async with running_bot(overrides) as bot:
        reply = await bot.send("打个招呼")
        assert reply.content == "欢迎光临小店"
        assert (reply.plugin, reply.intent) == ("shopgreet", "shop.greet")


def test_misspelt_hook_name_fails_at_start_up(tmp_path):
    write_plugin(tmp_path, "typo", '''
        from core import hookimpl
        class Plugin:
            @hookimpl
            def skillbot_handel(self, ctx, candidate):
                return None
        ''')
    with pytest.raises(Exception) as info:
        Bot(settings_from_dict({"plugins": {"enabled": ["typo"], "paths": [str(tmp_path)]}}))
    assert "skillbot_handel" in str(info.value)


def test_plugin_that_fails_to_import_is_named(tmp_path):
    write_plugin(tmp_path, "broken", "raise ImportError('missing dependency foo')\n")
    with pytest.raises(ConfigError) as info:
        Bot(settings_from_dict({"plugins": {"enabled": ["broken"], "paths": [str(tmp_path)]}}))
    assert "plugins.broken" in str(info.value) and "missing dependency foo" in str(info.value)


async def test_plugin_failing_at_startup_stops_the_bot_with_its_name(tmp_path):
    write_plugin(tmp_path, "nostart", '''
        from core import hookimpl
        class Plugin:
            @hookimpl
            def skillbot_startup(self, bot, config):
                raise RuntimeError("cannot open data file")
        ''')
    with pytest.raises(RuntimeError) as info:
        async with running_bot({"plugins": {"enabled": ["nostart"], "paths": [str(tmp_path)]}}):
            pass
    assert "nostart" in str(info.value)


async def test_async_hooks_are_awaited_and_order_follows_settings(tmp_path):
    calls = []
    for name in ("first", "second"):
        write_plugin(tmp_path, name, f'''
            from core import hookimpl
            class Plugin:
                @hookimpl
                async def skillbot_inbound_filter(self, ctx):
                    ctx.extra.setdefault("order", []).append("{name}")
                    return None
            ''')
    async with running_bot({"plugins": {"enabled": ["second", "first", "welcome"], "paths": [str(tmp_path)]}}) as bot:
        await bot.send("你好")
        calls = bot.last_context.extra["order"]
    assert calls == ["second", "first"]


async def test_tryfirst_beats_settings_order(tmp_path):
    write_plugin(tmp_path, "early", '''
        from core import hookimpl
        class Plugin:
            @hookimpl(tryfirst=True)
            def skillbot_inbound_filter(self, ctx):
                ctx.extra.setdefault("order", []).append("early")
        ''')
    write_plugin(tmp_path, "plain", '''
        from core import hookimpl
        class Plugin:
            @hookimpl
            def skillbot_inbound_filter(self, ctx):
                ctx.extra.setdefault("order", []).append("plain")
        ''')
    async with running_bot({"plugins": {"enabled": ["plain", "early"], "paths": [str(tmp_path)]}}) as bot:
        await bot.send("你好")
        assert bot.last_context.extra["order"] == ["early", "plain"]


async def test_declining_skill_passes_to_next_candidate_then_fallback(tmp_path):
    write_plugin(tmp_path, "decliner", '''
        from core import Intent, hookimpl
        class Plugin:
            @hookimpl
            def skillbot_intents(self):
                return [Intent("decline.me", patterns=[r"^拒绝我$"], priority=50)]
            @hookimpl
            def skillbot_handle(self, ctx, candidate):
                ctx.extra["declined"] = True
                return None
        ''')
    write_plugin(tmp_path, "catcher", '''
        from core import TextReply, hookimpl
        class Plugin:
            @hookimpl
            def skillbot_fallback(self, ctx):
                return TextReply("兜底")
        ''')
    async with running_bot({"plugins": {"enabled": ["decliner", "catcher"], "paths": [str(tmp_path)]}}) as bot:
        reply = await bot.send("拒绝我")
        assert reply.content == "兜底" and bot.last_context.extra["declined"]
        assert reply.plugin == "catcher" and reply.intent == "fallback"

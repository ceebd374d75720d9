"""Hot settings: edit settings.toml and the running bot follows, after validation; a bad file is
rejected with the reason and the running settings stay."""
from __future__ import annotations

import asyncio
import logging
import textwrap
from pathlib import Path

import pytest

from core import TextReply, hookimpl
from core.app import create_app
from core.appkeys import BOTS_KEY, DELIVERY_KEY, GATEWAY_KEY, METRICS_KEY
from core.operations.health import current_bot
from core.processing.bot import Bot
from core.operations.chat_console import signer_for
from core.operations.reload import RELOADER_KEY
from core.operations.wechat_client import text_xml
from core.settings import load_settings
from core.testing import write_settings

# A plugin folder the tests enable and disable by editing the settings file. Its name is unique to
# this file (folder plugins are imported once per process under their name).
GREETER = '''
import asyncio
from dataclasses import dataclass
from core import TextReply, hookimpl


@dataclass
class Config:
    prefix: str = "默认"
    delay: float = 0.0

    def validate(self):
        if self.prefix == "":
            raise ValueError("prefix must not be empty")


class Plugin:
    def __init__(self):
        self.config = Config()
        self.stopped = False

    @hookimpl
    def skillbot_config_schema(self):
        return Config

    @hookimpl
    def skillbot_startup(self, bot, config):
        if config.prefix == "崩溃":
            raise RuntimeError("cannot start with this prefix")
        self.config = config

    @hookimpl
    def skillbot_shutdown(self, bot):
        self.stopped = True

    @hookimpl
    async def skillbot_fallback(self, ctx):
        if self.config.delay:
            await asyncio.sleep(self.config.delay)
        return TextReply(f"{self.config.prefix}：{ctx.message.text}")
'''


class Turns:
    """Given in code (not from a folder): counts the history the bot kept for the user."""

    def __init__(self):
        self.shutdowns = 0

    @hookimpl
    def skillbot_shutdown(self, bot):
        self.shutdowns += 1

    @hookimpl(trylast=True)
    def skillbot_fallback(self, ctx):
        return TextReply(f"第{len(ctx.history) // 2 + 1}轮")


@pytest.fixture
def plugin_dir(tmp_path):
    folder = tmp_path / "plugins" / "reload_greeter"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(textwrap.dedent(GREETER), encoding="utf-8")
    return tmp_path / "plugins"


class Harness:
    def __init__(self, path: Path, plugin_dir: Path):
        self.path = path
        self.plugin_dir = plugin_dir
        self.client = self.app = self.signer = None

    @property
    def reloader(self):
        return self.app[RELOADER_KEY]

    @property
    def bot(self):
        return self.app[GATEWAY_KEY].bot

    def write(self, enabled: list[str], extra: dict | None = None) -> None:
        data = {"server": {"reload_interval": 0}, "plugins": {"enabled": enabled, "paths": [str(self.plugin_dir)]}}
        for key, value in (extra or {}).items():
            data[key] = {**data.get(key, {}), **value}
        write_settings(self.path, data)

    async def say(self, text: str, user: str = "o_reload") -> str:
        request = self.signer.sign(text_xml(text, from_user=user))
        response = await self.client.post("/wechat", params=request.params, data=request.body)
        assert response.status == 200
        fields = self.signer.open_reply(await response.text())
        return fields["Content"] if fields else ""


@pytest.fixture
def start(aiohttp_client, tmp_path, plugin_dir):
    async def make(enabled: list[str], extra: dict | None = None, plugins: dict | None = None) -> Harness:
        path = tmp_path / "settings.toml"
        h = Harness(path, plugin_dir)
        h.write(enabled, extra)
        app = create_app(load_settings(path), plugins)
        h.app = app
        h.client = await aiohttp_client(app)
        h.signer = signer_for(app[GATEWAY_KEY].bot.settings)
        return h
    return make


NO_ANSWER = "抱歉，我暂时没有理解您的意思，可以换个说法试试。"


async def test_enable_change_and_disable_a_plugin_without_restart(start):
    h = await start(["welcome"])
    assert await h.say("你好") == NO_ANSWER
    assert (await h.reloader.check()).outcome == "unchanged"

    h.write(["welcome", "reload_greeter"], {"plugins": {"reload_greeter": {"prefix": "甲"}}})
    result = await h.reloader.check()
    assert result.outcome == "applied" and "plugins.enabled" in result.changed
    assert await h.say("你好") == "甲：你好"

    first = h.bot.pm.get_plugin("reload_greeter")
    h.write(["welcome", "reload_greeter"], {"plugins": {"reload_greeter": {"prefix": "乙"}}})
    assert (await h.reloader.check()).outcome == "applied"
    assert await h.say("你好") == "乙：你好"
    await h.reloader.drain()
    assert first.stopped  # the replaced plugin instance was shut down

    h.write(["welcome"])
    assert (await h.reloader.check()).outcome == "applied"
    assert await h.say("你好") == NO_ANSWER
    assert h.reloader.generation == 3


async def test_after_a_reload_every_reader_sees_the_new_bot(start):
    """One holder keeps the running bot; the webhook, the delivery, the metrics, the health pages
    and the reloader read it there, and no part of the app keeps the replaced one."""
    h = await start(["welcome"])
    old = h.app[BOTS_KEY].bot
    h.write(["welcome", "reload_greeter"], {"plugins": {"reload_greeter": {"prefix": "新"}}})
    assert (await h.reloader.check()).outcome == "applied"
    new = h.app[BOTS_KEY].bot
    assert new is not old
    assert h.app[GATEWAY_KEY].bot is new and h.reloader.bot is new and current_bot(h.app) is new
    assert h.app[DELIVERY_KEY].bots.bot is new and h.app[METRICS_KEY].bots.bot is new
    assert await h.say("你好") == "新：你好"  # the delivery's work ran on the new bot
    # The metrics read the new bot's caches.
    await new.cache("reload_probe").get("missing")
    scraped = await (await h.client.get("/metrics")).text()
    assert 'skillbot_cache_misses_total{cache="reload_probe"} 1' in scraped
    await h.reloader.drain()
    # Once stopped, the replaced bot is held by nothing the app keeps.
    assert not old.started and h.app[BOTS_KEY].retiring == []
    assert [k for k, v in h.app.items() if isinstance(v, Bot)] == []
    assert all(v is not old for v in h.app.values())


async def test_after_a_reload_the_webhook_renders_with_the_new_reply_templates(start, tmp_path):
    shipped = Path(__file__).parent.parent / "core" / "access" / "templates" / "reply" / "text.xml.j2"
    folder = tmp_path / "operator_templates" / "reply"
    folder.mkdir(parents=True)
    (folder / "text.xml.j2").write_text(
        shipped.read_text(encoding="utf-8").replace("{{ content|cdata }}", "{{ (content ~ '【新模板】')|cdata }}"),
        encoding="utf-8")
    h = await start(["welcome"])
    assert await h.say("你好") == NO_ANSWER
    h.write(["welcome"], {"pipeline": {"templates_dir": str(tmp_path / "operator_templates")}})
    assert (await h.reloader.check()).outcome == "applied"
    assert await h.say("你好") == NO_ANSWER + "【新模板】"


async def test_after_a_reload_answers_are_pushed_on_the_new_bots_session(start, monkeypatch):
    monkeypatch.setenv("WECHAT_APP_SECRET", "test-secret")
    h = await start(["welcome"], {"delivery": {"mode": "customer_service"}})
    delivery = h.app[DELIVERY_KEY]
    first = delivery.push_sender()
    assert first.http is h.bot.http and delivery.push_sender() is first
    h.write(["welcome", "reload_greeter"], {"delivery": {"mode": "customer_service"}})
    assert (await h.reloader.check()).outcome == "applied"
    second = delivery.push_sender()
    assert second is not first and second.http is h.bot.http and not second.http.closed


@pytest.mark.parametrize("breakage,reason", [
    ("[server\nport = 1", "not valid TOML"),
    ({"pipeline": {"plugin_timout": 3}}, "pipeline.plugin_timout"),
    ({"plugins": {"enabled": ["welcome", "reload_greeter", "nosuch"]}}, "plugins.enabled[2]"),
    ({"plugins": {"reload_greeter": {"prefix": 7}}}, "plugins.reload_greeter.prefix"),
    ({"plugins": {"reload_greeter": {"prefix": ""}}}, "prefix must not be empty"),
    ({"plugins": {"reload_greeter": {"prefix": "崩溃"}}}, "reload_greeter failed to start"),
])
async def test_invalid_file_is_rejected_and_the_running_settings_stay(start, breakage, reason, caplog):
    h = await start(["welcome", "reload_greeter"], {"plugins": {"reload_greeter": {"prefix": "甲"}}})
    running = h.bot
    if isinstance(breakage, str):
        h.path.write_text(breakage, encoding="utf-8")
    else:
        data = {"plugins": {"enabled": ["welcome", "reload_greeter"], "reload_greeter": {"prefix": "甲"}}}
        for key, value in breakage.items():
            data[key] = {**data.get(key, {}), **value}
        h.write(data["plugins"].pop("enabled"), data)
    caplog.set_level(logging.ERROR, logger="skillbot.reload")
    result = await h.reloader.check()
    assert result.outcome == "rejected" and reason in result.reason
    assert h.bot is running and await h.say("你好") == "甲：你好"
    assert any(reason in r.getMessage() for r in caplog.records if r.name == "skillbot.reload")
    health = await (await h.client.get("/healthz")).json()
    assert reason in health["reload"]["last_error"]
    assert (await h.reloader.check()).outcome == "unchanged"  # reported once, not every interval

    h.write(["welcome", "reload_greeter"], {"plugins": {"reload_greeter": {"prefix": "丙"}}})
    assert (await h.reloader.check()).outcome == "applied"
    assert await h.say("你好") == "丙：你好"
    assert (await (await h.client.get("/healthz")).json())["reload"]["last_error"] is None
    metrics = await (await h.client.get("/metrics")).text()
    assert 'skillbot_settings_reloads_total{result="rejected"} 1' in metrics
    assert 'skillbot_settings_reloads_total{result="applied"} 1' in metrics


async def test_settings_that_need_a_restart_keep_their_running_value(start, caplog):
    h = await start(["welcome", "reload_greeter"])
    port = h.bot.settings.server.port
    caplog.set_level(logging.WARNING, logger="skillbot.reload")
    h.write(["welcome", "reload_greeter"], {
        "server": {"port": port + 1}, "conversation": {"max_turns": 4},
        "pipeline": {"no_answer_reply": "换了"}, "plugins": {"reload_greeter": {"prefix": "新"}}})
    result = await h.reloader.check()
    assert result.outcome == "applied"
    assert result.restart_needed == ["server.port", "conversation.max_turns"]
    assert h.bot.settings.server.port == port and h.bot.settings.conversation.max_turns == 10
    assert h.bot.settings.pipeline.no_answer_reply == "换了"  # live
    assert await h.say("你好") == "新：你好"
    assert any("server.port" in r.getMessage() and "restart" in r.getMessage() for r in caplog.records)
    health = await (await h.client.get("/healthz")).json()
    assert health["reload"]["restart_needed"] == ["server.port", "conversation.max_turns"]


async def test_conversations_and_plugins_given_in_code_survive_a_reload(start):
    turns = Turns()
    h = await start(["welcome"], plugins={"turns": turns})
    assert await h.say("一", user="o_keep") == "第1轮"
    h.write(["welcome"], {"pipeline": {"no_answer_reply": "换了"}})
    assert (await h.reloader.check()).outcome == "applied"
    await h.reloader.drain()
    assert await h.say("二", user="o_keep") == "第2轮"  # the history is shared state, kept
    assert turns.shutdowns == 0  # still in use by the new bot: not shut down with the old one


async def test_a_message_in_flight_finishes_on_the_old_settings(start):
    h = await start(["welcome", "reload_greeter"], {"plugins": {"reload_greeter": {"prefix": "旧", "delay": 0.5}}})
    old_plugin = h.bot.pm.get_plugin("reload_greeter")
    in_flight = asyncio.ensure_future(h.say("慢", user="o_flight"))
    await asyncio.sleep(0.1)
    h.write(["welcome", "reload_greeter"], {"plugins": {"reload_greeter": {"prefix": "新"}}})
    assert (await h.reloader.check()).outcome == "applied"
    assert not old_plugin.stopped  # still answering
    assert await in_flight == "旧：慢"
    await h.reloader.drain()
    assert old_plugin.stopped
    assert await h.say("快", user="o_flight") == "新：快"


async def test_the_watcher_applies_an_edit_by_itself(start):
    h = await start(["welcome"], {"server": {"reload_interval": 0.05}})
    h.write(["welcome", "reload_greeter"], {"server": {"reload_interval": 0.05},
                                            "plugins": {"reload_greeter": {"prefix": "自动"}}})
    for _ in range(200):  # wait for the event, not for a time
        if h.reloader.generation:
            break
        await asyncio.sleep(0.05)
    assert h.reloader.generation == 1
    assert await h.say("你好") == "自动：你好"


async def test_the_shipped_plugins_reload_cleanly(start):
    shipped = ["filter", "welcome", "faq", "weather", "llm"]
    h = await start(shipped)
    blocked = await h.say("傻逼")
    welcome_before = h.bot.pm.get_plugin("welcome")
    h.write(shipped, {"plugins": {"welcome": {"click_replies": {"K": "新菜单"}}}})
    assert (await h.reloader.check()).outcome == "applied"
    await h.reloader.drain()
    assert h.bot.pm.get_plugin("welcome") is not welcome_before
    assert await h.say("傻逼") == blocked  # the filter of the new bot works
    request = h.signer.sign(
        '<xml><ToUserName>gh</ToUserName><FromUserName>o_k</FromUserName><CreateTime>1700000000</CreateTime>'
        '<MsgType>event</MsgType><Event>CLICK</Event><EventKey>K</EventKey></xml>',
        timestamp=None)
    response = await h.client.post("/wechat", params=request.params, data=request.body)
    assert h.signer.open_reply(await response.text())["Content"] == "新菜单"


# ---- plugin imports during a reload (issue 12, items 14-16) -----------------------------------------

def write_plugin(plugin_dir: Path, name: str, code: str) -> None:
    folder = plugin_dir / name
    folder.mkdir(exist_ok=True)
    (folder / "__init__.py").write_text(textwrap.dedent(code), encoding="utf-8")


# Imports until a file appears (the test decides when), so nothing here depends on a duration.
WAITING = '''
import pathlib, time
RELEASE = pathlib.Path({release!r})
for _ in range({spins}):
    if RELEASE.exists():
        break
    time.sleep(0.01)
else:
    raise RuntimeError("never released")
from core import TextReply, hookimpl


@hookimpl
def skillbot_fallback(ctx):
    return TextReply("慢插件")
'''


async def test_a_plugin_calling_sys_exit_at_import_is_rejected_and_the_bot_keeps_serving(start, caplog):
    h = await start(["welcome", "reload_greeter"], {"plugins": {"reload_greeter": {"prefix": "甲"}}})
    running = h.bot
    write_plugin(h.plugin_dir, "reload_exits", "import sys\nsys.exit(3)\n")
    h.write(["welcome", "reload_exits", "reload_greeter"], {"plugins": {"reload_greeter": {"prefix": "乙"}}})
    caplog.set_level(logging.ERROR)
    result = await h.reloader.check()
    assert result.outcome == "rejected"
    assert result.reason.startswith("plugins.reload_exits: failed to load: SystemExit")
    assert h.bot is running and await h.say("你好") == "甲：你好"


async def test_a_slow_plugin_import_does_not_hold_up_other_messages(start, tmp_path):
    release = tmp_path / "release-slow"
    write_plugin(tmp_path / "plugins", "reload_slow",
                 WAITING.format(release=str(release), spins=1000))
    h = await start(["welcome"])
    h.write(["welcome", "reload_slow"])  # the default time limit (10 s) is far off
    checking = asyncio.ensure_future(h.reloader.check())
    await asyncio.sleep(0)  # the reload has begun importing
    # Answered while the import is still waiting: the import does not run on the event loop.
    # (Run on the loop, the import would wait out its 1,000 spins, fail, and be rejected.)
    assert await h.say("你好") == NO_ANSWER
    assert not checking.done()
    release.touch()
    result = await checking
    assert result.outcome == "applied", result.reason
    assert await h.say("你好") == "慢插件"


async def test_a_plugin_import_past_the_time_limit_is_rejected(start, tmp_path):
    release = tmp_path / "release-hung"
    write_plugin(tmp_path / "plugins", "reload_hung", WAITING.format(release=str(release), spins=500))
    h = await start(["welcome", "reload_greeter"], {"plugins": {"reload_greeter": {"prefix": "甲"}}})
    running = h.bot
    try:
        h.write(["welcome", "reload_hung", "reload_greeter"], {"server": {"reload_import_timeout": 0.2},
                                                               "plugins": {"reload_greeter": {"prefix": "甲"}}})
        result = await h.reloader.check()
        assert result.outcome == "rejected"
        assert "server.reload_import_timeout (0.2 s)" in result.reason
        assert h.bot is running and await h.say("你好") == "甲：你好"
    finally:
        release.touch()
    # The abandoned import finishes in its thread; the next edit waits for it and then loads it.
    h.write(["welcome", "reload_hung"], {"server": {"reload_import_timeout": 60}})
    assert (await h.reloader.check()).outcome == "applied"
    assert await h.say("你好") == "慢插件"


async def test_a_plugin_that_failed_to_import_stays_rejected_until_it_is_fixed(start, tmp_path):
    write_plugin(tmp_path / "plugins", "reload_broken", "raise RuntimeError('missing dependency')\n")
    h = await start(["welcome", "reload_greeter"], {"plugins": {"reload_greeter": {"prefix": "甲"}}})
    running = h.bot
    enabled = ["welcome", "reload_broken", "reload_greeter"]
    h.write(enabled, {"plugins": {"reload_greeter": {"prefix": "甲"}}})
    first = await h.reloader.check()
    assert first.outcome == "rejected" and "plugins.reload_broken" in first.reason

    h.write(enabled, {"plugins": {"reload_greeter": {"prefix": "乙"}}})  # an unrelated edit
    again = await h.reloader.check()
    assert again.outcome == "rejected" and again.reason == first.reason
    assert h.bot is running and await h.say("你好") == "甲：你好"
    health = await (await h.client.get("/healthz")).json()
    assert "plugins.reload_broken" in health["reload"]["last_error"]

    write_plugin(tmp_path / "plugins", "reload_broken", GREETER)  # fixed
    h.write(enabled, {"plugins": {"reload_greeter": {"prefix": "丙"}}})
    assert (await h.reloader.check()).outcome == "applied"
    assert set(h.bot.settings.plugins.enabled) >= {"reload_broken", "reload_greeter"}


async def test_reload_errors_name_the_key_but_never_show_the_value(start, caplog):
    secret = "8123456789012345"
    h = await start(["welcome", "reload_greeter"])
    h.write(["welcome", "reload_greeter"], {"wechat": {"token": int(secret)},
                                             "plugins": {"reload_greeter": {"prefix": int(secret)}}})
    caplog.set_level(logging.INFO)
    result = await h.reloader.check()
    assert result.outcome == "rejected"
    assert "wechat.token: expected a string, got an integer" in result.reason
    assert "plugins.reload_greeter.prefix" not in result.reason  # core sections fail first
    health = await (await h.client.get("/healthz")).text()
    assert "wechat.token" in health and secret not in health
    assert all(secret not in record.getMessage() for record in caplog.records)

    h.write(["welcome", "reload_greeter"], {"plugins": {"reload_greeter": {"prefix": int(secret)}}})
    result = await h.reloader.check()
    assert result.reason == "plugins.reload_greeter.prefix: expected a string, got an integer"
    assert secret not in await (await h.client.get("/healthz")).text()
    assert all(secret not in record.getMessage() for record in caplog.records)

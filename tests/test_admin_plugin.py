"""Admin commands in chat (plugins/admin): only the operator's OpenIDs see them; each writes an
audit line; 启用/停用 rewrite plugins.enabled in the settings file, reload, and put the file back
when the result is refused. Through the real webhook of an app built by create_app."""
from __future__ import annotations

import asyncio
import json
import logging
import textwrap
import tomllib

import pytest

from core import hash_user
from core.app import create_app
from core.appkeys import ACCOUNTS_KEY, GATEWAY_KEY
from core.operations.chat_console import signer_for
from core.operations.operator_desk import with_enabled_plugins
from core.operations.reload import RELOADER_KEY
from core.operations.wechat_client import text_xml
from core.settings import load_settings
from core.testing import running_bot

ADMIN = "o_operator_admin"
USER = "o_someone_else"
NO_ANSWER = "抱歉，我暂时没有理解您的意思，可以换个说法试试。"

SETTINGS = '''\
# The operator's own file: comments must survive a plugin switch.
[server]
reload_interval = 0         # the tests reload on purpose

[wechat]
token = "testtoken"

[pipeline]
plugin_timeout = 60.0       # a reload on a loaded test machine may take a while

[delivery]
try_budget = 4.5
hold_seconds = 60.0

[ratelimit]
burst = 1000

[plugins]
enabled = ["admin", "welcome", "smalltalk"]  # in priority order
paths = ["{plugins}"]
entry_points = false

[plugins.admin]
openids = ["{admin}"]       # the operator
wait_seconds = {wait}
'''

BROKEN = '''
from core import hookimpl


class Plugin:
    @hookimpl
    def skillbot_startup(self, bot, config):
        raise RuntimeError("admin_test_broken refuses to start")
'''


class Chat:
    def __init__(self, app, client, path):
        self.app, self.client, self.path = app, client, path
        self.signer = signer_for(app[GATEWAY_KEY].bot.settings)

    @property
    def bot(self):
        return self.app[GATEWAY_KEY].bot

    async def say(self, text: str, user: str = ADMIN) -> str:
        request = self.signer.sign(text_xml(text, from_user=user))
        response = await self.client.post("/wechat", params=request.params, data=request.body)
        assert response.status == 200
        fields = self.signer.open_reply(await response.text())
        return fields["Content"] if fields else ""


@pytest.fixture
def start(aiohttp_client, tmp_path):
    async def make(wait: float = 50.0, extra: str = "") -> Chat:
        folder = tmp_path / "plugins" / "admin_test_broken"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "__init__.py").write_text(textwrap.dedent(BROKEN), encoding="utf-8")
        path = tmp_path / "settings.toml"
        path.write_text(SETTINGS.format(plugins=tmp_path / "plugins", admin=ADMIN, wait=wait) + extra,
                        encoding="utf-8")
        app = create_app(load_settings(path))
        return Chat(app, await aiohttp_client(app), path)
    return make


def audit_lines(caplog) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "skillbot.audit"]


async def test_status_and_plugin_list_for_the_operator_only(start, caplog):
    chat = await start()
    caplog.set_level(logging.INFO, logger="skillbot.audit")
    status = await chat.say("状态")
    assert status.startswith("【运行状态】")
    assert "已启用插件：admin、welcome、smalltalk" in status and "配置已重载：0 次" in status
    listing = await chat.say("插件列表")
    assert "✅ admin（第 1 位）" in listing and "✅ smalltalk（第 3 位）" in listing
    assert "⛔ faq（未启用）" in listing and "⛔ admin_test_broken（未启用）" in listing
    # Anybody else typing the same words gets the normal pipeline, and no audit line.
    assert await chat.say("状态", user=USER) == NO_ANSWER
    assert await chat.say("插件列表", user=USER) == NO_ANSWER
    lines = audit_lines(caplog)
    assert [(l["command"], l["outcome"]) for l in lines] == [("status", "ok"), ("plugins", "ok")]
    assert lines[0]["user"] == hash_user(ADMIN) and ADMIN not in caplog.text
    # The operator's other messages are answered as anybody's; admin replies stay out of the history.
    assert await chat.say("你好") != NO_ANSWER
    history = await chat.bot.conversations.history(ADMIN)
    assert [t.text for t in history if t.role == "user"] == ["你好"]


async def test_disable_and_enable_a_plugin_from_chat(start, caplog):
    chat = await start()
    caplog.set_level(logging.INFO, logger="skillbot.audit")
    greeting = await chat.say("你好", user=USER)
    assert greeting != NO_ANSWER  # smalltalk answers
    reply = await chat.say("停用 smalltalk")
    assert reply.startswith("停用插件 smalltalk：已生效。")
    text = chat.path.read_text(encoding="utf-8")
    assert 'enabled = ["admin", "welcome"]  # in priority order' in text
    assert "# The operator's own file: comments must survive a plugin switch." in text
    assert await chat.say("你好", user=USER) == NO_ANSWER
    assert "已生效" in await chat.say("启用 smalltalk")
    assert tomllib.loads(chat.path.read_text())["plugins"]["enabled"] == ["admin", "welcome", "smalltalk"]
    assert await chat.say("你好", user=USER) != NO_ANSWER
    assert "配置已重载：2 次" in await chat.say("状态")
    assert [(l["command"], l["argument"], l["outcome"]) for l in audit_lines(caplog)][:2] == [
        ("disable", "smalltalk", "applied"), ("enable", "smalltalk", "applied")]


async def test_refused_switches_leave_the_file_and_the_bot_as_they_were(start, caplog):
    chat = await start()
    caplog.set_level(logging.INFO, logger="skillbot.audit")
    before = chat.path.read_text(encoding="utf-8")
    running = chat.bot
    assert "没有找到名为 nosuch 的插件" in await chat.say("启用 nosuch")
    assert "不能在聊天里停用管理插件本身" in await chat.say("停用 admin")
    assert "已经是启用状态" in await chat.say("启用 welcome")
    reply = await chat.say("启用 admin_test_broken")
    assert "新配置无效，已拒绝，配置文件已恢复原样" in reply
    assert "admin_test_broken failed to start" in reply
    assert chat.path.read_text(encoding="utf-8") == before
    assert chat.bot is running
    assert await chat.say("你好", user=USER) != NO_ANSWER
    assert [(l["argument"], l["outcome"], l["reason"]) for l in audit_lines(caplog)] == [
        ("nosuch", "refused", "unknown_plugin"), ("admin", "refused", "protected"),
        ("welcome", "refused", "already"),
        ("admin_test_broken", "rejected", audit_lines(caplog)[3]["reason"])]
    assert "admin_test_broken failed to start" in audit_lines(caplog)[3]["reason"]


async def test_reload_from_chat_applies_an_edited_file(start):
    chat = await start()
    text = chat.path.read_text(encoding="utf-8")
    chat.path.write_text(text + '\n[plugins.welcome]\nmessage = "新的欢迎语"\n', encoding="utf-8")
    reply = await chat.say("重载")
    assert reply.startswith("重载配置：已生效。") and "plugins.welcome" in reply
    assert chat.bot.configs["welcome"].message == "新的欢迎语"
    assert await chat.say("重载") == "重载配置：已生效。"  # asked for: applied even unchanged
    chat.path.write_text(text.replace("plugin_timeout = 60.0", "plugin_timeout = -1"), encoding="utf-8")
    reply = await chat.say("重载")
    assert "新配置无效，已拒绝，机器人继续按原配置运行" in reply and "plugin_timeout" in reply


async def test_a_slow_reload_answers_at_once_and_finishes_on_its_own(start, caplog):
    chat = await start(wait=0)
    caplog.set_level(logging.INFO, logger="skillbot.audit")
    assert await chat.say("停用 smalltalk") == "停用插件 smalltalk：正在进行，稍后发送「状态」查看结果。"
    reloader = chat.app[RELOADER_KEY]
    for _ in range(6000):  # until the reload has ended, however slow the machine
        if reloader.generation == 1:
            break
        await asyncio.sleep(0.01)
    assert chat.bot.settings.plugins.enabled == ["admin", "welcome"]
    await asyncio.sleep(0)
    assert [(l["command"], l["outcome"]) for l in audit_lines(caplog)] == [("disable", "applied")]


async def test_without_an_app_the_commands_say_so():
    async with running_bot({"plugins": {"enabled": ["admin", "welcome"], "admin": {"openids": [ADMIN]}}}) as bot:
        reply = await bot.send("重载", user=ADMIN)
        assert "没有运行在服务里" in reply.content
        assert (await bot.send("重载", user=USER)).content == NO_ANSWER


def test_enabled_is_rewritten_in_place_or_added():
    text = '[server]\nport = 1\n\n[plugins]\npaths = []\nenabled = [\n  "a",\n  "b",\n]  # kept\n\n[plugins.a]\nx = 1\n'
    assert with_enabled_plugins(text, ["b"]) == '[server]\nport = 1\n\n[plugins]\npaths = []\nenabled = ["b"]  # kept\n\n[plugins.a]\nx = 1\n'
    assert tomllib.loads(with_enabled_plugins("[plugins]\npaths = []\n", ["x"]))["plugins"] == {"enabled": ["x"], "paths": []}
    assert tomllib.loads(with_enabled_plugins("[server]\nport = 1\n", ["x"]))["plugins"]["enabled"] == ["x"]
    # A table of a plugin's own whose key is also "enabled" is not touched.
    text = '[plugins.x]\nenabled = ["q"]\n\n[plugins]\nenabled = ["a"]\n'
    assert tomllib.loads(with_enabled_plugins(text, ["b"]))["plugins"] == {"x": {"enabled": ["q"]}, "enabled": ["b"]}


def test_a_named_accounts_enabled_is_its_own_table():
    text = '[plugins]\nenabled = ["a"]\n\n[accounts.shop.wechat]\ntoken = "t"\n'
    result = with_enabled_plugins(text, ["b"], "accounts.shop.plugins")
    assert result == text + '\n[accounts.shop.plugins]\nenabled = ["b"]\n'  # added, the rest as it was
    # Present (with spaces in its header): rewritten in place, the top level's list untouched.
    text = '[plugins]\nenabled = ["a"]\n\n[ accounts . shop . plugins ]  # own\nenabled = ["a"]  # kept\n'
    assert with_enabled_plugins(text, ["a", "c"], "accounts.shop.plugins") == (
        '[plugins]\nenabled = ["a"]\n\n[ accounts . shop . plugins ]  # own\nenabled = ["a", "c"]  # kept\n')
    # Given inline in the account's table: not rewritable in place, said so.
    with pytest.raises(ValueError):
        with_enabled_plugins('[accounts.shop]\nplugins = { enabled = ["a"] }\n', ["b"], "accounts.shop.plugins")


async def test_a_named_accounts_admin_chat_switches_its_own_plugins(start, caplog):
    chat = await start(extra='\n[accounts.shop.wechat]\ntoken = "shoptoken"\nmode = "plain"\n'
                             '\n[accounts.cafe.wechat]\ntoken = "cafetoken"\nmode = "plain"\n')
    caplog.set_level(logging.INFO, logger="skillbot.audit")
    original = chat.path.read_text(encoding="utf-8")
    named = chat.app[ACCOUNTS_KEY].named
    default_bot, cafe_bot = chat.bot, named["cafe"].gateway.bot

    async def to(account: str, text: str, user: str = ADMIN) -> str:
        signer = signer_for(named[account].gateway.bot.settings)
        request = signer.sign(text_xml(text, from_user=user))
        response = await chat.client.post(f"/wechat/{account}", params=request.params, data=request.body)
        assert response.status == 200
        return (signer.open_reply(await response.text()) or {}).get("Content", "")

    async def shop(text: str, user: str = ADMIN) -> str:
        return await to("shop", text, user)

    assert await shop("你好", user=USER) != NO_ANSWER
    assert (await shop("停用 smalltalk")).startswith("停用插件 smalltalk：已生效。")
    assert chat.path.read_text(encoding="utf-8") == (
        original.rstrip("\n") + '\n\n[accounts.shop.plugins]\nenabled = ["admin", "welcome"]\n')
    assert await shop("你好", user=USER) == NO_ANSWER
    status = await shop("状态")
    assert "已启用插件：admin、welcome" in status and "配置已重载：1 次" in status
    assert "⛔ smalltalk（未启用）" in await shop("插件列表")
    # The default account and the cafe keep their bots, their plugins, their reload count.
    assert chat.bot is default_bot and named["cafe"].gateway.bot is cafe_bot
    assert await chat.say("你好", user=USER) != NO_ANSWER
    assert "配置已重载：0 次" in await chat.say("状态")
    # A switch the new settings refuse puts the file back; the shop keeps its bot.
    before, running = chat.path.read_text(encoding="utf-8"), named["shop"].gateway.bot
    reply = await shop("启用 admin_test_broken")
    assert "新配置无效，已拒绝，配置文件已恢复原样" in reply and "admin_test_broken failed to start" in reply
    assert chat.path.read_text(encoding="utf-8") == before and named["shop"].gateway.bot is running
    # The next switch, of the cafe's, rebuilds the cafe alone: the refused one is forgotten.
    assert "已生效" in await to("cafe", "停用 welcome")
    assert named["shop"].gateway.bot is running and chat.bot is default_bot
    cafe_bot = named["cafe"].gateway.bot
    assert cafe_bot.settings.plugins.enabled == ["admin", "smalltalk"]
    assert "已生效" in await shop("启用 smalltalk")
    written = tomllib.loads(chat.path.read_text())["accounts"]
    assert written["shop"]["plugins"]["enabled"] == ["admin", "welcome", "smalltalk"]
    assert written["cafe"]["plugins"]["enabled"] == ["admin", "smalltalk"]
    assert await shop("你好", user=USER) != NO_ANSWER
    assert chat.bot is default_bot and named["cafe"].gateway.bot is cafe_bot
    lines = [(l["account"], l["command"], l["argument"], l["outcome"]) for l in audit_lines(caplog)]
    assert lines == [
        ("shop", "disable", "smalltalk", "applied"), ("shop", "status", "", "ok"),
        ("shop", "plugins", "", "ok"), ("default", "status", "", "ok"),
        ("shop", "enable", "admin_test_broken", "rejected"), ("cafe", "disable", "welcome", "applied"),
        ("shop", "enable", "smalltalk", "applied")]


async def test_an_account_added_by_a_reload_gets_its_own_services(start):
    chat = await start()
    text = chat.path.read_text(encoding="utf-8")
    chat.path.write_text(text + '\n[accounts.shop.wechat]\ntoken = "shoptoken"\nmode = "plain"\n', encoding="utf-8")
    await chat.say("重载")  # the default account's settings are unchanged; the shop is added
    shop = chat.app[ACCOUNTS_KEY].named["shop"].gateway
    signer = signer_for(shop.bot.settings)
    request = signer.sign(text_xml("停用 smalltalk", from_user=ADMIN))
    response = await chat.client.post("/wechat/shop", params=request.params, data=request.body)
    assert signer.open_reply(await response.text())["Content"].startswith("停用插件 smalltalk：已生效。")
    assert chat.app[ACCOUNTS_KEY].named["shop"].gateway.bot.settings.plugins.enabled == ["admin", "welcome"]
    assert chat.bot.settings.plugins.enabled == ["admin", "welcome", "smalltalk"]

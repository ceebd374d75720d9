"""run.py menu / media / template against the local stand-in of WeChat's API
(tests/standins/wechat_api_server.py), with WeChat's recorded answers and error codes."""
from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import sys
from pathlib import Path

import pytest

from core import ImageReply, Intent, VoiceReply, hookimpl
from core.access.wechat_api import WeChatAPIError, explain_error
from core.operations import wechat_admin
from core.operations.wechat_admin import MenuFileError, load_menu, validate_menu
from core.settings import PROJECT_ROOT, load_settings
from core.testing import running_bot, write_settings
from tests.standins.wechat_api_server import WeChatAPIState, create_wechat_api_app

SECRET_ENV = "SKILLBOT_TEST_WECHAT_SECRET"
EXAMPLE_MENU = PROJECT_ROOT / "docs" / "examples" / "menu.toml"


@pytest.fixture
async def wechat(aiohttp_server, monkeypatch):
    state = WeChatAPIState()
    server = await aiohttp_server(create_wechat_api_app(state))
    monkeypatch.setenv(SECRET_ENV, state.secret)
    return state, str(server.make_url("")).rstrip("/")


def settings_for(tmp_path: Path, base: str, enabled: list[str] | None = None, **wechat: str):
    data = {"wechat": {"app_id": "wx_test_app_id", "app_secret_env": SECRET_ENV, **wechat},
            "delivery": {"api_base": base}}
    if enabled is not None:
        data["plugins"] = {"enabled": enabled}
    path = write_settings(tmp_path / "settings.toml", data)
    return path, load_settings(path)


async def run(command, settings, *args, **kw) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await command(settings, *args, out=out, err=err, **kw)
    return code, out.getvalue(), err.getvalue()


# ---- menu ---------------------------------------------------------------------------------------

async def test_menu_push_show_delete_through_run_py(wechat, tmp_path):
    """The real command in a subprocess: the example menu reaches WeChat as UTF-8 JSON and comes back."""
    state, base = wechat
    path, _ = settings_for(tmp_path, base)
    env = {**os.environ, SECRET_ENV: state.secret}

    async def run_py(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(PROJECT_ROOT / "run.py"), *args, "--settings", str(path), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await process.communicate()
        return process.returncode, out.decode(), err.decode()

    code, out, err = await run_py("menu", "push", str(EXAMPLE_MENU))
    assert code == 0, err
    assert "菜单已发布：3 个一级菜单" in out
    assert "营业时间".encode() in state.menu_bodies[0]  # not \u escapes
    assert state.menu["button"][1]["sub_button"][1] == {
        "type": "miniprogram", "name": "小程序商城", "url": "https://www.example.com/shop",
        "appid": "wx286b93c14bbf93aa", "pagepath": "pages/index/index"}
    code, out, err = await run_py("menu", "show")
    assert code == 0, err
    assert out.splitlines()[:2] == ["营业时间  [click] V1001_HOURS", "服务"]
    assert "  - 官网  [view] https://www.example.com/" in out
    code, out, _ = await run_py("menu", "delete")
    assert (code, out.strip()) == (0, "菜单已删除。")
    assert state.menu is None
    code, out, _ = await run_py("menu", "show")
    assert (code, out.strip()) == (0, "公众号当前没有自定义菜单。")


def test_menu_limits_in_bytes_are_checked_before_sending():
    ok = {"type": "click", "name": "好", "key": "K"}
    with pytest.raises(MenuFileError) as caught:
        validate_menu({"button": [ok, ok, ok, ok]})
    assert "有 4 个一级菜单，最多 3 个" in caught.value.problems[0]
    # 5 Chinese characters = 15 bytes fit at the top; 6 = 18 do not.
    validate_menu({"button": [{**ok, "name": "五个汉字啊"}]})
    with pytest.raises(MenuFileError) as caught:
        validate_menu({"button": [{**ok, "name": "六个汉字啊啊"}]})
    assert caught.value.problems == ["  第 1 个一级菜单（六个汉字啊啊）：name 有 18 个字节，最多 16 个字节（一个汉字 3 个字节）"]
    sub = {"type": "view", "name": "二" * 20, "url": "https://a.example/"}
    validate_menu({"button": [{"name": "更多", "sub_button": [sub] * 5}]})
    with pytest.raises(MenuFileError) as caught:
        validate_menu({"button": [{"name": "更多", "sub_button": [sub] * 6 + [{**sub, "name": "二" * 21}]}]})
    problems = "\n".join(caught.value.problems)
    assert "有 7 个子菜单，最多 5 个" in problems
    assert "第 1 个一级菜单的第 7 个子菜单" in problems and "63 个字节，最多 60 个字节" in problems
    with pytest.raises(MenuFileError) as caught:
        validate_menu({"button": [{"type": "click", "name": "a", "key": "k" * 129},
                                  {"type": "miniprogram", "name": "b", "url": "https://x.example/"},
                                  {"type": "clik", "name": "c", "key": "k"}]})
    problems = "\n".join(caught.value.problems)
    assert "key 有 129 个字节，最多 128 个字节" in problems
    assert "需要 appid" in problems and "需要 pagepath" in problems
    assert 'type = "clik" 不是微信支持的按钮类型' in problems


async def test_menu_push_refuses_a_bad_file_without_calling_wechat(wechat, tmp_path):
    state, base = wechat
    _, settings = settings_for(tmp_path, base)
    bad = tmp_path / "menu.toml"
    bad.write_text('[[button]]\nname = "太长的一级菜单名字"\ntype = "view"\nurl = "ftp://x"\n', encoding="utf-8")
    code, _, err = await run(wechat_admin.menu_command, settings, "push", str(bad))
    assert code == 2
    assert "有 2 处问题，没有发送给微信" in err and "必须是 http:// 或 https:// 开头的网址" in err
    assert state.token_fetches == 0 and state.menu_bodies == []
    assert load_menu(EXAMPLE_MENU)["button"][0]["key"] == "V1001_HOURS"


@pytest.mark.parametrize("code, words", [
    (45064, ["没有关联到本公众号的小程序", "小程序管理"]),
    (48001, ["没有这个接口的权限", "接口权限"]),
    (45009, ["超过每日限额", "清零"]),
    (40016, ["一级菜单按钮个数不合法"]),
])
async def test_wechat_refusals_are_explained_in_chinese(wechat, tmp_path, code, words):
    state, base = wechat
    _, settings = settings_for(tmp_path, base)
    state.api_errors["menu/create"] = [code]
    status, _, err = await run(wechat_admin.menu_command, settings, "push", str(EXAMPLE_MENU))
    assert status == 1
    assert err.startswith(f"微信错误 {code}：")
    assert "处理办法：" in err and all(word in err for word in words), err
    assert state.menu is None


async def test_ip_not_on_the_whitelist_names_the_ip_wechat_saw(wechat, tmp_path):
    state, base = wechat
    _, settings = settings_for(tmp_path, base)
    state.caller_ip = "198.51.100.23"
    state.token_errors = [40164]
    status, _, err = await run(wechat_admin.menu_command, settings, "show")
    assert status == 1
    assert "调用接口的 IP 地址 198.51.100.23 不在公众号的 IP 白名单中" in err
    assert "IP白名单”中加入 198.51.100.23" in err


@pytest.mark.parametrize("field, value, code, words", [
    ("app_id", "wx_wrong", 40013, ["AppID 不合法", "wechat.app_id"]),
])
async def test_bad_credentials_are_explained(wechat, tmp_path, field, value, code, words):
    _, base = wechat
    _, settings = settings_for(tmp_path, base, **{field: value})
    status, _, err = await run(wechat_admin.menu_command, settings, "delete")
    assert status == 1 and f"微信错误 {code}" in err and all(w in err for w in words)


async def test_wrong_secret_and_missing_credentials(wechat, tmp_path, monkeypatch):
    _, base = wechat
    _, settings = settings_for(tmp_path, base)
    monkeypatch.setenv(SECRET_ENV, "not_the_secret")
    status, _, err = await run(wechat_admin.menu_command, settings, "delete")
    assert status == 1 and "微信错误 40125：AppSecret 不合法" in err
    monkeypatch.delenv(SECRET_ENV)
    status, _, err = await run(wechat_admin.menu_command, settings, "delete")
    assert status == 2 and f"环境变量 {SECRET_ENV}" in err


async def test_an_expired_token_is_refreshed_and_the_call_made_again(wechat, tmp_path):
    state, base = wechat
    _, settings = settings_for(tmp_path, base)
    state.api_errors["menu/delete"] = [42001]
    status, out, err = await run(wechat_admin.menu_command, settings, "delete")
    assert (status, out.strip()) == (0, "菜单已删除。"), err
    assert state.token_fetches == 2


# ---- media --------------------------------------------------------------------------------------

async def test_media_upload_temporary_and_permanent(wechat, tmp_path):
    state, base = wechat
    _, settings = settings_for(tmp_path, base)
    image = tmp_path / "logo.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    status, out, err = await run(wechat_admin.media_command, settings, str(image), "image")
    assert status == 0, err
    assert "已上传临时素材（image）：media_id = MEDIA_image_1，3 天后过期" in out
    assert state.uploads[0]["content"] == image.read_bytes() and state.uploads[0]["filename"] == "logo.png"
    video = tmp_path / "intro.mp4"
    video.write_bytes(b"\0\0\0\x18ftypmp42" + b"\0" * 64)
    status, out, err = await run(wechat_admin.media_command, settings, str(video), "video", True, "门店介绍", "一分钟")
    assert status == 0, err
    assert "已上传永久素材（video）：media_id = MATERIAL_video_2" in out
    assert json.loads(state.uploads[1]["description"]) == {"title": "门店介绍", "introduction": "一分钟"}
    status, out, _ = await run(wechat_admin.media_command, settings, str(image), "image", True)
    assert "图片地址：http://mmbiz.qpic.cn/" in out


async def test_media_refused_locally_and_by_wechat(wechat, tmp_path):
    state, base = wechat
    _, settings = settings_for(tmp_path, base)
    voice = tmp_path / "hello.wav"
    voice.write_bytes(b"RIFF")
    status, _, err = await run(wechat_admin.media_command, settings, str(voice), "voice")
    assert status == 1 and "微信错误 40005：文件格式不合法" in err and "mp3/amr" in err
    thumb = tmp_path / "thumb.jpg"
    thumb.write_bytes(b"\xff\xd8" + b"\0" * 70_000)
    status, _, err = await run(wechat_admin.media_command, settings, str(thumb), "thumb")
    assert status == 1 and "40006" in err and "64KB" in err
    assert state.uploads == []
    status, _, err = await run(wechat_admin.media_command, settings, str(tmp_path / "none.png"), "image")
    assert status == 2 and "不存在" in err
    image = tmp_path / "a.jpg"
    image.write_bytes(b"\xff\xd8\xff")
    state.api_errors["media/upload"] = [48001]
    status, _, err = await run(wechat_admin.media_command, settings, str(image), "image")
    assert status == 1 and "没有这个接口的权限" in err


async def test_a_reply_file_is_uploaded_once_and_its_media_id_cached(wechat, tmp_path):
    state, base = wechat
    picture = tmp_path / "menu.jpg"
    picture.write_bytes(b"\xff\xd8\xff" + b"\1" * 50)
    path, _ = settings_for(tmp_path, base)
    async with running_bot(settings_path=path) as bot:
        first = await bot.media_id("menu.jpg")  # relative to the settings file's folder
        again = await bot.media_id(picture)
        assert first == again == "MEDIA_image_1"
        assert len(state.uploads) == 1
        picture.write_bytes(b"\xff\xd8\xff" + b"\2" * 60)  # an edited file is a new upload
        assert await bot.media_id("menu.jpg") == "MEDIA_image_2"
        voice = tmp_path / "hi.mp3"
        voice.write_bytes(b"ID3" + b"\0" * 10)
        assert await bot.media_id("hi.mp3", "voice") == "MEDIA_voice_3"


# ---- template messages --------------------------------------------------------------------------

async def test_template_send_command_and_the_plugin_function(wechat, tmp_path):
    state, base = wechat
    path, settings = settings_for(tmp_path, base)
    status, out, err = await run(wechat_admin.template_command, settings, "o_user_1", "TPL_ORDER",
                                 ["first=您的订单已发货", "keyword1=SB-1024", "remark=a=b"], "https://x.example/o")
    assert status == 0, err
    assert out.strip() == "模板消息已发送：msgid = 200228333"
    assert state.templates[0] == {"touser": "o_user_1", "template_id": "TPL_ORDER", "url": "https://x.example/o",
                                  "data": {"first": {"value": "您的订单已发货"}, "keyword1": {"value": "SB-1024"},
                                           "remark": {"value": "a=b"}}}
    status, _, err = await run(wechat_admin.template_command, settings, "o_user_1", "TPL", ["nokey"])
    assert status == 2 and "键=值" in err
    async with running_bot(settings_path=path) as bot:
        assert await bot.send_template("o_user_2", "TPL_ORDER", {"first": "到了"}) == 200228334
        state.api_errors["message/template/send"] = [40037]
        with pytest.raises(WeChatAPIError) as caught:
            await bot.send_template("o_user_2", "TPL_GONE", {})
        assert caught.value.meaning == "模板 ID 不合法"


def test_error_table_covers_the_codes_operators_meet():
    for code in (-1, 40001, 40007, 40013, 40016, 40017, 40164, 42001, 45009, 45064, 48001):
        meaning, action = explain_error(code, "invalid ip 1.2.3.4 ipv6 ::ffff:1.2.3.4, not in whitelist")
        assert meaning and action and "{" not in meaning + action
    meaning, action = explain_error(99999, "something new")
    assert "99999" in meaning and "something new" in action


async def test_customer_service_log_carries_the_chinese_explanation(wechat, tmp_path, caplog):
    from core.access.replies import TextReply
    from core.access.wechat_api import AccessTokenManager, CustomerServiceSender
    import aiohttp

    state, base = wechat
    state.send_errors = [45015]
    async with aiohttp.ClientSession() as http:
        sender = CustomerServiceSender(http, AccessTokenManager(http, base, state.app_id, state.secret))
        with caplog.at_level(logging.WARNING, logger="skillbot.wechat_api"):
            assert await sender.send("o_user", TextReply("你好")) is False
    assert "用户超过 48 小时没有与公众号互动" in caplog.text and "模板消息" in caplog.text


async def test_media_and_template_commands_through_run_py(wechat, tmp_path):
    state, base = wechat
    path, _ = settings_for(tmp_path, base)
    voice = tmp_path / "hello.mp3"
    voice.write_bytes(b"ID3" + b"\0" * 32)
    env = {**os.environ, SECRET_ENV: state.secret}

    async def run_py(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(PROJECT_ROOT / "run.py"), *args, "--settings", str(path), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await process.communicate()
        return process.returncode, out.decode(), err.decode()

    code, out, err = await run_py("media", "upload", str(voice), "--type", "voice")
    assert code == 0 and "media_id = MEDIA_voice_1" in out, err
    code, out, err = await run_py("template", "send", "--to", "o_user_9", "--template-id", "TPL",
                                  "--data", "first=你好", "--data", "remark=谢谢")
    assert code == 0 and "msgid = 200228333" in out, err
    assert state.templates[0]["data"] == {"first": {"value": "你好"}, "remark": {"value": "谢谢"}}
    state.api_errors["message/template/send"] = [45009]
    code, _, err = await run_py("template", "send", "--to", "o_user_9", "--template-id", "TPL")
    assert code == 1 and "微信错误 45009：接口调用次数超过每日限额" in err


class FileReplies:
    """A skill whose replies name files instead of media_ids."""

    @hookimpl
    def skillbot_intents(self):
        return [Intent("test.picture", keywords=["菜单图"]), Intent("test.missing", keywords=["丢失图"])]

    @hookimpl
    def skillbot_handle(self, ctx, candidate):
        if candidate.name == "test.picture":
            return ImageReply(file="menu.jpg")
        return VoiceReply(file="no/such.mp3")


async def test_a_reply_naming_a_file_is_sent_with_its_uploaded_media_id(wechat, tmp_path, caplog):
    state, base = wechat
    (tmp_path / "menu.jpg").write_bytes(b"\xff\xd8\xff" + b"\3" * 40)
    path, _ = settings_for(tmp_path, base, enabled=["welcome"])  # the skill alone: no FAQ to outrank it
    async with running_bot(settings_path=path, plugins={"file_replies": FileReplies()}) as bot:
        first = await bot.send("菜单图")
        assert isinstance(first, ImageReply) and first.media_id == "MEDIA_image_1"
        assert (await bot.send("菜单图")).media_id == "MEDIA_image_1" and len(state.uploads) == 1
        error_reply = bot.settings.pipeline.error_reply
        with caplog.at_level(logging.WARNING, logger="skillbot.message"):
            assert (await bot.send("丢失图")).content == error_reply  # no such file: no traceback
            (tmp_path / "menu.jpg").write_bytes(b"\xff\xd8\xff" + b"\4" * 40)
            state.api_errors["media/upload"] = [48001]
            assert (await bot.send("菜单图")).content == error_reply
    assert "FileNotFoundError" in caplog.text and "没有这个接口的权限" in caplog.text
    assert "Traceback" not in caplog.text


async def test_an_unreachable_or_garbled_api_is_one_chinese_line(aiohttp_server, tmp_path, monkeypatch):
    from aiohttp import web

    async def gateway_error(request):
        return web.Response(status=502, text="<html>502 Bad Gateway</html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", gateway_error)
    server = await aiohttp_server(app)
    monkeypatch.setenv(SECRET_ENV, "s")
    _, settings = settings_for(tmp_path, str(server.make_url("")).rstrip("/"))
    status, _, err = await run(wechat_admin.menu_command, settings, "show")
    assert status == 1 and err.startswith("无法连接微信接口") and "Traceback" not in err
    await server.close()
    status, _, err = await run(wechat_admin.menu_command, settings, "show")
    assert status == 1 and "ClientConnectorError" in err

"""``run.py chat``, ``run.py plugins`` and ``run.py check`` as an operator runs them: subprocesses
against real sockets (an in-process bot, a Redis server, local stand-ins for outside services)."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import textwrap
from pathlib import Path

import pytest
from aiohttp import web

from core.app import create_app
from core.settings import PROJECT_ROOT, load_settings
from core.testing import write_settings
from tests.standins.openai_server import OpenAIStandIn
from tests.standins.weather_server import WeatherStandIn

# Plugin folders for these tests (names unique to this file: folder plugins import once per process).
ECHO = '''
from dataclasses import dataclass
from core import TextReply, hookimpl


@dataclass
class Config:
    prefix: str = "回声"


class Plugin:
    def __init__(self):
        self.config = Config()

    @hookimpl
    def skillbot_config_schema(self):
        return Config

    @hookimpl
    def skillbot_startup(self, bot, config):
        self.config = config

    @hookimpl
    def skillbot_fallback(self, ctx):
        if ctx.message.text:
            return TextReply(f"{self.config.prefix}：{ctx.message.text}")
'''

PROBE = '''
from dataclasses import dataclass, field
from core import hookimpl
from core.operations.health import Check, probe_http


@dataclass
class Config:
    urls: list = field(default_factory=list)


class Plugin:
    """Depends on the services at ``urls``; reports them the way real plugins should."""

    def __init__(self):
        self.config = Config()
        self.bot = None

    @hookimpl
    def skillbot_config_schema(self):
        return Config

    @hookimpl
    def skillbot_startup(self, bot, config):
        self.bot, self.config = bot, config

    @hookimpl
    async def skillbot_health(self, bot, probe):
        if not probe:
            return [Check(f"service {i}", True, "not asked yet") for i, _ in enumerate(self.config.urls)]
        return [await probe_http(bot.http, url, name=f"service {i}", timeout=3)
                for i, url in enumerate(self.config.urls)]
'''


@pytest.fixture
def plugin_dir(tmp_path):
    base = tmp_path / "plugins"
    for name, code in (("cli_echo", ECHO), ("cli_probe", PROBE)):
        (base / name).mkdir(parents=True)
        (base / name / "__init__.py").write_text(textwrap.dedent(code), encoding="utf-8")
    return base


@pytest.fixture
def settings_file(tmp_path, plugin_dir):
    def write(enabled=("welcome", "cli_echo"), **sections) -> Path:
        data = {"server": {"reload_interval": 0},
                "plugins": {"enabled": list(enabled), "paths": [str(plugin_dir)]}}
        for key, value in sections.items():
            data[key] = {**data.get(key, {}), **value}
        return write_settings(tmp_path / "settings.toml", data)
    return write


async def run_py(*args: str, stdin: str | None = None, env: dict | None = None,
                 timeout: float = 90) -> tuple[int, str, str]:
    """``python run.py ARGS`` in a subprocess, while this event loop keeps serving stand-ins."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(PROJECT_ROOT / "run.py"), *args, cwd=str(PROJECT_ROOT),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})})
    out, err = await asyncio.wait_for(process.communicate(stdin.encode() if stdin else None), timeout)
    return process.returncode, out.decode(), err.decode()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- chat ----------------------------------------------------------------------------------------------

async def test_chat_once_prints_reply_plugin_intent_and_stage_times(settings_file):
    path = settings_file()
    code, out, err = await run_py("chat", "北京明天天气", "--settings", str(path))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "bot> 回声：北京明天天气"
    assert "[cli_echo / fallback]" in lines[1]
    for stage in ("verify", "parse", "inbound", "route", "fallback", "render", "total"):
        assert f"{stage} " in lines[1], stage


async def test_chat_interactive_from_a_pipe_with_events(settings_file):
    path = settings_file(plugins={"welcome": {"click_replies": {"MENU_A": "菜单A的回复"}}})
    script = "\n".join(["第一句", "/subscribe", "/click MENU_A", "/location 39.9 116.4",
                        "/place 31.23 121.47 上海市", "/voice 语音的内容", "/user o_someone_else",
                        "第二句", "/nonsense", "/quit", "never sent"]) + "\n"
    code, out, err = await run_py("chat", "--settings", str(path), stdin=script)
    assert code == 0, err
    replies = [line[5:] for line in out.splitlines() if line.startswith("bot> ")]
    assert replies[0] == "回声：第一句"
    assert "欢迎关注" in replies[1]
    assert replies[2] == "菜单A的回复"
    assert replies[3] == '(no reply: the bot acknowledged with "success")'  # LOCATION: nobody answers
    assert replies[4]  # a location message: the configured reply to what nobody handles
    assert replies[5] == "回声：语音的内容"
    assert replies[6] == "回声：第二句"
    assert "[welcome / welcome.click]" in out and "unknown command /nonsense" in out
    assert "never sent" not in out


async def test_chat_json_in_safe_mode(settings_file):
    path = settings_file(wechat={"mode": "safe"})
    code, out, err = await run_py("chat", "加密的消息", "--json", "--settings", str(path))
    assert code == 0, err
    result = json.loads(out)
    assert result["ok"] and result["text"] == "回声：加密的消息"
    assert (result["plugin"], result["intent"]) == ("cli_echo", "fallback")
    assert result["reply"]["MsgType"] == "text" and "total" in result["explain"]["timings_ms"]


async def test_chat_with_a_running_bot_gets_explanations_from_its_endpoint(aiohttp_server, settings_file):
    path = settings_file(simulator={"enabled": True})
    server = await aiohttp_server(create_app(load_settings(path)))
    url = str(server.make_url("/wechat"))
    code, out, err = await run_py("chat", "远程", "--url", url, "--settings", str(path))
    assert code == 0, err
    assert out.splitlines()[0] == "bot> 回声：远程" and "[cli_echo / fallback]" in out


async def test_chat_explanations_need_the_admin_token_when_the_simulator_is_off(aiohttp_server, settings_file):
    path = settings_file(server={"admin_token": "tok"})
    server = await aiohttp_server(create_app(load_settings(path)))
    url = str(server.make_url("/wechat"))
    code, out, _ = await run_py("chat", "远程", "--url", url, "--settings", str(path))
    assert code == 0 and "bot> 回声：远程" in out and "explanation refused" in out
    code, out, _ = await run_py("chat", "远程", "--url", url, "--settings", str(path), "--token", "tok")
    assert code == 0 and "[cli_echo / fallback]" in out


async def test_chat_once_fails_when_the_bot_cannot_be_reached(settings_file):
    path = settings_file()
    code, out, _ = await run_py("chat", "有人吗", "--url", f"http://127.0.0.1:{closed_port()}/wechat",
                                "--settings", str(path))
    assert code == 1 and "no answer" in out


async def test_chat_reports_a_bad_settings_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 'x'\n", encoding="utf-8")
    code, _, err = await run_py("chat", "hi", "--settings", str(bad))
    assert code == 2 and "server.port" in err


# ---- plugins -------------------------------------------------------------------------------------------

async def test_plugins_lists_every_plugin_found(settings_file):
    path = settings_file(enabled=("welcome", "cli_echo", "llm"))
    code, out, err = await run_py("plugins", "--settings", str(path), "--json")
    assert code == 0, err
    rows = {row["name"]: row for row in json.loads(out)["plugins"]}
    assert rows["welcome"]["enabled"] and rows["welcome"]["priority"] == 1
    assert rows["cli_echo"]["priority"] == 2 and rows["cli_echo"]["origin"] == "folder"
    assert rows["cli_echo"]["location"].endswith("cli_echo") and "fallback" in rows["cli_echo"]["hooks"]
    assert "fallback(trylast)" in rows["llm"]["hooks"]
    assert not rows["cli_probe"]["enabled"] and rows["cli_probe"]["priority"] is None
    assert not rows["weather"]["enabled"] and rows["weather"]["location"] == "plugins/weather"

    code, out, _ = await run_py("plugins", "--settings", str(path))
    assert code == 0
    table = {line.split()[0]: line.split() for line in out.splitlines()[1:] if line.strip() and not line.startswith("settings:")}
    assert table["cli_echo"][1:4] == ["yes", "2", "folder"] and table["cli_probe"][1:3] == ["no", "-"]


async def test_plugins_names_an_unknown_enabled_plugin(settings_file):
    path = settings_file(enabled=("welcome", "no_such_plugin"))
    code, out, err = await run_py("plugins", "--settings", str(path))
    assert code == 2 and "plugins.enabled[1]: no plugin of that name" in err
    assert "missing" in out


# ---- check ---------------------------------------------------------------------------------------------

async def test_check_reaches_redis_and_each_service(aiohttp_server, settings_file, redis_url):
    weather = WeatherStandIn()
    weather_server = await aiohttp_server(weather.app())
    async with OpenAIStandIn() as llm:
        forecast = weather_server.make_url("/v1/forecast").with_query(latitude="39.9", longitude="116.4",
                                                                      forecast_days="1")
        urls = [f"{llm.base_url}/models", str(forecast)]
        path = settings_file(enabled=("welcome", "cli_probe"), state={"backend": "redis", "redis_url": redis_url},
                             plugins={"cli_probe": {"urls": urls}})
        code, out, err = await run_py("check", "--settings", str(path))
    assert code == 0, out + err
    assert out.splitlines()[0].startswith("OK    settings:")
    assert any(line.startswith("OK    state: redis") and "PING" in line for line in out.splitlines())
    assert "OK    cli_probe: service 0: GET " in out and "HTTP 200" in out
    assert "OK    cli_probe: service 1: GET " in out
    assert weather.count("/v1/forecast") == 1
    assert "not checked (no skillbot_health): welcome" in out
    assert out.strip().endswith("all checks passed")


async def test_check_reports_what_does_not_work(aiohttp_server, settings_file):
    async def refuse(request):
        return web.json_response({"error": {"code": "invalid_api_key"}}, status=401)

    app = web.Application()
    app.router.add_get("/v1/models", refuse)
    refusing = await aiohttp_server(app)
    dead = f"http://127.0.0.1:{closed_port()}/v1/models"
    path = settings_file(enabled=("welcome", "cli_probe"),
                         state={"backend": "redis", "redis_url": f"redis://127.0.0.1:{closed_port()}/0"},
                         plugins={"cli_probe": {"urls": [str(refusing.make_url("/v1/models")), dead]}})
    code, out, err = await run_py("check", "--settings", str(path), "--timeout", "2")
    assert code == 1, out + err
    lines = out.splitlines()
    assert any(line.startswith("FAIL  state: redis") for line in lines)
    assert any(line.startswith("FAIL  cli_probe: service 0") and "401" in line for line in lines)
    assert any(line.startswith("FAIL  cli_probe: service 1") for line in lines)
    assert lines[-1] == "3 check(s) failed"


async def test_check_names_the_bad_setting(settings_file):
    path = settings_file(plugins={"welcome": {"mesage": "typo"}})
    code, out, _ = await run_py("check", "--settings", str(path))
    assert code == 2 and "FAIL  plugins: plugins.welcome.mesage" in out

    path.write_text("not = [valid", encoding="utf-8")
    code, out, _ = await run_py("check", "--settings", str(path))
    assert code == 2 and out.startswith("FAIL  settings:")


async def test_check_reaches_the_model_provider_through_the_llm_plugin(settings_file):
    from plugins.llm import Plugin

    if not hasattr(Plugin, "skillbot_health"):
        pytest.skip("plugins/llm does not implement skillbot_health yet, so run.py check cannot reach "
                    "the model provider (see docs/plugins.md, skillbot_health)")
    async with OpenAIStandIn() as llm:
        path = settings_file(enabled=("welcome", "llm"), plugins={"llm": {"providers": [llm.provider("standin")]}})
        code, out, err = await run_py("check", "--settings", str(path))
    assert code == 0, out + err
    assert any(line.startswith("OK    llm:") and "standin" in line for line in out.splitlines())


# ---- --settings for every sub-command; bad settings without tracebacks (issue 12, items 17, 18) ----------

def test_settings_host_and_port_are_taken_before_or_after_the_sub_command():
    from core.operations.cli import build_parser

    for argv in (["--settings", "x.toml", "check"], ["check", "--settings", "x.toml"],
                 ["--settings", "x.toml", "chat", "hi"], ["--settings", "x.toml", "plugins", "--json"],
                 ["--settings", "x.toml", "serve"], ["serve", "--settings", "x.toml"], ["--settings", "x.toml"]):
        assert build_parser().parse_args(argv).settings == "x.toml", argv
    assert build_parser().parse_args(["check"]).settings == str(PROJECT_ROOT / "settings.toml")
    for argv in (["--port", "9001", "--host", "127.0.0.2", "serve"], ["serve", "--port", "9001", "--host", "127.0.0.2"],
                 ["--port", "9001", "--host", "127.0.0.2"]):
        args = build_parser().parse_args(argv)
        assert (args.port, args.host, args.workers) == (9001, "127.0.0.2", 1), argv


async def test_settings_given_before_the_sub_command_is_the_file_used(settings_file):
    path = settings_file(enabled=("welcome", "cli_echo"))  # cli_echo exists only with this file
    code, out, err = await run_py("--settings", str(path), "plugins", "--json")
    assert code == 0, err
    assert {row["name"]: row for row in json.loads(out)["plugins"]}["cli_echo"]["enabled"]
    code, out, err = await run_py("--settings", str(path), "chat", "你好")
    assert code == 0 and "回声：你好" in out, out + err
    code, out, err = await run_py("--settings", str(path), "check")
    assert code == 0 and out.startswith(f"OK    settings: {path} is valid"), out + err


@pytest.mark.parametrize("command", [["serve"], ["check"], ["chat", "hi"], ["plugins"]])
async def test_bad_settings_end_every_command_with_one_line_per_problem(settings_file, command):
    path = settings_file(router={"threshold": 7}, server={"max_body_bytes": 0, "host": "127.0.0.1",
                                                          "port": closed_port()})
    code, out, err = await run_py(*command, "--settings", str(path))
    assert code == 2, out + err
    problems = [line for line in (out + err).splitlines() if "router.threshold" in line or "server.max_body_bytes" in line]
    assert len(problems) == 2 and "Traceback" not in out + err, out + err


async def test_a_plugin_that_cannot_start_ends_serve_and_chat_without_a_traceback(settings_file, tmp_path):
    path = settings_file(enabled=("faq",), server={"host": "127.0.0.1", "port": closed_port()},
                         plugins={"faq": {"path": str(tmp_path / "missing.toml")}})
    for command in (["serve"], ["chat", "hi"]):
        code, out, err = await run_py(*command, "--settings", str(path))
        assert code == 1, out + err
        assert "plugin faq failed to start: RuntimeError: FAQ file unusable" in err
        assert "start-up failed" in err and "Traceback" not in out + err, err

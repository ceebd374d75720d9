"""The plugin contract: every hook is documented in docs/plugins.md and exercised by a test; the
tutorial in the docs works as written (in under 30 lines); SKILLBOT_TRACE logs every hook call."""
from __future__ import annotations

import inspect
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core import TextReply, hookimpl
from core.operations.health import plugin_checks
from core.processing import hookspecs
from core.settings import PROJECT_ROOT

DOC = PROJECT_ROOT / "docs" / "plugins.md"
TESTS = PROJECT_ROOT / "tests"
HOOKS = sorted(name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
               if name.startswith("skillbot_"))


def doc_sections() -> dict[str, str]:
    """``### skillbot_x`` heading -> the text up to the next heading."""
    text = DOC.read_text(encoding="utf-8")
    parts = re.split(r"^### ", text, flags=re.M)
    return {part.split("\n", 1)[0].strip(): part.split("\n", 1)[1] for part in parts[1:]}


def test_hooks_are_found():
    assert len(HOOKS) >= 11 and "skillbot_handle" in HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_reference_entry(hook):
    sections = doc_sections()
    assert hook in sections, f"docs/plugins.md has no '### {hook}' section"
    body = sections[hook].split("\n## ", 1)[0]
    assert f"`{hook}(" in body, f"{hook}: the section does not show the signature"
    assert "**every**" in body or "**first result**" in body, f"{hook}: no stop rule"
    assert "```python" in body, f"{hook}: no example"


def test_no_reference_entry_for_a_hook_that_does_not_exist():
    documented = {name for name in doc_sections() if name.startswith("skillbot_")}
    assert documented <= set(HOOKS), documented - set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    me = Path(__file__).name
    users = [p.name for p in TESTS.glob("test_*.py") if p.name != me and hook in p.read_text(encoding="utf-8")]
    assert users, f"no test names {hook}: add one that implements or exercises it"


# ---- the tutorial, as written --------------------------------------------------------------------------

def doc_files() -> dict[str, str]:
    """Code blocks marked ``<!-- file: path -->`` in docs/plugins.md."""
    text = DOC.read_text(encoding="utf-8")
    return {m[1]: m[2] for m in re.finditer(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", text, flags=re.S)}


@pytest.fixture
def tutorial(tmp_path) -> Path:
    files = doc_files()
    assert {"fortune/__init__.py", "fortune/templates/fortune.j2", "tests/test_plugin_fortune.py"} <= set(files)
    for name, code in files.items():
        target = tmp_path / ("plugins/" + name if not name.startswith("tests/") else name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(code, encoding="utf-8")
    return tmp_path


def test_tutorial_skill_is_under_30_lines(tutorial):
    lines = (tutorial / "plugins" / "fortune" / "__init__.py").read_text().strip().splitlines()
    assert len(lines) < 30


async def test_tutorial_skill_answers(tutorial, make_bot):
    plugins = {"enabled": ["filter", "welcome", "fortune", "llm"], "paths": [str(tutorial / "plugins")]}
    async with make_bot({"plugins": plugins}) as bot:
        reply = await bot.send("帮我抽个签")
        assert (reply.plugin, reply.intent) == ("fortune", "fortune.draw")
        assert re.fullmatch(r"🎋 你抽到了：(上上签|上签|中签)。心诚则灵，祝你好运！", reply.content)
    async with make_bot({"plugins": {**plugins, "fortune": {"fortunes": ["大吉"]}}}) as bot:
        assert "大吉" in (await bot.send("求签")).content


def test_tutorial_test_passes(tutorial):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(PROJECT_ROOT),
         "-c", str(PROJECT_ROOT / "pyproject.toml"), str(tutorial / "tests" / "test_plugin_fortune.py")],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


# ---- tracing -------------------------------------------------------------------------------------------

class EveryHook:
    """Implements every hook, so one bot's life and one message call them all."""

    @hookimpl
    def skillbot_config_schema(self):
        return None

    @hookimpl
    async def skillbot_startup(self, bot, config):
        return None

    @hookimpl
    async def skillbot_shutdown(self, bot):
        return None

    @hookimpl
    def skillbot_jieba_words(self):
        return ["追踪测试词"]

    @hookimpl
    def skillbot_intents(self):
        from core import Intent
        return [Intent("trace.me", keywords=["追踪测试词"])]

    @hookimpl
    def skillbot_inbound_filter(self, ctx):
        return None

    @hookimpl
    def skillbot_handle(self, ctx, candidate):
        return None  # declines, so the fallback runs too

    @hookimpl
    async def skillbot_fallback(self, ctx):
        return TextReply("追踪完毕")

    @hookimpl
    def skillbot_outbound_filter(self, ctx, reply):
        return None

    @hookimpl
    def skillbot_message_done(self, ctx, reply):
        return None

    @hookimpl
    def skillbot_health(self, bot, probe):
        raise RuntimeError("traced even when it fails")


@pytest.mark.parametrize("switch", ["env", "setting"])
async def test_trace_logs_every_hook_call_and_result(make_bot, monkeypatch, caplog, switch):
    if switch == "env":
        monkeypatch.setenv("SKILLBOT_TRACE", "1")
        overrides = {}
    else:
        monkeypatch.delenv("SKILLBOT_TRACE", raising=False)
        overrides = {"logging": {"trace_hooks": True}}
    caplog.set_level(logging.INFO, logger="skillbot.plugins")
    overrides["plugins"] = {"enabled": ["welcome"]}
    async with make_bot(overrides, plugins={"tracer": EveryHook()}) as bot:
        reply = await bot.send("追踪测试词")
        assert reply.content == "追踪完毕"
        await plugin_checks(bot.bot, probe=False)
    traced = [r.getMessage() for r in caplog.records if r.getMessage().startswith("trace ")]
    for hook in HOOKS:
        assert any(line.startswith(f"trace tracer.{hook} -> ") for line in traced), f"{hook} not traced"
    assert "trace tracer.skillbot_fallback -> TextReply(" in "\n".join(traced)
    assert "trace tracer.skillbot_health -> raised RuntimeError" in traced
    assert any(line.startswith("trace welcome.skillbot_intents -> [Intent(") for line in traced)


async def test_no_trace_by_default(make_bot, monkeypatch, caplog):
    monkeypatch.delenv("SKILLBOT_TRACE", raising=False)
    caplog.set_level(logging.INFO, logger="skillbot.plugins")
    async with make_bot({"plugins": {"enabled": ["welcome"]}}, plugins={"tracer": EveryHook()}) as bot:
        await bot.send("追踪测试词")
    assert not [r for r in caplog.records if r.getMessage().startswith("trace ")]

"""The plugin contract: every hook (the core's and those built-in plugins add) is documented in
docs/plugins.md with its argument types and stop rule exactly as its spec says, and exercised by a
test; the tutorial in the docs works as written (in under 30 lines); SKILLBOT_TRACE logs every hook
call; built-in plugins import only from ``core``, and the core reads no plugin's data."""
from __future__ import annotations

import ast
import importlib
import inspect
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core import Explanation, TextReply, hookimpl
from core.operations.health import plugin_checks
from core.processing import hookspecs
from core.settings import PROJECT_ROOT

DOC = PROJECT_ROOT / "docs" / "plugins.md"
TESTS = PROJECT_ROOT / "tests"
#: Modules of hooks that built-in plugins add (``skillbot_add_hookspecs``).
PLUGIN_SPEC_MODULES = [importlib.import_module(f"plugins.{path.parent.name}.hookspecs")
                       for path in sorted((PROJECT_ROOT / "plugins").glob("*/hookspecs.py"))]


def spec_functions(module) -> dict:
    return {name: fn for name, fn in inspect.getmembers(module, inspect.isfunction)
            if name.startswith("skillbot_") and hasattr(fn, "skillbot_spec")}


SPECS = {**spec_functions(hookspecs), **{name: fn for module in PLUGIN_SPEC_MODULES
                                         for name, fn in spec_functions(module).items()}}
CORE_HOOKS = sorted(spec_functions(hookspecs))
HOOKS = sorted(SPECS)


def doc_sections() -> dict[str, str]:
    """``### skillbot_x`` heading -> the text up to the next heading."""
    text = DOC.read_text(encoding="utf-8")
    parts = re.split(r"^### ", text, flags=re.M)
    return {part.split("\n", 1)[0].strip(): part.split("\n", 1)[1] for part in parts[1:]}


def test_hooks_are_found():
    assert len(CORE_HOOKS) >= 14 and "skillbot_handle" in CORE_HOOKS
    assert "skillbot_weather_providers" in HOOKS  # added by the weather plugin


# ---- the reference says what the specs say --------------------------------------------------------------

SIGNATURE = re.compile(r"^`(skillbot_\w+)\((.*?)\) -> (.+?)`(.*)$", re.M)


def split_top(text: str) -> list[str]:
    """``a: x, b: dict[str, int]`` -> ["a: x", "b: dict[str, int]"] (commas inside brackets stay)."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "[(" and 1 or 0
        depth -= char in "])" and 1 or 0
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return parts + ([current.strip()] if current.strip() else [])


def documented_signature(hook: str) -> tuple[list[tuple[str, str]], str, str]:
    """(parameters as (name, type), return type, the rest of the line) from the hook's section."""
    body = doc_sections()[hook]
    match = SIGNATURE.search(body)
    assert match and match[1] == hook, f"{hook}: no signature line `{hook}(...) -> ...`"
    params = []
    for part in split_top(match[2]):
        name, _, annotation = part.partition(":")
        params.append((name.strip(), annotation.strip()))
    return params, match[3].strip(), match[4]


@pytest.mark.parametrize("hook", HOOKS)
def test_reference_types_match_the_spec(hook):
    spec = inspect.signature(SPECS[hook])
    params, returns, _ = documented_signature(hook)
    in_spec = [(name, p.annotation) for name, p in spec.parameters.items() if name != "self"]
    assert params == in_spec, f"{hook}: docs say {params}, the spec says {in_spec}"
    assert all(annotation for _, annotation in params), f"{hook}: an argument has no type in the spec"
    assert returns == spec.return_annotation, f"{hook}: docs say -> {returns}, the spec -> {spec.return_annotation}"


@pytest.mark.parametrize("hook", HOOKS)
def test_reference_stop_rule_matches_the_spec(hook):
    *_, rest = documented_signature(hook)
    rules = [rule for rule in ("first result", "every") if f"**{rule}**" in rest]
    assert len(rules) == 1, f"{hook}: the signature line must name one stop rule, found {rules}"
    opts = SPECS[hook].skillbot_spec  # pluggy's HookspecOpts
    assert (rules[0] == "first result") == bool(opts.get("firstresult")), \
        f"{hook}: docs say {rules[0]}, the spec says firstresult={opts.get('firstresult')}"
    doc = inspect.getdoc(SPECS[hook]) or ""
    said = "Stops at the first non-None result" in doc
    assert said == bool(opts.get("firstresult")), f"{hook}: the spec's docstring and its firstresult disagree"


def test_no_hook_argument_is_untyped_any_but_a_plugins_own_config():
    loose = [(hook, name) for hook, fn in SPECS.items()
             for name, p in inspect.signature(fn).parameters.items()
             if name != "self" and p.annotation in ("Any", inspect.Parameter.empty) and name != "config"]
    assert not loose, loose


# ---- plugins use the public API; the core reads no plugin's data ----------------------------------------

def plugin_sources() -> list[Path]:
    return sorted(p for p in (PROJECT_ROOT / "plugins").rglob("*.py") if "data" not in p.parts)


def test_built_in_plugins_import_only_from_core():
    reaching = []
    for path in plugin_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            reaching += [f"{path.relative_to(PROJECT_ROOT)}: {name}" for name in names if name.startswith("core.")]
    assert not reaching, "import these from core instead: " + ", ".join(reaching)


def test_built_in_plugins_do_not_probe_the_bot():
    """``bot`` is a ``BotServices``: what it offers is always there."""
    probing = []
    for path in plugin_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("getattr", "hasattr") and node.args):
                target = ast.unparse(node.args[0])
                if re.search(r"\b(bot|ctx|candidate)$", target) or target.endswith(".bot"):
                    probing.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert not probing, probing


PLUGIN_DATA = ("filter_hits", 'extra["llm"]', "extra.get(\"llm\")", "model_tokens", "Hit(")


def test_the_core_reads_no_plugins_data():
    core_files = [p for p in (PROJECT_ROOT / "core").rglob("*") if p.suffix in (".py", ".js", ".html")]
    named = [f"{p.relative_to(PROJECT_ROOT)}: {word}" for p in core_files
             for word in PLUGIN_DATA if word in p.read_text(encoding="utf-8")]
    assert not named, named


def test_the_public_api_is_enough_for_the_tutorial_and_for_every_built_in_plugin():
    import core

    for name in ("hookimpl", "hookspec", "BotServices", "Explanation", "Check", "probe_http", "Counter",
                 "Histogram", "Cache", "Turn", "from_table", "MessageContext", "Candidate"):
        assert name in core.__all__ and hasattr(core, name), name


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

    @hookimpl
    def skillbot_add_hookspecs(self, pm):
        return None

    @hookimpl
    def skillbot_explain(self, ctx):
        return Explanation("tracer", "traced")

    @hookimpl
    def skillbot_metrics(self):
        return []

    @hookimpl
    async def skillbot_ask_model(self, messages, timeout):
        return "追踪模型"

    @hookimpl
    def skillbot_stream_model(self, messages, timeout):
        async def pieces():
            yield "追踪流式模型。"
        return pieces()

    @hookimpl(optionalhook=True)
    def skillbot_weather_providers(self):
        return {}


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
        assert await bot.bot.hooks.ask_model([{"role": "user", "content": "追踪"}], 1.0) == "追踪模型"
        streamed = await bot.bot.hooks.stream_model([{"role": "user", "content": "追踪"}], 1.0)
        assert [piece async for piece in streamed] == ["追踪流式模型。"]
        await plugin_checks(bot.bot, probe=False)
    traced = [r.getMessage() for r in caplog.records if r.getMessage().startswith("trace ")]
    for hook in CORE_HOOKS:
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

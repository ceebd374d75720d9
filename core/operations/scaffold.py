"""``run.py new-plugin NAME``: a new skill folder that works, with a test that passes as generated.

Creates ``<dir>/NAME/__init__.py`` (the hook implementations), ``config.py`` (the settings
schema), ``templates/reply.j2`` (every word the skill says) and ``<tests-dir>/test_plugin_NAME.py``
(run with the project's ``pytest``), and returns the settings snippet that enables it.
"""
from __future__ import annotations

import keyword
import os
import re
from pathlib import Path

from ..settings import PROJECT_ROOT

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{1,39}$")


class ScaffoldError(ValueError):
    pass


INIT = '''"""{name}: a Skillbot skill (made by ``run.py new-plugin``; make it yours).

It declares one intent, ``{name}.answer``, triggered by the words in ``keywords`` (settings:
``[plugins.{name}]``), and answers with ``templates/reply.j2``. See docs/plugins.md for every hook.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from core import BotServices, Candidate, Intent, MessageContext, Reply, TextReply, hookimpl

from .config import Config

HERE = Path(__file__).parent
INTENT = "{name}.answer"


class Plugin:
    """One instance per bot: keep state on ``self``."""

    def __init__(self) -> None:
        self.config = Config()
        self.template: Any = None

    @hookimpl
    def skillbot_config_schema(self) -> type:
        return Config

    @hookimpl
    def skillbot_startup(self, bot: BotServices, config: Config) -> None:
        self.config = config
        # The operator's templates/{name}/reply.j2 wins over the plugin's own.
        self.template = bot.templates(HERE).get_template("reply.j2")

    @hookimpl
    def skillbot_intents(self) -> list[Intent]:
        return [Intent(INTENT, keywords=list(self.config.keywords), priority=5)]

    @hookimpl
    def skillbot_handle(self, ctx: MessageContext, candidate: Candidate) -> Reply | None:
        if candidate.name != INTENT:
            return None  # not ours: let the next candidate answer
        text = self.template.render(greeting=self.config.greeting, text=ctx.message.text)
        return TextReply(text.strip())
'''

CONFIG = '''"""Settings of the {name} skill: the ``[plugins.{name}]`` table of settings.toml."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Config:
    #: Words that send a message to this skill.
    keywords: list[str] = field(default_factory=lambda: ["{name}"])
    #: The first words of every answer (used by templates/reply.j2).
    greeting: str = "你好"

    def validate(self) -> None:
        if not self.keywords or not all(isinstance(k, str) and k.strip() for k in self.keywords):
            raise ValueError("keywords: at least one non-empty word")
'''

TEMPLATE = '''{{{{ greeting }}}}！这里是「{name}」技能。你刚才说：{{{{ text }}}}
'''

TEST = '''"""Tests of the {name} skill (made by ``run.py new-plugin``; grow them with the skill).

Run: .venv/bin/python -m pytest {test_path} -q
"""
from __future__ import annotations

from pathlib import Path

import pytest

from core.testing import make_bot  # noqa: F401  (fixture: a started bot built from settings)

pytestmark = pytest.mark.asyncio

#: The folder that holds the plugin folder, so the test finds it wherever both live.
PLUGINS_DIR = (Path(__file__).resolve().parent / {rel!r}).resolve()
PLUGINS = {{"enabled": ["{name}"], "paths": [str(PLUGINS_DIR)]}}


async def test_answers_its_keyword(make_bot):
    async with make_bot({{"plugins": PLUGINS}}) as bot:
        reply = await bot.send("{name}")
        assert reply.plugin == "{name}" and reply.intent == "{name}.answer"
        assert reply.content.startswith("你好") and "{name}" in reply.content


async def test_settings_change_keywords_and_greeting(make_bot):
    table = {{"keywords": ["芝麻开门"], "greeting": "欢迎"}}
    async with make_bot({{"plugins": {{**PLUGINS, "{name}": table}}}}) as bot:
        reply = await bot.send("芝麻开门")
        assert reply.plugin == "{name}" and reply.content.startswith("欢迎")


async def test_other_messages_are_left_to_other_skills(make_bot):
    async with make_bot({{"plugins": PLUGINS}}) as bot:
        reply = await bot.send("今天星期几")
        assert reply.plugin != "{name}"
'''

SNIPPET = '''[plugins]
enabled = ["filter", "welcome", "faq", "weather", "{name}", "llm"]  # add "{name}" to your list{paths}

[plugins.{name}]
keywords = ["{name}"]       # words that send a message to this skill (default ["{name}"])
greeting = "你好"            # first words of every answer (default "你好")'''


def check_name(name: str) -> None:
    if not NAME_RE.match(name) or keyword.iskeyword(name):
        raise ScaffoldError(f"{name!r} is not a usable plugin name: use 2-40 lower-case letters, "
                            "digits and '_', starting with a letter")


def create_plugin(name: str, plugins_dir: Path, tests_dir: Path) -> tuple[list[Path], str]:
    """Write the plugin and its test; returns (files created, settings snippet)."""
    check_name(name)
    plugins_dir = plugins_dir.resolve()
    tests_dir = tests_dir.resolve()
    folder = plugins_dir / name
    test_file = tests_dir / f"test_plugin_{name}.py"
    if folder.exists():
        raise ScaffoldError(f"{folder} already exists")
    if test_file.exists():
        raise ScaffoldError(f"{test_file} already exists")
    rel = os.path.relpath(plugins_dir, tests_dir)
    try:
        shown_test = test_file.relative_to(PROJECT_ROOT)
    except ValueError:
        shown_test = test_file
    files = {
        folder / "__init__.py": INIT.format(name=name),
        folder / "config.py": CONFIG.format(name=name),
        folder / "templates" / "reply.j2": TEMPLATE.format(name=name),
        test_file: TEST.format(name=name, rel=rel, test_path=shown_test),
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    paths = ""
    if plugins_dir != (PROJECT_ROOT / "plugins").resolve():
        paths = f'\npaths = ["{plugins_dir}"]  # the folder holding {name}/ (default [])'
    return list(files), SNIPPET.format(name=name, paths=paths)

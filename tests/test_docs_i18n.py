"""The Chinese documentation (docs/zh/) stays in step with the English: every page has its
counterpart, and every settings key and command named in one language is named in the other."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from core.operations.cli import build_parser
from core.settings import PROJECT_ROOT

#: English page -> its Chinese counterpart, and the English heading where the translation stops
#: (None: the whole page is translated).
PAIRS = [
    ("README.md", "docs/zh/README.md", None),
    ("docs/quickstart.md", "docs/zh/quickstart.md", None),
    ("docs/operators.md", "docs/zh/operators.md", None),
    ("docs/deploy.md", "docs/zh/deploy.md", None),
    ("docs/faq.md", "docs/zh/faq.md", None),
    ("docs/weather.md", "docs/zh/weather.md", None),
    ("docs/llm.md", "docs/zh/llm.md", None),
    ("docs/architecture.md", "docs/zh/architecture.md", None),
    ("docs/knowledge.md", "docs/zh/knowledge.md", None),
    ("docs/delivery.md", "docs/zh/delivery.md", None),
    ("docs/filter.md", "docs/zh/filter.md", None),
    ("docs/routing.md", "docs/zh/routing.md", None),
    ("docs/plugins.md", "docs/zh/plugins.md", "## Hook reference"),  # the tutorial and testing
]
FILE_SUFFIXES = {"md", "py", "toml", "yaml", "yml", "json", "j2", "txt", "tsv", "csv", "sh", "service", "conf"}


def sections() -> list[str]:
    with open(PROJECT_ROOT / "settings.toml", "rb") as fh:
        return sorted(tomllib.load(fh))


def subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sorted(action.choices)


def page(path: str, stop: str | None = None) -> str:
    text = (PROJECT_ROOT / path).read_text(encoding="utf-8")
    if stop is not None:
        assert stop in text, f"{path} has no heading {stop!r}"
        text = text[:text.index(stop)]
    return text


def _flatten(prefix: str, table: dict) -> set[str]:
    keys = set()
    for key, value in table.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        keys.add(dotted)
        if isinstance(value, dict):
            keys |= _flatten(dotted, value)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                keys |= _flatten(dotted, item)
    return keys


def settings_keys(text: str) -> set[str]:
    """Dotted settings keys named in a page: in prose and code (``wechat.token``), as a table
    header with a key (``[logging] json = true``), and in TOML code blocks."""
    names = "|".join(sections())
    keys = set()
    for match in re.finditer(rf"(?<![\w./$-])((?:{names})(?:\.[A-Za-z_][\w]*)+)(?![\w(/-])", text):
        if match[1].rsplit(".", 1)[1] not in FILE_SUFFIXES:
            keys.add(match[1])
    for match in re.finditer(rf"\[((?:{names})(?:\.[\w]+)*)\]\s+([a-z_]+)\s*=", text):
        keys.add(f"{match[1]}.{match[2]}")
    for block in re.findall(r"```toml\n(.*?)```", text, flags=re.S):
        try:
            data = tomllib.loads(block)
        except tomllib.TOMLDecodeError:
            data = {}  # a fragment with placeholders: its keys are still caught as prose above
        keys |= {k for k in _flatten("", data) if k.split(".")[0] in sections() and "." in k}
        table = ""
        for line in block.splitlines():  # commented-out keys show defaults: "# timeout = 20.0"
            header = re.match(r"#?\s*\[\[?([\w.]+)\]\]?\s*(#.*)?$", line.strip())
            if header:
                table = header[1]
            assignment = re.match(r"#\s*([a-z_][a-z0-9_]*)\s*=", line.strip())
            if assignment and table.split(".")[0] in sections():
                keys.add(f"{table}.{assignment[1]}")
    return keys


def known_leaf_names(*texts: str) -> set[str]:
    """The last part of every settings key: in settings.toml and named by the pages."""
    with open(PROJECT_ROOT / "settings.toml", "rb") as fh:
        keys = _flatten("", tomllib.load(fh))
    for text in texts:
        keys |= settings_keys(text)
    return {k.rsplit(".", 1)[-1] for k in keys if "." in k}


def bare_keys(text: str, leaves: set[str]) -> set[str]:
    """Settings keys named without their table, as `max_tokens` in a plugin's own page."""
    return {name for name in re.findall(r"`([a-z_][a-z0-9_]*)`", text) if name in leaves}


def commands(text: str) -> set[str]:
    """``run.py`` and ``./scripts/*.sh`` commands, with the run.py subcommand when one follows."""
    subs = "|".join(re.escape(s) for s in subcommands())
    found = set()
    for match in re.finditer(rf"(?<![\w/.])(run\.py|(?:\./)?scripts/[\w.-]+\.sh)(?:[ \t]+({subs})\b)?", text):
        command = match[1] if match[1] == "run.py" else "./" + match[1].removeprefix("./")
        found.add(f"{command} {match[2]}" if match[2] else command)
    return found


@pytest.mark.parametrize("english,chinese,stop", PAIRS, ids=[p[1] for p in PAIRS])
def test_both_languages_name_the_same_settings_keys_and_commands(english, chinese, stop):
    assert (PROJECT_ROOT / chinese).is_file(), f"{chinese} is missing"
    en, zh = page(english, stop), page(chinese)
    problems = []
    leaves = known_leaf_names(en, zh)
    for what, extract in (("settings key", settings_keys), ("command", commands),
                          ("settings key", lambda text: bare_keys(text, leaves))):
        in_en, in_zh = extract(en), extract(zh)
        problems += [f"{what} {k!r} is in {english} but not in {chinese}" for k in sorted(in_en - in_zh)]
        problems += [f"{what} {k!r} is in {chinese} but not in {english}" for k in sorted(in_zh - in_en)]
    assert not problems, "\n".join(problems)


def test_the_extractors_see_what_the_pages_name():
    """The comparison above can fail: it finds keys and commands in every form the pages use."""
    text = """Set `wechat.token` and [logging] json = true; see plugins.md and `ctx.extra`.
```toml
[state]
backend = "redis"
[[plugins.llm.providers]]
name = "x"
```
Run `./scripts/run.sh chat "你好"`, `scripts/test.sh -k x`, `python run.py check` or run.py --workers 2."""
    assert settings_keys(text) == {"wechat.token", "logging.json", "state.backend", "plugins.llm",
                                   "plugins.llm.providers", "plugins.llm.providers.name"}
    assert commands(text) == {"./scripts/run.sh chat", "./scripts/test.sh", "run.py check", "run.py"}
    assert settings_keys("`wechat.token`") != settings_keys("`wechat.app_id`")
    commented = "```toml\n[plugins.llm]\n# total_timeout = 45.0\n# [[plugins.llm.providers]]\n# model = \"m\"\n```"
    assert settings_keys(commented) == {"plugins.llm", "plugins.llm.providers", "plugins.llm.total_timeout",
                                       "plugins.llm.providers.model"}
    assert bare_keys("`max_tokens` and `tokens`", {"max_tokens"}) == {"max_tokens"}


def _slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_in_the_chinese_pages_lead_somewhere():
    problems = []
    for path in sorted((PROJECT_ROOT / "docs" / "zh").glob("*.md")):
        text = re.sub(r"```.*?```|`[^`\n]*`", "", path.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                problems.append(f"{path.name}: {target} does not exist")
            elif anchor and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", linked.read_text(encoding="utf-8"), flags=re.M)
                if anchor not in {_slug(h) for h in headings}:
                    problems.append(f"{path.name}: {target}: no such heading")
    assert not problems, "\n".join(problems)


def test_readme_links_the_chinese_docs_and_back():
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/zh/README.md" in readme and "docs/zh/quickstart.md" in readme and "docs/quickstart.md" in readme
    zh = (PROJECT_ROOT / "docs" / "zh" / "README.md").read_text(encoding="utf-8")
    assert "(../../README.md)" in zh
    for english, chinese, _ in PAIRS[1:]:
        assert f"({Path(english).relative_to('docs').as_posix()})" in zh or Path(chinese).name in zh


@pytest.mark.parametrize("path,needles", [
    ("docs/quickstart.md", ["sandbox?t=sandbox/login", "IP whitelist", "IP白名单", "EncodingAESKey",
                            "消息加解密方式", "port 80", "443", "first message", "wechat.app_secret_env"]),
    ("docs/zh/quickstart.md", ["sandbox?t=sandbox/login", "测试号", "IP白名单", "EncodingAESKey",
                               "消息加解密方式", "明文模式", "安全模式", "80", "443", "第一条消息"]),
])
def test_the_quick_start_covers_zero_to_a_real_account(path, needles):
    text = (PROJECT_ROOT / path).read_text(encoding="utf-8")
    assert [n for n in needles if n not in text] == []


def test_the_tutorial_code_is_the_english_code():
    """The translated tutorial keeps the code as it is, so it still runs (the English blocks are
    run by tests/test_plugin_contract.py)."""
    def blocks(path: str, lang: str) -> list[str]:
        return re.findall(rf"```{lang}\n(.*?)```", page(path), flags=re.S)

    for lang in ("python", "jinja"):
        english = blocks("docs/plugins.md", lang)
        for block in blocks("docs/zh/plugins.md", lang):
            assert block in english, f"a {lang} block of docs/zh/plugins.md differs from the English:\n{block}"
    assert len(blocks("docs/zh/plugins.md", "python")) >= 2

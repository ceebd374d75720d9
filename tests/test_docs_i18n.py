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
    ("docs/benchmarks.md", "docs/zh/benchmarks.md", None),  # prose condensed: see the figures test
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


def broken_links(paths: list[Path]) -> list[str]:
    """Relative links (to a file, or to a heading of a Markdown page) that lead nowhere."""
    problems = []
    for path in paths:
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
    return problems


def test_links_in_the_english_and_chinese_pages_lead_somewhere():
    docs = PROJECT_ROOT / "docs"
    paths = [PROJECT_ROOT / "README.md", *sorted(docs.glob("*.md")), *sorted((docs / "zh").glob("*.md"))]
    assert len(paths) > 20
    problems = broken_links(paths)
    assert not problems, "\n".join(problems)


def test_the_link_check_finds_a_missing_page_and_a_missing_heading(tmp_path):
    (tmp_path / "zh").mkdir()
    (tmp_path / "a.md").write_text("# 标题\n\n## Streamed answers\n", encoding="utf-8")
    page_ = tmp_path / "zh" / "b.md"
    page_.write_text("[ok](../a.md#streamed-answers) [ok](../a.md#标题) `[code](gone.md)` [ok](#本页)\n# 本页\n"
                     "[x](gone.md) [y](../a.md#no-such) [z](https://example.com/gone.md)\n", encoding="utf-8")
    assert broken_links([page_]) == ["b.md: gone.md does not exist", "b.md: ../a.md#no-such: no such heading"]


def test_every_pair_links_both_ways():
    """A reader can go back and forth: the Chinese page links its English original near the top,
    and the English page links its Chinese twin near the top."""
    problems = []
    for english, chinese, _ in PAIRS[1:]:
        name = Path(english).name
        head_zh = "\n".join(page(chinese).splitlines()[:6])
        head_en = "\n".join(page(english).splitlines()[:8])
        if f"](../{name})" not in head_zh:
            problems.append(f"{chinese} does not link ../{name} at its top")
        if f"](zh/{name})" not in head_en:
            problems.append(f"{english} does not link zh/{name} at its top")
    assert not problems, "\n".join(problems)


def test_the_chinese_index_lists_every_chinese_page():
    index = (PROJECT_ROOT / "docs" / "zh" / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"\]\(([\w-]+\.md)(?:#[^)]*)?\)", index))
    pages = {p.name for p in (PROJECT_ROOT / "docs" / "zh").glob("*.md")} - {"README.md"}
    assert pages - listed == set(), f"docs/zh/README.md does not link {sorted(pages - listed)}"
    assert {Path(chinese).name for _, chinese, _ in PAIRS[1:]} == pages


def figures(text: str) -> set[str]:
    """Every number as written: 2,427, 0.29, 26,187.7, 1000/1000 (as 1000 and 1000), 4b29c33's digits."""
    return set(re.findall(r"\d+(?:[.,]\d+)*", text))


def bench_commands(text: str) -> set[str]:
    """Code spans that run something: the bench scripts, the venv's python, the scripts."""
    return {c for c in re.findall(r"`([^`\n]+)`", text) if re.search(r"bench/|\.venv/|scripts/", c)}


def test_the_chinese_benchmarks_keep_every_figure_and_command():
    """docs/zh/benchmarks.md condenses the prose but keeps every figure and command of the English."""
    en, zh = page("docs/benchmarks.md"), page("docs/zh/benchmarks.md")
    assert len(figures(en)) > 500 and len(bench_commands(en)) > 20
    assert sorted(figures(en) - figures(zh)) == []
    assert sorted(bench_commands(en) - bench_commands(zh)) == []
    assert "以英文版为准" in zh  # says the English page is the reference for figures
    assert figures("8.1% (2,427 vs 29,851 req/s), 4b29c33") == {"8.1", "2,427", "29,851", "4", "29", "33"}
    assert bench_commands("`.venv/bin/python bench/bench_http.py` `ctx.extra`") == {".venv/bin/python bench/bench_http.py"}


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

"""Turn a model's Markdown answer into plain text that reads well in a WeChat chat bubble.

WeChat shows text messages verbatim: ``**bold**`` arrives as asterisks and a table as a row of
pipes. ``markdown_to_text`` keeps the words and the structure a reader needs (line breaks, list
bullets, code as indented lines, link targets) and drops the markup.
"""
from __future__ import annotations

import re

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]{0,3})(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*)$")
_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}(?:[ \t]+(?P<text>.*?))?[ \t]*(?:[ \t]#+[ \t]*)?$")
_SETEXT_UNDERLINE = re.compile(r"^[ \t]{0,3}(?:=+|-+)[ \t]*$")
_RULE = re.compile(r"^[ \t]{0,3}(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,})$")
_QUOTE = re.compile(r"^[ \t]{0,3}>[ \t]?")
_BULLET = re.compile(r"^(?P<indent>[ \t]*)[-*+][ \t]+(?:\[(?P<check>[ xX])\][ \t]+)?(?P<text>.*)$")
_ORDERED = re.compile(r"^(?P<indent>[ \t]*)(?P<num>\d{1,9})[.)][ \t]+(?P<text>.*)$")
_TABLE_SEPARATOR = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)+\|?[ \t]*$")
_LINK_DEFINITION = re.compile(r"^[ \t]{0,3}\[[^\]]+\]:[ \t]+\S+.*$")

_CODE_SPAN = re.compile(r"(`+)(?P<code>.+?)\1")
_ESCAPE = re.compile(r"\\(?P<ch>[!-/:-@\[-`{-~])")
_IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<url>[^)\s]*)(?:[ \t]+\"[^\"]*\")?\)")
_LINK = re.compile(r"\[(?P<text>[^\]]+)\]\((?P<url>[^)\s]*)(?:[ \t]+\"[^\"]*\")?\)")
_AUTOLINK = re.compile(r"<(?P<url>(?:https?|mailto):[^>\s]+)>")
_BOLD_STARS = re.compile(r"\*\*(?=\S)(?P<t>.+?)(?<=\S)\*\*")
_BOLD_UNDERSCORES = re.compile(r"(?<![A-Za-z0-9])__(?=\S)(?P<t>.+?)(?<=\S)__(?![A-Za-z0-9])")
_ITALIC_STAR = re.compile(r"(?<![*\d])\*(?![\s*])(?P<t>.+?)(?<![\s*])\*(?![*\d])")
_ITALIC_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9_])_(?![\s_])(?P<t>.+?)(?<![\s_])_(?![A-Za-z0-9_])")
_STRIKE = re.compile(r"~~(?=\S)(?P<t>.+?)(?<=\S)~~")
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_SIMPLE_TAGS = re.compile(r"</?(?:b|i|u|em|strong|code|sup|sub|span|mark|kbd)>", re.IGNORECASE)
_THINK = re.compile(r"<think>.*?</think>\s*", re.DOTALL | re.IGNORECASE)
_BLANK_RUNS = re.compile(r"\n{3,}")

#: Indentation put before each line of a fenced code block.
CODE_INDENT = "  "
#: Bullet used for unordered list items.
BULLET = "• "
#: Markers for task-list items ``- [ ]`` and ``- [x]``.
TASK_OPEN, TASK_DONE = "☐ ", "☑ "


def strip_reasoning(text: str) -> str:
    """Drop ``<think>…</think>`` blocks some reasoning models put before the answer.

    An unclosed ``<think>`` at the start (answer cut while still reasoning) drops everything.
    """
    text = _THINK.sub("", text)
    stripped = text.lstrip()
    if stripped[:7].lower() == "<think>":
        return ""
    return text


def _is_web_url(url: str) -> bool:
    return url.lower().startswith(("http://", "https://", "mailto:", "www."))


def _link(text: str, url: str) -> str:
    text = text.strip()
    if not _is_web_url(url):
        return text
    if not text or text == url or text.rstrip("/") == url.rstrip("/"):
        return url
    return f"{text}（{url}）"


def inline_to_text(line: str) -> str:
    """Remove inline Markdown (code spans, emphasis, links, images, escapes) from one line."""
    protected: list[str] = []

    def protect(value: str) -> str:
        protected.append(value)
        return f"\x00{len(protected) - 1}\x00"

    line = _CODE_SPAN.sub(lambda m: protect(m.group("code").strip() or m.group("code")), line)
    line = _ESCAPE.sub(lambda m: protect(m.group("ch")), line)
    line = _AUTOLINK.sub(lambda m: protect(m.group("url")), line)
    line = _IMAGE.sub(lambda m: protect(_link(m.group("alt"), m.group("url"))), line)
    line = _LINK.sub(lambda m: protect(_link(m.group("text"), m.group("url"))), line)
    line = _BR.sub("\n", line)
    line = _SIMPLE_TAGS.sub("", line)
    for pattern in (_BOLD_STARS, _BOLD_UNDERSCORES, _STRIKE, _ITALIC_STAR, _ITALIC_UNDERSCORE):
        line = pattern.sub(lambda m: m.group("t"), line)
    # Restore protected pieces; a link text may itself contain a protected code span.
    while "\x00" in line:
        restored = re.sub(r"\x00(\d+)\x00", lambda m: protected[int(m.group(1))], line)
        if restored == line:
            break
        line = restored
    return line


def _split_cells(row: str) -> list[str]:
    row = row.strip()
    if row.startswith("|"):
        row = row[1:]
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    cells = re.split(r"(?<!\\)\|", row)
    return [inline_to_text(cell.strip().replace("\\|", "|")) for cell in cells]


def _list_indent(indent: str) -> str:
    width = len(indent.replace("\t", "    "))
    return "  " * min(width // 2, 4)


def markdown_to_text(text: str) -> str:
    """Convert Markdown to WeChat-friendly plain text.

    Headings become plain lines, emphasis/strike/code markers are removed, fenced code blocks are
    kept as indented lines, bullets become ``• `` (numbered items keep their number as ``1. ``),
    links become ``text（url）``, images become their link, tables become one line per row with
    cells separated by `` | ``, rules and link definitions are dropped, and runs of blank lines
    collapse to one.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[str] = []
    i = 0
    n = len(lines)
    while i < n:
        line = lines[i]
        fence = _FENCE_OPEN.match(line)
        if fence:
            marker = fence.group("fence")
            indent = len(fence.group("indent"))
            i += 1
            while i < n:
                stripped = lines[i].strip()
                if stripped.startswith(marker[0] * len(marker)) and set(stripped) == {marker[0]}:
                    i += 1
                    break
                code_line = lines[i]
                # Remove up to the fence's own indentation from each content line.
                code_line = code_line[min(indent, len(code_line) - len(code_line.lstrip(" "))):]
                out.append((CODE_INDENT + code_line).rstrip() if code_line.strip() else "")
                i += 1
            continue
        if "|" in line and i + 1 < n and _TABLE_SEPARATOR.match(lines[i + 1]):
            out.append(" | ".join(_split_cells(line)))
            i += 2
            while i < n and "|" in lines[i] and lines[i].strip():
                out.append(" | ".join(_split_cells(lines[i])))
                i += 1
            continue
        if _SETEXT_UNDERLINE.match(line) and out and out[-1].strip() and line.strip()[0] == "=":
            i += 1
            continue
        if _RULE.match(line) or _LINK_DEFINITION.match(line):
            # A "---" under a paragraph line is a setext heading underline: drop it as well.
            out.append("")
            i += 1
            continue
        while _QUOTE.match(line):
            line = _QUOTE.sub("", line, count=1)
        heading = _HEADING.match(line)
        if heading and line.lstrip().startswith("#"):
            out.append(inline_to_text(heading.group("text") or ""))
            i += 1
            continue
        bullet = _BULLET.match(line)
        if bullet:
            check = bullet.group("check")
            marker = BULLET if check is None else (TASK_OPEN if check == " " else TASK_DONE)
            out.append(_list_indent(bullet.group("indent")) + marker + inline_to_text(bullet.group("text")))
            i += 1
            continue
        ordered = _ORDERED.match(line)
        if ordered:
            out.append(f"{_list_indent(ordered.group('indent'))}{int(ordered.group('num'))}. "
                       + inline_to_text(ordered.group("text")))
            i += 1
            continue
        out.append(inline_to_text(line.strip()))
        i += 1
    result = "\n".join(part.rstrip() for part in "\n".join(out).split("\n"))
    return _BLANK_RUNS.sub("\n\n", result).strip("\n")

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
    converter = MarkdownStream()
    return converter.feed(text) + converter.finish()


# ---- the same conversion, piece by piece ----------------------------------------------------------

#: Characters that end a sentence wherever they stand.
_CJK_SENTENCE_ENDS = "。！？；…"
#: Characters that end a sentence when whitespace follows (not "3.14", "e.g.x", "![img]").
_ASCII_SENTENCE_ENDS = ".!?;"
#: How many of the latest sentence ends of an unfinished line are tried for letting it out early.
_EARLY_TRIES = 4
#: Closing quotes and brackets that stay with the sentence before them.
_CLOSERS = "”’」』）】》〉)\"'"


def sentence_cuts(text: str, at_end: bool = False) -> list[int]:
    """Positions just after each sentence end in ``text`` whose following character is known.

    A sentence ends at ``。！？；…`` or at ``.!?;`` followed by whitespace (a ``.`` not after a
    digit, so a list's "1. " is not a sentence), together with the
    closing quotes or brackets right after it. A cut is only reported when a character after it
    has arrived (so a closing quote still to come is not separated from its sentence), unless
    ``at_end``: then a ``。！？；…`` (or a closer) ending ``text`` is a cut too.
    """
    cuts: list[int] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _CJK_SENTENCE_ENDS or (ch in _ASCII_SENTENCE_ENDS and i + 1 < n and text[i + 1].isspace()
                                        and not (ch == "." and i and text[i - 1].isdigit())):
            j = i + 1
            while j < n and (text[j] in _CJK_SENTENCE_ENDS or text[j] in _CLOSERS):
                j += 1
            if j < n or (at_end and ch in _CJK_SENTENCE_ENDS):
                cuts.append(j)
            i = j
            continue
        i += 1
    return cuts


def _inline_closed(text: str) -> bool:
    """True when no inline construct (code span, emphasis, link, tag, escape) is left open.

    Conservative: text for which this is true converts the same alone as inside its line.
    """
    if text.count("`") % 2 or text.endswith("\\"):
        return False
    if text.count("[") != text.count("]") or text.count("(") != text.count(")"):
        return False
    if text.count("<") != text.count(">"):
        return False
    if text.count("**") % 2 or text.count("~~") % 2 or text.count("__") % 2:
        return False
    if text.replace("**", "").count("*") % 2:
        return False
    single_underscores = re.findall(r"(?<![A-Za-z0-9_])_(?!_)|(?<!_)_(?![A-Za-z0-9_])",
                                    text.replace("__", ""))
    return len(single_underscores) % 2 == 0


class _PlainOutput:
    """What ``markdown_to_text`` does to its joined lines (right-strip every line, collapse blank
    runs to one blank line, no blank lines at the start or end), done on text as it comes."""

    def __init__(self) -> None:
        self.started = False
        self.newlines = 0
        self.spaces = ""

    def write(self, text: str) -> str:
        out: list[str] = []
        for i, part in enumerate(text.split("\n")):
            if i:
                self.newlines += 1
                self.spaces = ""
            body = part.rstrip()
            if not body:
                self.spaces += part
                continue
            if self.started and self.newlines:
                out.append("\n" * min(self.newlines, 2))
            out.append(self.spaces + body)
            self.started = True
            self.newlines = 0
            self.spaces = part[len(body):]
        return "".join(out)


class MarkdownStream:
    """``markdown_to_text`` on text that arrives in pieces (a model's streamed answer).

    ``feed(piece)`` returns the plain text that is final so far and ``finish()`` the rest; joined,
    they equal ``markdown_to_text`` of the whole text. Half a Markdown construct is never
    emitted: a line is converted when it is complete, except that a paragraph or list item line
    is let out early up to a sentence end when no inline construct is open before it. Lines that
    need what follows (a possible table header, fenced code, a heading) wait for their end.
    (One difference: a line let out early is not turned into a table header afterwards.)
    """

    def __init__(self) -> None:
        self._out = _PlainOutput()
        self._pieces: list[str] = []
        self._line = ""              # the incomplete input line
        self._pending_cr = False
        self._early_from = 0         # offset in _line of text not yet let out early (0: none)
        self._early_text = ""        # what the early parts of the current line converted to
        self._fence: tuple[str, int] | None = None
        self._table = False
        self._held: str | None = None  # a line with "|" waiting to see if a separator follows
        self._last: str | None = None  # the last complete output line
        self._first_line = True

    # ---- input ---------------------------------------------------------------------------------

    def feed(self, text: str) -> str:
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]
        if text:
            self._pending_cr = text.endswith("\r")
        self._line += text.replace("\r\n", "\n").replace("\r", "\n")
        while "\n" in self._line:
            line, self._line = self._line.split("\n", 1)
            self._complete(line)
        self._let_out_early()
        return self._take()

    def finish(self) -> str:
        line, self._line = self._line, ""
        self._complete(line)
        if self._held is not None:
            held, self._held = self._held, None
            self._block(held)
        return self._take()

    # ---- output --------------------------------------------------------------------------------

    def _take(self) -> str:
        text = "".join(self._pieces)
        self._pieces.clear()
        return text

    def _write(self, text: str) -> None:
        piece = self._out.write(text)
        if piece:
            self._pieces.append(piece)

    def _start_line(self) -> None:
        if not self._first_line:
            self._write("\n")
        self._first_line = False

    def _emit(self, line: str) -> None:
        self._start_line()
        self._write(line)
        self._last = line

    # ---- lines ---------------------------------------------------------------------------------

    def _complete(self, line: str) -> None:
        if self._early_from:
            rest = inline_to_text(line[self._early_from:].rstrip())
            self._write(rest)
            self._last = self._early_text + rest
            self._early_from, self._early_text = 0, ""
            return
        if self._fence is not None:
            marker, indent = self._fence
            stripped = line.strip()
            if stripped.startswith(marker[0] * len(marker)) and set(stripped) == {marker[0]}:
                self._fence = None
                return
            code_line = line[min(indent, len(line) - len(line.lstrip(" "))):]
            self._emit((CODE_INDENT + code_line).rstrip() if code_line.strip() else "")
            return
        if self._held is not None:
            held, self._held = self._held, None
            if _TABLE_SEPARATOR.match(line):
                self._emit(" | ".join(_split_cells(held)))
                self._table = True
                return
            self._block(held)
        if self._table:
            if "|" in line and line.strip():
                self._emit(" | ".join(_split_cells(line)))
                return
            self._table = False
        fence = _FENCE_OPEN.match(line)
        if fence:
            self._fence = (fence.group("fence"), len(fence.group("indent")))
            return
        if "|" in line:
            self._held = line
            return
        self._block(line)

    def _block(self, line: str) -> None:
        """One line that is not fenced code nor part of a table."""
        if _SETEXT_UNDERLINE.match(line) and self._last and self._last.strip() and line.strip()[0] == "=":
            return
        if _RULE.match(line) or _LINK_DEFINITION.match(line):
            self._emit("")
            return
        while _QUOTE.match(line):
            line = _QUOTE.sub("", line, count=1)
        heading = _HEADING.match(line)
        if heading and line.lstrip().startswith("#"):
            self._emit(inline_to_text(heading.group("text") or ""))
            return
        head, text = _item_parts(line)
        if head is not None:
            self._emit(head + inline_to_text(text))
            return
        self._emit(inline_to_text(line.strip()))

    def _let_out_early(self) -> None:
        line = self._line
        if (self._fence is not None or self._table or self._held is not None or "|" in line
                or not line.strip()):
            return
        if not self._early_from:
            stripped = line.lstrip()
            if stripped.startswith(("```", "~~~", "[")):
                return
            body = line
            while _QUOTE.match(body):
                body = _QUOTE.sub("", body, count=1)
            if body.lstrip().startswith("#"):
                return
            head, text = _item_parts(body)
            if head is None:
                head, text = "", body.lstrip()
            start = len(line) - len(text)
        else:
            head, start = None, self._early_from
        segment = line[start:]
        # A sentence end that ends the text so far is let out at once: a closing quote after it
        # would simply start the next piece.
        # Only the last few sentence ends are tried: a construct left open before them keeps
        # the earlier ones open too, and trying them all on every piece would cost O(n²).
        for cut in reversed(sentence_cuts(segment, at_end=True)[-_EARLY_TRIES:]):
            if _inline_closed(segment[:cut]):
                break
        else:
            return
        converted = inline_to_text(segment[:cut])
        if head is not None:
            self._start_line()
            converted = head + converted
        self._write(converted)
        self._early_text += converted
        self._early_from = start + cut


def _item_parts(line: str) -> tuple[str | None, str]:
    """A list item's converted marker and its text, or (None, line) for other lines."""
    bullet = _BULLET.match(line)
    if bullet:
        check = bullet.group("check")
        marker = BULLET if check is None else (TASK_OPEN if check == " " else TASK_DONE)
        return _list_indent(bullet.group("indent")) + marker, bullet.group("text")
    ordered = _ORDERED.match(line)
    if ordered:
        return f"{_list_indent(ordered.group('indent'))}{int(ordered.group('num'))}. ", ordered.group("text")
    return None, line

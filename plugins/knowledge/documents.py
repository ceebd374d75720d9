"""Reading the operator's documents (Markdown, TXT, DOCX, PDF, HTML) into titled, structured blocks.

Every reader returns a ``Document``: a title and an ordered list of ``Block``s (heading with its
level, paragraph, list item, table row), which is what the chunker needs to keep headings, lists and
tables whole. A table row under a header row is written with its column names (``table_blocks``).
A file that cannot be read raises ``DocumentError`` with a reason an operator can act on; the
caller reports it by name and goes on with the other files.
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

#: File name endings read, and the reader of each.
SUFFIXES = (".md", ".markdown", ".txt", ".docx", ".pdf", ".html", ".htm")

#: A line that opens a section in plain text or PDF: 第一章 / 第二节 / 第3条, 一、, (一), 1. / 1.2 / 1、
_NUMBERED_HEADING = (
    (re.compile(r"^第[一二三四五六七八九十百零〇\d]+[章部篇]"), 1),
    (re.compile(r"^第[一二三四五六七八九十百零〇\d]+[节条]"), 2),
    (re.compile(r"^[一二三四五六七八九十]+[、.．]"), 2),
    (re.compile(r"^[（(][一二三四五六七八九十]+[)）]"), 3),
    (re.compile(r"^\d+\.\d+(\.\d+)*\s*\S"), 3),
    (re.compile(r"^\d+[、.．]\s*\S"), 2),
)
#: Headings are short and do not end a sentence.
_HEADING_MAX_CHARS = 30
_SENTENCE_END = "。！？；!?;：:，,"
#: A .docx whose parts unpack to more than this is refused before it is parsed.
UNPACKED_DOCX_BYTES = 200_000_000
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•·●▪]|\d+[.)）]|[（(]\d+[)）])\s+")


class DocumentError(Exception):
    """A file that cannot be read (corrupt, encrypted, not text, too large)."""


@dataclass
class Block:
    """One structural unit: ``kind`` is heading, paragraph, list, table (one row, its cells
    joined by `` | ``) or record (a table row written with its column names: ``名称：值，名称：值``)."""

    kind: str
    text: str
    level: int = 0


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)


def read_document(path: Path, max_bytes: int = 20_000_000) -> Document:
    """Read one file by its suffix. Raises ``DocumentError`` when it cannot be read."""
    suffix = path.suffix.lower()
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DocumentError(f"cannot open: {exc.strerror or exc}") from None
    if size > max_bytes:
        raise DocumentError(f"larger than max_file_bytes ({size} > {max_bytes} bytes)")
    try:
        if suffix in (".md", ".markdown"):
            doc = read_markdown(_read_text(path), path.stem)
        elif suffix == ".txt":
            doc = read_plain_text(_read_text(path), path.stem)
        elif suffix == ".docx":
            doc = read_docx(path)
        elif suffix == ".pdf":
            doc = read_pdf(path)
        elif suffix in (".html", ".htm"):
            doc = read_html(_read_text(path), path.stem)
        else:
            raise DocumentError(f"unsupported file type {suffix!r}")
    except DocumentError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise DocumentError(f"unreadable {suffix[1:].upper()} file: {type(exc).__name__}: {exc}") from None
    except Exception as exc:  # third-party parsers raise their own types on hostile files
        raise DocumentError(f"unreadable {suffix[1:].upper()} file: {type(exc).__name__}: {exc}") from None
    doc.blocks = [b for b in doc.blocks if b.text.strip()]
    if not doc.blocks:
        raise DocumentError("no text found (a scanned PDF needs OCR first)")
    return doc


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if b"\x00" in data[:4096]:
        raise DocumentError("binary content, not text")
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise DocumentError("text is neither UTF-8 nor GB18030")


def _clean(text: str) -> str:
    return re.sub(r"[ \t\u3000\xa0]+", " ", text).strip()


def numbered_heading_level(line: str) -> int:
    """The heading level of a numbered section line (第一章, 一、, 1.2 ...), 0 when it is not one."""
    line = line.strip()
    if not line or len(line) > _HEADING_MAX_CHARS or line[-1] in _SENTENCE_END or "。" in line:
        return 0
    for pattern, level in _NUMBERED_HEADING:
        if pattern.match(line):
            return level
    return 0


# ---- tables --------------------------------------------------------------------------------------

#: Column names are short names, not sentences or clauses.
_COLUMN_NAME_MAX_CHARS = 20
_CLAUSE_MARK = re.compile(r"[。！？；!?;，,：:]")
_DIGIT = re.compile(r"\d")


def has_header(rows: list[list[str]], marked: bool | None) -> bool:
    """Whether the first of a table's rows names its columns. ``marked`` is what the format says:
    True for a Markdown row above its ``|---|`` rule or a row of HTML ``<th>`` cells, None when the
    format has no marker (DOCX, TXT, HTML of ``<td>`` only). Unmarked, the first row is taken as a
    header only when it reads as column names (two or more short, distinct, non-empty cells with no
    sentence or clause marks) and differs in kind from the rows under it: some column holds a
    figure (a price, a time, a count) in every row below and none in the first row. A two-column
    table needs two such rows below, so a key/value table (地址 | …, 电话 | …) is not read as
    named columns from its first pair."""
    if not rows:
        return False
    first = rows[0]
    data = [row for row in rows[1:] if row != first]  # a header repeated on every page is no data
    if not data:
        return False
    if marked is not None:
        return marked and any(first)
    if len(first) < 2 or len(data) < (2 if len(first) == 2 else 1):
        return False
    if not all(first) or len(set(first)) < len(first):
        return False
    if any(len(c) > _COLUMN_NAME_MAX_CHARS or _CLAUSE_MARK.search(c) for c in first):
        return False
    for i, name in enumerate(first):
        values = [row[i] for row in data if i < len(row)]
        if not _DIGIT.search(name) and len(values) == len(data) and all(_DIGIT.search(v) for v in values):
            return True
    return False


def labelled_row(names: list[str], cells: list[str]) -> str:
    """One data row with its column names, ``名称：值，名称：值``: empty cells are left out, a cell
    past the header's columns (or under an empty name) is written bare, and neighbouring columns
    with the same value (a merged cell) share it (``平日价、周末价：380元``). The separators are no
    sentence ends, so the row stays one sentence; a cell's own trailing 。or ；goes."""
    pairs: list[tuple[list[str], str, int]] = []
    for i, value in enumerate(cells):
        value = value.rstrip("。；;")
        if not value:
            continue
        name = names[i] if i < len(names) else ""
        if pairs and name and pairs[-1][0] and pairs[-1][1] == value and pairs[-1][2] == i - 1:
            pairs[-1] = (pairs[-1][0] + [name], value, i)
        else:
            pairs.append(([name] if name else [], value, i))
    return "，".join(f"{'、'.join(n)}：{v}" if n else v for n, v, _ in pairs)


def table_blocks(rows: list[list[str]], marked: bool | None = None,
                 spans: list[list[bool]] | None = None) -> list[Block]:
    """A table's rows (cells in column order, a merged cell repeated in each column it spans) as
    blocks: under a header (``has_header``) each data row is a record written with its column names,
    and the header row itself is dropped (every record carries it); otherwise each row is a table
    row, its cells joined by `` | ``. ``spans`` marks the cells that continue a merged cell on their
    left (a reader that knows, DOCX): those are written once; two cells that merely hold the same
    text (``周一 | 休息 | 休息``) are both kept."""
    if spans is None:
        spans = [[False] * len(row) for row in rows]
    kept = [(row, span) for row, span in zip(rows, spans) if any(row)]
    rows = [row for row, _ in kept]
    if has_header(rows, marked):
        # a row repeating the header (a header repeated on every page) says nothing more
        return [Block("record", labelled_row(rows[0], row)) for row in rows[1:] if row != rows[0]]
    out = []
    for row, span in kept:
        cells = [c for i, c in enumerate(row) if not (i < len(span) and span[i])]
        out.append(Block("table", " | ".join(cells)))
    return out


# ---- Markdown ------------------------------------------------------------------------------------

_ATX = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")


def _markdown_inline(text: str) -> str:
    text = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"(\*\*|__|`)", "", text)
    return _clean(text)


def read_markdown(text: str, stem: str) -> Document:
    blocks: list[Block] = []
    paragraph: list[str] = []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    in_fence = False
    table: list[list[str]] = []
    ruled = False  # the table's first row stands above a |---| rule: its header

    def end_table() -> None:
        nonlocal ruled
        if table:
            blocks.extend(table_blocks(table, True if ruled else None))
            table.clear()
            ruled = False

    def flush() -> None:
        end_table()
        if paragraph:
            blocks.append(Block("paragraph", _markdown_inline(" ".join(paragraph))))
            paragraph.clear()

    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("```") or stripped.startswith("~~~"):
            flush()
            in_fence = not in_fence
            continue
        if in_fence:
            paragraph.append(stripped)
            continue
        following = lines[i + 1].strip() if i + 1 < len(lines) else ""
        is_row = stripped.startswith("|") or (stripped.count("|") >= 2 and _TABLE_RULE.match(following or ""))
        if not is_row:
            end_table()
        match = _ATX.match(stripped)
        if match:
            flush()
            blocks.append(Block("heading", _markdown_inline(match.group(2)), len(match.group(1))))
        elif stripped and following and set(following) <= {"="} and len(following) >= 2:
            flush()
            blocks.append(Block("heading", _markdown_inline(stripped), 1))
        elif stripped and following and set(following) <= {"-"} and len(following) >= 2 and not paragraph:
            flush()
            blocks.append(Block("heading", _markdown_inline(stripped), 2))
        elif stripped and (set(stripped) <= {"="} or (set(stripped) <= {"-"} and blocks
                                                          and blocks[-1].kind == "heading")):
            continue  # the underline of a setext heading
        elif is_row:
            if paragraph:
                flush()
            if _TABLE_RULE.match(stripped):
                ruled = ruled or len(table) == 1
                continue
            table.append([_markdown_inline(c) for c in stripped.strip("|").split("|")])
        elif _LIST_ITEM.match(line):
            flush()
            blocks.append(Block("list", _markdown_inline(_LIST_ITEM.sub("", line, count=1))))
        elif not stripped:
            flush()
        elif line.startswith(("  ", "\t")) and blocks and blocks[-1].kind == "list" and not paragraph:
            blocks[-1].text += " " + _markdown_inline(stripped)
        else:
            paragraph.append(stripped.lstrip("> "))
    flush()
    title = next((b.text for b in blocks if b.kind == "heading" and b.level == 1), stem)
    return Document(title, blocks)


# ---- plain text (and PDF text) ----------------------------------------------------------------------

def _join_lines(lines: list[str]) -> str:
    """Lines of one paragraph as one string: Chinese lines join without a space, Latin with one."""
    out = ""
    for line in lines:
        if out and out[-1].isascii() and line[:1].isascii():
            out += " "
        out += line
    return out


def read_plain_text(text: str, stem: str, title: str | None = None) -> Document:
    blocks: list[Block] = []
    paragraph: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if paragraph:
            blocks.append(Block("paragraph", _clean(_join_lines(paragraph))))
            paragraph.clear()

    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = _clean(raw)
        level = numbered_heading_level(line)
        is_row = bool(line) and not level and not _LIST_ITEM.match(raw) and ("\t" in raw.strip() or "  |  " in raw)
        if table and not is_row:
            blocks.extend(table_blocks(table))
            table.clear()
        if not line:
            flush()
        elif level:
            flush()
            blocks.append(Block("heading", line, level))
        elif _LIST_ITEM.match(raw):
            flush()
            blocks.append(Block("list", _LIST_ITEM.sub("", raw, count=1).strip()))
        elif is_row:
            flush()
            table.append([_clean(c) for c in re.split(r"\t+|\s{2,}\|\s{2,}", raw.strip())])
        else:
            paragraph.append(line)
            if line[-1] in "。！？!?":
                flush()
    blocks.extend(table_blocks(table))
    flush()
    # The first short line that ends no sentence is the document's title (a title line repeating
    # the metadata title as well): kept as a level-1 heading, which the chunker leaves out.
    first = blocks[0] if blocks else None
    if first is not None and first.kind == "paragraph" and len(first.text) <= _HEADING_MAX_CHARS and (
            first.text == title or (title is None and first.text[-1] not in _SENTENCE_END + "。")):
        title = first.text
        blocks[0] = Block("heading", first.text, 1)
    return Document(title or stem, blocks)


# ---- DOCX ------------------------------------------------------------------------------------------

def read_docx(path: Path) -> Document:
    import docx  # python-docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile:
        raise DocumentError("not a Word document (.docx): not a zip archive") from None
    if unpacked > UNPACKED_DOCX_BYTES:  # a zip bomb, or far more text than a document has
        raise DocumentError(f"unpacks to {unpacked} bytes (more than {UNPACKED_DOCX_BYTES})")
    try:
        document = docx.Document(str(path))
    except Exception as exc:
        raise DocumentError(f"not a Word document (.docx): {type(exc).__name__}") from None
    blocks: list[Block] = []
    title = (document.core_properties.title or "").strip()
    body = document.element.body
    for child in body.iterchildren():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            para = Paragraph(child, document)
            text = _clean(para.text)
            if not text:
                continue
            style = (para.style.name if para.style is not None else "") or ""
            numbered = child.find(".//{http://schemas.openxmlformats.org/wordprocessingml/2006/main}numPr") is not None
            if style == "Title":
                title = title or text
                blocks.append(Block("heading", text, 1))
            elif style.startswith("Heading"):
                level = int(style.split()[-1]) if style.split()[-1].isdigit() else 1
                blocks.append(Block("heading", text, level))
            elif style.startswith("List") or numbered:
                blocks.append(Block("list", text))
            else:
                level = numbered_heading_level(text)
                blocks.append(Block("heading", text, level) if level else Block("paragraph", text))
        elif tag == "tbl":
            # python-docx gives a merged cell once per column it spans, as the same element
            rows, spans = [], []
            for row in Table(child, document).rows:
                cells = row.cells
                rows.append([_clean(cell.text) for cell in cells])
                spans.append([i > 0 and cell._tc is cells[i - 1]._tc for i, cell in enumerate(cells)])
            blocks.extend(table_blocks(rows, spans=spans))
    if not title:
        title = next((b.text for b in blocks if b.kind == "heading" and b.level == 1), path.stem)
    return Document(title, blocks)


# ---- PDF ---------------------------------------------------------------------------------------------

def read_pdf(path: Path) -> Document:
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings about odd files are not ours
    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            try:
                reader.decrypt("")
            except Exception:
                raise DocumentError("encrypted PDF (remove the password first)") from None
        pages = [page.extract_text() or "" for page in reader.pages]
        meta_title = ""
        try:
            meta_title = ((reader.metadata or {}).get("/Title") or "").strip()
        except Exception:
            meta_title = ""
    except DocumentError:
        raise
    except PdfReadError as exc:
        raise DocumentError(f"not a readable PDF: {exc}") from None
    text = "\n".join(pages)
    # A PDF breaks lines where the page did, not where sentences end: glue a line to the next
    # unless it ends a sentence or the next one opens a section or a list item.
    doc = read_plain_text(text, path.stem, title=str(meta_title) or None)
    return doc


# ---- HTML --------------------------------------------------------------------------------------------

class _HtmlBlocks(HTMLParser):
    SKIP = {"script", "style", "nav", "footer", "header", "noscript", "template", "svg", "head"}
    BREAK = {"p", "div", "section", "article", "br", "blockquote", "pre", "dd", "dt", "main", "aside"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.title = ""
        self._text: list[str] = []
        self._kind = "paragraph"
        self._level = 0
        self._skip = 0
        self._in_title = False
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._table: list[list[str]] = []
        self._header = True  # every cell of the table's first row is a <th>

    def _end_table(self) -> None:
        if self._table:
            self.blocks.extend(table_blocks(self._table, True if self._header else None))
        self._table, self._header = [], True

    def _flush(self) -> None:
        text = _clean("".join(self._text))
        self._text = []
        if text:
            self.blocks.append(Block(self._kind, text, self._level))
        self._kind, self._level = "paragraph", 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self.SKIP and tag != "head":
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self._flush()
            self._kind, self._level = "heading", int(tag[1])
        elif tag == "li":
            self._flush()
            self._kind = "list"
        elif tag == "table":
            self._end_table()  # rows of an unclosed (or enclosing) table before this one
        elif tag == "tr":
            self._flush()
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
            if tag == "td" and not self._table:
                self._header = False
        elif tag in self.BREAK:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and tag != "head":
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(_clean("".join(self._cell)))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if any(self._row):
                self._table.append(self._row)
            elif not self._table:
                self._header = True  # an empty first row: the next one is the first
            self._row = None
        elif tag == "table":
            self._end_table()
        elif tag in ("h1", "h2", "h3", "h4", "h5", "h6", "li") or tag in self.BREAK:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif self._skip:
            return
        elif self._cell is not None:
            self._cell.append(data)
        else:
            self._text.append(data)


def read_html(text: str, stem: str) -> Document:
    parser = _HtmlBlocks()
    parser.feed(text)
    parser.close()
    parser._flush()
    parser._end_table()
    title = _clean(parser.title) or next(
        (b.text for b in parser.blocks if b.kind == "heading" and b.level == 1), stem)
    return Document(title, parser.blocks)

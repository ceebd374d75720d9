"""Reading the operator's documents (Markdown, TXT, DOCX, PDF, HTML) into titled, structured blocks.

Every reader returns a ``Document``: a title and an ordered list of ``Block``s (heading with its
level, paragraph, list item, table row), which is what the chunker needs to keep headings, lists and
tables whole. A file that cannot be read raises ``DocumentError`` with a reason an operator can act
on; the caller reports it by name and goes on with the other files.
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
    """One structural unit: ``kind`` is heading, paragraph, list or table (one row each)."""

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

    def flush() -> None:
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
        elif stripped.startswith("|") or (stripped.count("|") >= 2 and _TABLE_RULE.match(following or "")):
            flush()
            if _TABLE_RULE.match(stripped):
                continue
            cells = [_markdown_inline(c) for c in stripped.strip("|").split("|")]
            blocks.append(Block("table", " | ".join(cells)))
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

    def flush() -> None:
        if paragraph:
            blocks.append(Block("paragraph", _clean(_join_lines(paragraph))))
            paragraph.clear()

    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = _clean(raw)
        level = numbered_heading_level(line)
        if not line:
            flush()
        elif level:
            flush()
            blocks.append(Block("heading", line, level))
        elif _LIST_ITEM.match(raw):
            flush()
            blocks.append(Block("list", _LIST_ITEM.sub("", raw, count=1).strip()))
        elif "\t" in raw.strip() or "  |  " in raw:
            flush()
            blocks.append(Block("table", " | ".join(_clean(c) for c in re.split(r"\t+|\s{2,}\|\s{2,}", raw.strip()))))
        else:
            paragraph.append(line)
            if line[-1] in "。！？!?":
                flush()
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
            table = Table(child, document)
            for row in table.rows:
                cells: list[str] = []
                for cell in row.cells:
                    value = _clean(cell.text)
                    if not cells or cells[-1] != value:  # merged cells repeat their text
                        cells.append(value)
                if any(cells):
                    blocks.append(Block("table", " | ".join(cells)))
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
        elif tag == "tr":
            self._flush()
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
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
                self.blocks.append(Block("table", " | ".join(self._row)))
            self._row = None
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
    title = _clean(parser.title) or next(
        (b.text for b in parser.blocks if b.kind == "heading" and b.level == 1), stem)
    return Document(title, parser.blocks)

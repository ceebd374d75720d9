"""Cutting a document into passages that keep its structure.

A chunk never spans two sections: a heading closes the chunk before it. Inside a section, list
items and table rows stay whole (a long table is cut between rows; a row under a header row is
written with its column names, so each part reads on its own, and a table whose header is not
known repeats its first row at the top of every part), and a long paragraph is cut after a
Chinese or Latin sentence end, never inside a sentence unless one sentence alone is longer than a
chunk. Every chunk keeps the document title and its heading path (章 > 节), which are also part
of what retrieval matches.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .documents import Block, Document

#: Shorter sentences ("好。", a list bullet) say too little to be embedded on their own.
MIN_SENTENCE_CHARS = 4
_SENTENCE = re.compile(r"[^。！？；!?;\n]*[。！？；!?;\n]+[”’\"')）]*|[^。！？；!?;\n]+$")


@dataclass
class Chunk:
    title: str
    heading_path: list[str]
    text: str
    ordinal: int = 0

    @property
    def heading(self) -> str:
        return " > ".join(self.heading_path)

    def context_text(self) -> str:
        """What is embedded and matched: title, heading path and text."""
        head = " > ".join([self.title, *self.heading_path])
        return f"{head}\n{self.text}"

    def sentences(self) -> list[str]:
        """The chunk's sentences (a list item or table row is one line, cut after sentence ends):
        each is embedded on its own, so one sentence that answers a question lifts its chunk even
        when the rest of the chunk is about something else."""
        return [s for line in self.text.split("\n") for s in split_sentences(line.removeprefix("- "))
                if len(s) >= MIN_SENTENCE_CHARS]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Where each sentence of ``text`` starts and ends, white space around it left out."""
    spans = []
    for m in _SENTENCE.finditer(text):
        sentence = m.group(0)
        start = m.start() + len(sentence) - len(sentence.lstrip())
        end = m.end() - len(sentence) + len(sentence.rstrip())
        if start < end:
            spans.append((start, end))
    return spans


def split_sentences(text: str) -> list[str]:
    return [text[start:end] for start, end in sentence_spans(text)]


def _pieces(text: str, limit: int) -> list[str]:
    """A paragraph longer than ``limit`` as pieces cut after sentence ends."""
    if len(text) <= limit:
        return [text]
    out: list[str] = []
    current = ""
    for sentence in split_sentences(text):
        while len(sentence) > limit:  # one sentence longer than a chunk: cut it hard
            if current:
                out.append(current)
                current = ""
            out.append(sentence[:limit])
            sentence = sentence[limit:]
        if current and len(current) + len(sentence) > limit:
            out.append(current)
            current = ""
        current += sentence
    if current:
        out.append(current)
    return out


def chunk_document(doc: Document, max_chars: int = 400) -> list[Chunk]:
    """The document's chunks, in reading order, each at most about ``max_chars`` characters."""
    chunks: list[Chunk] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    size = 0
    table_header: str | None = None

    def heading_path() -> list[str]:
        return [text for _, text in path]

    def flush() -> None:
        nonlocal size
        text = "\n".join(lines).strip()
        if text:
            chunks.append(Chunk(doc.title, heading_path(), text, len(chunks)))
        lines.clear()
        size = 0

    def add(line: str) -> None:
        nonlocal size
        if lines and size + len(line) > max_chars:
            flush()
        lines.append(line)
        size += len(line) + 1

    previous: Block | None = None
    for block in doc.blocks:
        if block.kind == "heading":
            flush()
            table_header = None
            if block.level <= 1 and block.text == doc.title and not path:
                previous = block
                continue  # the title itself: already on every chunk
            while path and path[-1][0] >= block.level:
                path.pop()
            path.append((block.level, block.text))
        elif block.kind == "table":
            starts_table = previous is None or previous.kind != "table"
            if starts_table:
                table_header = block.text
                add(block.text)
            else:
                if lines and size + len(block.text) > max_chars and table_header:
                    flush()
                    lines.append(table_header)
                    size = len(table_header) + 1
                add(block.text)
        elif block.kind == "record":  # a table row with its column names: whole, needs no header
            table_header = None
            add(block.text)
        elif block.kind == "list":
            for piece in _pieces(block.text, max_chars):
                add(f"- {piece}")
        else:
            table_header = None
            for piece in _pieces(block.text, max_chars):
                add(piece)
        previous = block
    flush()
    return chunks

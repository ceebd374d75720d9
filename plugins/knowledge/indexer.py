"""Keeping the index in step with the document folder: new, changed and removed files.

``sync()`` compares each file's (mtime, size) with what the store holds, reads and chunks the
changed ones on a worker thread, embeds their chunks through the bot's embedding service
(``kind="passage"``, disk-cached by content: each chunk whole, with its title and heading path,
and each of its sentences) and replaces them in the store. A file that cannot
be read is recorded with its reason and reported by name; its previous chunks, if any, stay
searchable until it is fixed or removed.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .chunking import chunk_document
from .documents import SUFFIXES, DocumentError, read_document
from .store import DocumentRecord, KnowledgeStore, NewChunk
from .terms import TermAnalyzer

log = logging.getLogger("skillbot.plugins.knowledge")
#: Seconds between attempts to embed the documents with the first provider after it failed.
MODEL_RETRY_SECONDS = 600.0
#: Files read, embedded and stored concurrently during one folder check.
FILES_AT_ONCE = max(2, os.cpu_count() or 1)


@dataclass
class SyncReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    chunks: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed or self.unreadable)


#: How documents are read and cut into chunks; raised when that changes (2: table rows under a
#: header row written with their column names; 3: equal neighbouring cells kept unless DOCX merged
#: them), so that an index built before reads every file again once, as if it had changed.
READING = 3


def signature_of(path: Path) -> str | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return f"r{READING}:{st.st_mtime_ns}:{st.st_size}"


class FolderIndexer:
    def __init__(self, folder: Path, store: KnowledgeStore, analyzer: TermAnalyzer, embeddings: Any,
                 chunk_chars: int = 400, max_file_bytes: int = 20_000_000) -> None:
        self.folder = folder
        self.store = store
        self.analyzer = analyzer
        self.embeddings = embeddings
        self.chunk_chars = chunk_chars
        self.max_file_bytes = max_file_bytes
        self._lock = asyncio.Lock()
        self._model_retry_at = 0.0
        #: Unreadable files already logged, by (path, signature): said once per version.
        self._logged: set[tuple[str, str]] = set()

    def files(self) -> dict[str, Path]:
        """The documents in the folder (recursively), by path relative to it."""
        if not self.folder.is_dir():
            return {}
        out = {}
        for path in sorted(self.folder.rglob("*")):
            if path.suffix.lower() in SUFFIXES and path.is_file() and not any(
                    part.startswith(".") or part.startswith("~$") for part in path.relative_to(self.folder).parts):
                out[path.relative_to(self.folder).as_posix()] = path
        return out

    def _wanted_model(self) -> str:
        models = getattr(self.embeddings, "models", None) or []
        return models[0] if self.embeddings is not None and self.embeddings.enabled and models else ""

    async def sync(self, full: bool = False) -> SyncReport:
        """Bring the store up to date with the folder. ``full`` empties the store and reads every file."""
        async with self._lock:
            started = time.monotonic()
            report = SyncReport()
            if full:
                await self.store.clear()
            files = await asyncio.to_thread(self.files)
            known = await self.store.documents()
            stored_model = await self.store.vector_model()
            wanted = self._wanted_model()
            # Vectors of another model than the first provider's: re-embed everything when the
            # provider list changed; when the first provider was only down while indexing, try
            # it again every MODEL_RETRY_SECONDS, not at every check.
            models = list(getattr(self.embeddings, "models", None) or [])
            stale_model = bool(wanted) and stored_model != wanted and (
                (stored_model and stored_model not in models) or time.monotonic() >= self._model_retry_at)
            if stale_model:
                self._model_retry_at = time.monotonic() + MODEL_RETRY_SECONDS
            for rel in sorted(set(known) - set(files)):
                await self.store.remove_document(rel)
                report.removed.append(rel)
            signatures = await asyncio.to_thread(lambda: {rel: signature_of(p) for rel, p in files.items()})
            changed = []
            for rel, path in files.items():
                signature = signatures[rel]
                if signature is None:
                    continue
                old = known.get(rel)
                if old is not None and old.signature == signature and not full and not (
                        stale_model and not old.error and old.chunks):
                    if old.error:
                        report.unreadable[rel] = old.error
                    continue
                changed.append((rel, path, signature, old))
            # several files at once: one is read while others are embedded (on the embedding
            # service's pool) or written
            slots = asyncio.Semaphore(FILES_AT_ONCE)

            async def index(rel: str, path: Path, signature: str, old: DocumentRecord | None) -> None:
                async with slots:
                    await self._index_file(rel, path, signature, old, report)
            results = await asyncio.gather(*[index(*item) for item in changed], return_exceptions=True)
            failed = next((r for r in results if isinstance(r, BaseException)), None)
            if failed is not None:  # the store went away: every file has stopped; the caller retries
                raise failed
            report.added.sort()
            report.updated.sort()
            report.seconds = time.monotonic() - started
            if report.added or report.updated or report.removed:
                log.info("knowledge index: %d added, %d updated, %d removed, %d chunks written in %.2f s",
                         len(report.added), len(report.updated), len(report.removed), report.chunks,
                         report.seconds)
            return report

    async def _index_file(self, rel: str, path: Path, signature: str, old: DocumentRecord | None,
                          report: SyncReport) -> None:
        try:
            title, chunks = await asyncio.to_thread(self._read, path)
        except DocumentError as exc:
            reason = str(exc)
            report.unreadable[rel] = reason
            if (rel, signature) not in self._logged:
                self._logged.add((rel, signature))
                log.warning("knowledge: cannot read %s: %s (the other documents are unaffected)", rel, reason)
            await self.store.mark_unreadable(DocumentRecord(rel, signature, path.stem, 0, time.time(), reason))
            return
        vectors, model, rows = None, "", None
        if chunks and self.embeddings is not None and self.embeddings.enabled:
            # each chunk as a whole (with its title and heading path) and each of its sentences
            texts, rows = [], []
            for i, c in enumerate(chunks):
                for text in (c.context_text, *c.sentences):
                    texts.append(text)
                    rows.append(i)
            matrices = await self.embeddings.embed_set(texts, kind="passage")
            wanted = self._wanted_model()
            model = wanted if wanted in matrices else next(iter(matrices), "")
            vectors = matrices.get(model)
        record = DocumentRecord(rel, signature, title, len(chunks), time.time())
        await self.store.replace_document(record, [
            NewChunk(c.ordinal, c.title, c.heading_path, c.text, c.terms) for c in chunks], vectors, model, rows)
        (report.updated if old is not None else report.added).append(rel)
        report.chunks += len(chunks)

    def _read(self, path: Path) -> tuple[str, list[Any]]:
        doc = read_document(path, self.max_file_bytes)
        out = []
        for chunk in chunk_document(doc, self.chunk_chars):
            context = chunk.context_text()
            out.append(_Prepared(chunk.ordinal, chunk.title, chunk.heading_path, chunk.text, context,
                                 self.analyzer.passage_terms(context), chunk.sentences()))
        return doc.title, out


@dataclass
class _Prepared:
    ordinal: int
    title: str
    heading_path: list[str]
    text: str
    context_text: str
    terms: list[str]
    sentences: list[str]

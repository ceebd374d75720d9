"""Where the index lives: one interface (``KnowledgeStore``), two implementations.

* ``SqliteStore`` (the default, embedded): documents and chunks in SQLite with an FTS5 table over
  their lexical terms, vectors in a numpy file beside it, both in ``<paths.cache_dir>/knowledge/``.
  For one bot process: several workers should use PostgreSQL.
* ``PostgresStore`` (``store_postgres.py``): the same tables in PostgreSQL, full-text search over
  the same terms, vectors in a pgvector column; several workers and machines share it.

Both only store and look up; scoring is the retriever's (``retrieval.py``), so a question gets
the same answer whichever store holds the index.
"""
from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

#: The layout of what a store holds; a store written with another one is emptied when opened, and
#: the next folder check indexes every file again. 2: a vector row per sentence besides the chunk's.
INDEX_FORMAT = "2"


@dataclass
class DocumentRecord:
    """One file as indexed: ``signature`` is (mtime_ns, size); ``error`` is why it could not be read."""

    path: str
    signature: str
    title: str = ""
    chunks: int = 0
    indexed_at: float = 0.0
    error: str = ""


@dataclass
class StoredChunk:
    id: int
    path: str
    ordinal: int
    title: str
    heading_path: list[str]
    text: str
    terms: frozenset[str] = field(default_factory=frozenset)

    @property
    def heading(self) -> str:
        return " > ".join(self.heading_path)


@dataclass
class NewChunk:
    """A chunk to store: its place, its text and its lexical terms."""

    ordinal: int
    title: str
    heading_path: list[str]
    text: str
    terms: list[str]


@dataclass
class StoreStats:
    documents: int
    chunks: int
    unreadable: dict[str, str]
    last_indexed: float | None
    vector_model: str


class KnowledgeStore(ABC):
    """The index behind the knowledge skill. Every method is async; none scores."""

    kind = "?"

    @abstractmethod
    async def open(self) -> None:
        """Create tables or files when missing and load what is needed to answer."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def documents(self) -> dict[str, DocumentRecord]:
        """Every file the index knows, readable or not, by path."""

    @abstractmethod
    async def replace_document(self, record: DocumentRecord, chunks: Sequence[NewChunk],
                               vectors: np.ndarray | None, model: str,
                               rows: Sequence[int] | None = None) -> None:
        """Put a file's chunks (and their vectors from ``model``) in place of its old ones.

        ``rows[i]`` is the index in ``chunks`` of the chunk vector row ``i`` belongs to (a chunk
        has several: itself and its sentences); None = one row per chunk, in order."""

    @abstractmethod
    async def mark_unreadable(self, record: DocumentRecord) -> None:
        """Remember a file that could not be read (its old chunks, if any, are kept)."""

    @abstractmethod
    async def remove_document(self, path: str) -> None: ...

    @abstractmethod
    async def lexical_candidates(self, terms: Sequence[str], limit: int) -> list[int]:
        """Ids of chunks holding any of ``terms``, best full-text rank first."""

    @abstractmethod
    async def dense_candidates(self, model: str, vector: np.ndarray,
                               limit: int) -> tuple[list[tuple[int, float]], float]:
        """The ``limit`` chunks nearest to ``vector`` as (id, cosine of its nearest row: the
        chunk itself or one of its sentences), and the mean cosine over every stored row of that
        model (the baseline a relevant passage must stand above)."""

    @abstractmethod
    async def best_row_cosines(self, model: str, vector: np.ndarray,
                               chunk_id: int) -> tuple[float, float] | None:
        """(the cosine of ``vector`` with chunk ``chunk_id``'s nearest row, with the nearest row of
        any chunk), or None when that chunk has no row of ``model``."""

    @abstractmethod
    async def chunks(self, ids: Sequence[int]) -> dict[int, StoredChunk]: ...

    @abstractmethod
    async def stats(self) -> StoreStats: ...

    @abstractmethod
    async def vector_model(self) -> str:
        """The embedding model of the stored vectors ("" when there are none)."""

    @abstractmethod
    async def clear(self) -> None:
        """Forget everything (``run.py kb reindex``)."""


def fts_query(terms: Sequence[str]) -> str:
    """An FTS5 query matching any of the terms, each quoted as a string."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms if t)


class SqliteStore(KnowledgeStore):
    """SQLite (FTS5) for documents, chunks and terms; a numpy file for the vectors.

    SQLite calls run on a worker thread, one at a time (one connection, a lock). The vectors are
    kept in memory as one matrix (each row a chunk or one of its sentences; ``vector_ids`` names
    the chunk of each row) and written whole, atomically, after each change: ``vectors.npy``
    plus ``vector_ids.npy``.
    """

    kind = "sqlite"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.db_path = self.folder / "index.sqlite3"
        self.vectors_path = self.folder / "vectors.npy"
        self.ids_path = self.folder / "vector_ids.npy"
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._ids = np.zeros(0, dtype=np.int64)
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._centroid: np.ndarray | None = None
        self._model = ""
        #: (mtime_ns, size) of the vector file as last read or written by this store.
        self._stamp: tuple[int, int] | None = None

    # ---- plumbing ------------------------------------------------------------------------------

    async def _run(self, fn, *args):
        return await asyncio.to_thread(self._locked, fn, *args)

    def _locked(self, fn, *args):
        with self._lock:
            assert self._db is not None, "store not open"
            return fn(self._db, *args)

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.db_path, check_same_thread=False, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript("""
            CREATE TABLE IF NOT EXISTS documents (
                path TEXT PRIMARY KEY, signature TEXT NOT NULL, title TEXT NOT NULL DEFAULT '',
                chunks INTEGER NOT NULL DEFAULT 0, indexed_at REAL NOT NULL DEFAULT 0,
                error TEXT NOT NULL DEFAULT '');
            CREATE TABLE IF NOT EXISTS chunks (
                id INTEGER PRIMARY KEY, path TEXT NOT NULL, ordinal INTEGER NOT NULL,
                title TEXT NOT NULL, heading_path TEXT NOT NULL, text TEXT NOT NULL,
                terms TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS chunks_path ON chunks(path);
            CREATE VIRTUAL TABLE IF NOT EXISTS chunk_terms USING fts5(
                terms, tokenize = 'unicode61 remove_diacritics 0');
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """)
        db.commit()
        row = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        if (row[0] if row else "") != INDEX_FORMAT:
            with db:
                for table in ("chunks", "chunk_terms", "documents", "meta"):
                    db.execute(f"DELETE FROM {table}")
                db.execute("INSERT INTO meta VALUES ('format', ?)", (INDEX_FORMAT,))
            for path in (self.vectors_path, self.ids_path):
                path.unlink(missing_ok=True)
        self._db = db
        row = db.execute("SELECT value FROM meta WHERE key = 'vector_model'").fetchone()
        self._model = row[0] if row else ""
        self._load_vectors(db)

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.vectors_path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def _load_vectors(self, db: sqlite3.Connection) -> None:
        self._stamp = self._file_stamp()
        try:
            ids = np.load(self.ids_path)
            matrix = np.load(self.vectors_path)
        except (OSError, ValueError):
            ids, matrix = np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        known = {r[0] for r in db.execute("SELECT id FROM chunks")}
        if len(ids) != len(matrix) or not set(ids.tolist()) <= known:
            ids, matrix = np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        self._set_vectors(ids.astype(np.int64), matrix.astype(np.float32))

    def _set_vectors(self, ids: np.ndarray, matrix: np.ndarray) -> None:
        self._ids, self._matrix = ids, matrix
        self._centroid = matrix.mean(axis=0) if len(matrix) else None

    def _save_vectors(self) -> None:
        for path, array in ((self.vectors_path, self._matrix), (self.ids_path, self._ids)):
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, array)
            os.replace(tmp, path)
        self._stamp = self._file_stamp()

    async def close(self) -> None:
        def close() -> None:
            with self._lock:
                if self._db is not None:
                    self._db.close()
                    self._db = None
        await asyncio.to_thread(close)

    # ---- writing -----------------------------------------------------------------------------

    async def documents(self) -> dict[str, DocumentRecord]:
        def read(db: sqlite3.Connection) -> dict[str, DocumentRecord]:
            # another process (run.py kb, the bot before a settings reload) may have written since
            if self._file_stamp() != self._stamp:
                row = db.execute("SELECT value FROM meta WHERE key = 'vector_model'").fetchone()
                self._model = row[0] if row else ""
                self._load_vectors(db)
            rows = db.execute("SELECT path, signature, title, chunks, indexed_at, error FROM documents")
            return {r[0]: DocumentRecord(*r) for r in rows}
        return await self._run(read)

    def _delete_chunks(self, db: sqlite3.Connection, path: str) -> list[int]:
        ids = [r[0] for r in db.execute("SELECT id FROM chunks WHERE path = ?", (path,))]
        if ids:
            db.executemany("DELETE FROM chunk_terms WHERE rowid = ?", [(i,) for i in ids])
            db.execute("DELETE FROM chunks WHERE path = ?", (path,))
        return ids

    def _drop_vectors(self, removed: Sequence[int]) -> bool:
        if not len(removed) or not len(self._ids):
            return False
        keep = ~np.isin(self._ids, np.asarray(removed, dtype=np.int64))
        if keep.all():
            return False
        self._set_vectors(self._ids[keep], self._matrix[keep])
        return True

    async def replace_document(self, record: DocumentRecord, chunks: Sequence[NewChunk],
                               vectors: np.ndarray | None, model: str,
                               rows: Sequence[int] | None = None) -> None:
        def write(db: sqlite3.Connection) -> None:
            with db:
                removed = self._delete_chunks(db, record.path)
                new_ids = []
                for c in chunks:
                    cur = db.execute(
                        "INSERT INTO chunks (path, ordinal, title, heading_path, text, terms) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (record.path, c.ordinal, c.title, json.dumps(c.heading_path, ensure_ascii=False),
                         c.text, " ".join(c.terms)))
                    new_ids.append(cur.lastrowid)
                    db.execute("INSERT INTO chunk_terms (rowid, terms) VALUES (?, ?)",
                               (cur.lastrowid, " ".join(c.terms)))
                db.execute("INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?)",
                           (record.path, record.signature, record.title, len(chunks),
                            record.indexed_at, ""))
                changed = self._drop_vectors(removed)
                if vectors is not None and len(new_ids) and model:
                    if model != self._model:  # another model: the old vectors cannot be compared
                        self._set_vectors(np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32))
                        self._model = model
                        db.execute("INSERT OR REPLACE INTO meta VALUES ('vector_model', ?)", (model,))
                    matrix = np.asarray(vectors, dtype=np.float32)
                    owners = range(len(new_ids)) if rows is None else rows
                    ids = np.asarray([new_ids[i] for i in owners], dtype=np.int64)
                    if len(self._matrix):
                        self._set_vectors(np.concatenate([self._ids, ids]), np.vstack([self._matrix, matrix]))
                    else:
                        self._set_vectors(ids, matrix)
                    changed = True
                if changed:
                    self._save_vectors()
        await self._run(write)

    async def mark_unreadable(self, record: DocumentRecord) -> None:
        def write(db: sqlite3.Connection) -> None:
            with db:
                cur = db.execute("UPDATE documents SET signature = ?, error = ?, indexed_at = ? WHERE path = ?",
                                 (record.signature, record.error, record.indexed_at, record.path))
                if cur.rowcount == 0:
                    db.execute("INSERT INTO documents VALUES (?, ?, ?, 0, ?, ?)",
                               (record.path, record.signature, record.title, record.indexed_at, record.error))
        await self._run(write)

    async def remove_document(self, path: str) -> None:
        def write(db: sqlite3.Connection) -> None:
            with db:
                removed = self._delete_chunks(db, path)
                db.execute("DELETE FROM documents WHERE path = ?", (path,))
                if self._drop_vectors(removed):
                    self._save_vectors()
        await self._run(write)

    async def clear(self) -> None:
        def write(db: sqlite3.Connection) -> None:
            with db:
                db.execute("DELETE FROM chunks")
                db.execute("DELETE FROM chunk_terms")
                db.execute("DELETE FROM documents")
                db.execute("DELETE FROM meta WHERE key != 'format'")
            self._model = ""
            self._set_vectors(np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32))
            self._save_vectors()
        await self._run(write)

    # ---- reading -----------------------------------------------------------------------------

    async def lexical_candidates(self, terms: Sequence[str], limit: int) -> list[int]:
        query = fts_query(terms)
        if not query:
            return []

        def read(db: sqlite3.Connection) -> list[int]:
            rows = db.execute("SELECT rowid FROM chunk_terms WHERE chunk_terms MATCH ? "
                              "ORDER BY bm25(chunk_terms) LIMIT ?", (query, limit))
            return [r[0] for r in rows]
        return await self._run(read)

    async def dense_candidates(self, model: str, vector: np.ndarray,
                               limit: int) -> tuple[list[tuple[int, float]], float]:
        ids, matrix, centroid = self._ids, self._matrix, self._centroid
        if model != self._model or not len(ids) or centroid is None or matrix.shape[1] != len(vector):
            return [], 0.0

        def nearest() -> tuple[list[tuple[int, float]], float]:
            cosines = matrix @ np.asarray(vector, dtype=np.float32)
            out: dict[int, float] = {}
            for i in np.argsort(-cosines):  # a chunk's rows: the best one counts
                out.setdefault(int(ids[i]), float(cosines[i]))
                if len(out) >= limit:
                    break
            return list(out.items()), float(centroid @ vector)
        return await asyncio.to_thread(nearest)

    async def best_row_cosines(self, model: str, vector: np.ndarray,
                               chunk_id: int) -> tuple[float, float] | None:
        ids, matrix = self._ids, self._matrix
        if model != self._model or not len(ids) or matrix.shape[1] != len(vector):
            return None

        def best() -> tuple[float, float] | None:
            cosines = matrix @ np.asarray(vector, dtype=np.float32)
            own = cosines[ids == chunk_id]
            return (float(own.max()), float(cosines.max())) if len(own) else None
        return await asyncio.to_thread(best)

    async def chunks(self, ids: Sequence[int]) -> dict[int, StoredChunk]:
        ids = list(dict.fromkeys(int(i) for i in ids))
        if not ids:
            return {}

        def read(db: sqlite3.Connection) -> dict[int, StoredChunk]:
            marks = ",".join("?" * len(ids))
            rows = db.execute(f"SELECT id, path, ordinal, title, heading_path, text, terms FROM chunks "
                              f"WHERE id IN ({marks})", ids)
            return {r[0]: StoredChunk(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5],
                                      frozenset(r[6].split())) for r in rows}
        return await self._run(read)

    async def stats(self) -> StoreStats:
        def read(db: sqlite3.Connection) -> StoreStats:
            docs, last = db.execute("SELECT count(*), max(indexed_at) FROM documents WHERE error = ''").fetchone()
            chunks = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
            bad = dict(db.execute("SELECT path, error FROM documents WHERE error != ''").fetchall())
            return StoreStats(docs, chunks, bad, last, self._model)
        return await self._run(read)

    async def vector_model(self) -> str:
        return self._model


def now() -> float:
    return time.time()

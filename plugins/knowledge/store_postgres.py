"""The knowledge index in PostgreSQL with pgvector: for documents that outgrow one machine or
workers that share one index. Same interface and same scores as the embedded store.

Tables (``<prefix>_documents``, ``<prefix>_chunks``, ``<prefix>_vectors``, ``<prefix>_meta``) are
created when missing, and the ``vector`` extension with them when the role may. Full-text search
runs over the same lexical terms as SQLite's FTS5 (``to_tsvector('simple', terms)``, a GIN index);
vectors (a chunk's own and its sentences') are rows of a pgvector column compared by cosine
distance (``<=>``). Needs ``psycopg`` (``pip install
skillbot[postgres]``).
"""
from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Sequence

import numpy as np

from .store import INDEX_FORMAT, DocumentRecord, KnowledgeStore, NewChunk, StoredChunk, StoreStats


#: Vector rows fetched per chunk wanted: a chunk's sentences are often near each other.
ROWS_PER_CHUNK = 8


def _vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{float(x):.7g}" for x in vector) + "]"


def tsquery(terms: Sequence[str]) -> str:
    """A to_tsquery('simple', ...) string matching any of ``terms`` (each quoted)."""
    quoted = []
    for term in terms:
        term = term.replace("\\", "\\\\").replace("'", "''")
        if term:
            quoted.append(f"'{term}'")
    return " | ".join(quoted)


class PostgresStore(KnowledgeStore):
    kind = "postgres"

    def __init__(self, dsn: str, prefix: str = "skillbot_knowledge") -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", prefix):
            raise ValueError("postgres_table_prefix must be lower-case letters, digits and _")
        self.dsn = dsn
        self.p = prefix
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._model = ""
        self._centroid: np.ndarray | None = None

    async def open(self) -> None:
        import psycopg

        self._conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        p = self.p
        async with self._lock:
            await self._conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            await self._conn.execute(f"""
                CREATE TABLE IF NOT EXISTS {p}_documents (
                    path TEXT PRIMARY KEY, signature TEXT NOT NULL, title TEXT NOT NULL DEFAULT '',
                    chunks INTEGER NOT NULL DEFAULT 0, indexed_at DOUBLE PRECISION NOT NULL DEFAULT 0,
                    error TEXT NOT NULL DEFAULT '');
                CREATE TABLE IF NOT EXISTS {p}_chunks (
                    id BIGSERIAL PRIMARY KEY, path TEXT NOT NULL, ordinal INTEGER NOT NULL,
                    title TEXT NOT NULL, heading_path TEXT NOT NULL, text TEXT NOT NULL,
                    terms TEXT NOT NULL, tsv TSVECTOR NOT NULL);
                CREATE INDEX IF NOT EXISTS {p}_chunks_path ON {p}_chunks (path);
                CREATE INDEX IF NOT EXISTS {p}_chunks_tsv ON {p}_chunks USING GIN (tsv);
                CREATE TABLE IF NOT EXISTS {p}_vectors (
                    chunk_id BIGINT NOT NULL REFERENCES {p}_chunks (id) ON DELETE CASCADE,
                    model TEXT NOT NULL, embedding vector NOT NULL);
                CREATE INDEX IF NOT EXISTS {p}_vectors_chunk ON {p}_vectors (chunk_id);
                CREATE TABLE IF NOT EXISTS {p}_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            """)
            cur = await self._conn.execute(f"SELECT value FROM {p}_meta WHERE key = 'format'")
            row = await cur.fetchone()
            if (row[0] if row else "") != INDEX_FORMAT:  # written by another layout: index again
                async with self._conn.transaction():
                    for table in ("vectors", "chunks", "documents", "meta"):
                        await self._conn.execute(f"DELETE FROM {p}_{table}")
                    await self._conn.execute(f"INSERT INTO {p}_meta VALUES ('format', %s)", (INDEX_FORMAT,))
            await self._load_meta()

    async def _load_meta(self) -> None:
        cur = await self._conn.execute(f"SELECT key, value FROM {self.p}_meta")
        meta = dict(await cur.fetchall())
        self._model = meta.get("vector_model", "")
        centroid = meta.get("centroid")
        self._centroid = np.array(json.loads(centroid), dtype=np.float32) if centroid else None

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _refresh_centroid(self) -> None:
        cur = await self._conn.execute(
            f"SELECT avg(embedding)::text FROM {self.p}_vectors WHERE model = %s",
            (self._model,))
        row = await cur.fetchone()
        value = row[0] if row else None
        self._centroid = np.array(json.loads(value), dtype=np.float32) if value else None
        await self._conn.execute(
            f"INSERT INTO {self.p}_meta VALUES ('centroid', %s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (value or "",))

    async def documents(self) -> dict[str, DocumentRecord]:
        async with self._lock:
            await self._load_meta()  # another worker may have indexed since (the folder check calls this)
            cur = await self._conn.execute(
                f"SELECT path, signature, title, chunks, indexed_at, error FROM {self.p}_documents")
            return {r[0]: DocumentRecord(*r) for r in await cur.fetchall()}

    async def replace_document(self, record: DocumentRecord, chunks: Sequence[NewChunk],
                               vectors: np.ndarray | None, model: str,
                               rows: Sequence[int] | None = None) -> None:
        p = self.p
        async with self._lock, self._conn.transaction():
            if vectors is not None and model and model != self._model:
                await self._conn.execute(f"DELETE FROM {p}_vectors")
                await self._conn.execute(
                    f"INSERT INTO {p}_meta VALUES ('vector_model', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (model,))
                self._model = model
            await self._conn.execute(f"DELETE FROM {p}_chunks WHERE path = %s", (record.path,))
            ids = []
            async with self._conn.cursor() as cur:
                for c in chunks:
                    terms = " ".join(c.terms)
                    await cur.execute(
                        f"INSERT INTO {p}_chunks (path, ordinal, title, heading_path, text, terms, tsv) "
                        "VALUES (%s, %s, %s, %s, %s, %s, to_tsvector('simple', %s)) RETURNING id",
                        (record.path, c.ordinal, c.title, json.dumps(c.heading_path, ensure_ascii=False),
                         c.text, terms, terms))
                    ids.append((await cur.fetchone())[0])
                if vectors is not None and model and ids:
                    owners = range(len(ids)) if rows is None else rows
                    await cur.executemany(
                        f"INSERT INTO {p}_vectors (chunk_id, model, embedding) VALUES (%s, %s, %s::vector)",
                        [(ids[i], model, _vector_literal(vectors[r])) for r, i in enumerate(owners)])
            await self._conn.execute(
                f"INSERT INTO {p}_documents VALUES (%s, %s, %s, %s, %s, '') ON CONFLICT (path) DO UPDATE SET "
                "signature = EXCLUDED.signature, title = EXCLUDED.title, chunks = EXCLUDED.chunks, "
                "indexed_at = EXCLUDED.indexed_at, error = ''",
                (record.path, record.signature, record.title, len(chunks), record.indexed_at))
            await self._refresh_centroid()

    async def mark_unreadable(self, record: DocumentRecord) -> None:
        async with self._lock:
            await self._conn.execute(
                f"INSERT INTO {self.p}_documents VALUES (%s, %s, %s, 0, %s, %s) ON CONFLICT (path) DO UPDATE SET "
                "signature = EXCLUDED.signature, error = EXCLUDED.error, indexed_at = EXCLUDED.indexed_at",
                (record.path, record.signature, record.title, record.indexed_at, record.error))

    async def remove_document(self, path: str) -> None:
        async with self._lock, self._conn.transaction():
            await self._conn.execute(f"DELETE FROM {self.p}_chunks WHERE path = %s", (path,))
            await self._conn.execute(f"DELETE FROM {self.p}_documents WHERE path = %s", (path,))
            await self._refresh_centroid()

    async def clear(self) -> None:
        async with self._lock, self._conn.transaction():
            for table in ("vectors", "chunks", "documents"):
                await self._conn.execute(f"DELETE FROM {self.p}_{table}")
            await self._conn.execute(f"DELETE FROM {self.p}_meta WHERE key != 'format'")
            self._model, self._centroid = "", None

    async def lexical_candidates(self, terms: Sequence[str], limit: int) -> list[int]:
        query = tsquery(terms)
        if not query:
            return []
        async with self._lock:
            cur = await self._conn.execute(
                f"SELECT id FROM {self.p}_chunks, to_tsquery('simple', %s) q WHERE tsv @@ q "
                "ORDER BY ts_rank(tsv, q) DESC, id LIMIT %s", (query, limit))
            return [r[0] for r in await cur.fetchall()]

    async def dense_candidates(self, model: str, vector: np.ndarray,
                               limit: int) -> tuple[list[tuple[int, float]], float]:
        if model != self._model or self._centroid is None or len(self._centroid) != len(vector):
            return [], 0.0
        literal = _vector_literal(vector)
        async with self._lock:
            # a chunk has several rows (itself and its sentences): fetch enough rows for
            # ``limit`` chunks in the usual case, keep each chunk's best
            cur = await self._conn.execute(
                f"SELECT chunk_id, 1 - (embedding <=> %s::vector) FROM {self.p}_vectors "
                "WHERE model = %s ORDER BY embedding <=> %s::vector LIMIT %s",
                (literal, model, literal, limit * ROWS_PER_CHUNK))
            rows = await cur.fetchall()
        best: dict[int, float] = {}
        for chunk_id, cosine in rows:
            best.setdefault(int(chunk_id), float(cosine))
        return list(best.items())[:limit], float(self._centroid @ vector)

    async def best_row_cosines(self, model: str, vector: np.ndarray,
                               chunk_id: int) -> tuple[float, float] | None:
        if model != self._model or self._centroid is None or len(self._centroid) != len(vector):
            return None
        literal = _vector_literal(vector)
        async with self._lock:
            cur = await self._conn.execute(
                f"SELECT max(1 - (embedding <=> %s::vector)) FILTER (WHERE chunk_id = %s), "
                f"max(1 - (embedding <=> %s::vector)) FROM {self.p}_vectors WHERE model = %s",
                (literal, chunk_id, literal, model))
            own, anywhere = await cur.fetchone()
        return None if own is None else (float(own), float(anywhere))

    async def chunks(self, ids: Sequence[int]) -> dict[int, StoredChunk]:
        ids = list(dict.fromkeys(int(i) for i in ids))
        if not ids:
            return {}
        async with self._lock:
            cur = await self._conn.execute(
                f"SELECT id, path, ordinal, title, heading_path, text, terms FROM {self.p}_chunks "
                "WHERE id = ANY(%s)", (ids,))
            rows = await cur.fetchall()
        return {r[0]: StoredChunk(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], frozenset(r[6].split()))
                for r in rows}

    async def stats(self) -> StoreStats:
        p = self.p
        async with self._lock:
            cur = await self._conn.execute(
                f"SELECT count(*), max(indexed_at) FROM {p}_documents WHERE error = ''")
            docs, last = await cur.fetchone()
            cur = await self._conn.execute(f"SELECT count(*) FROM {p}_chunks")
            chunks = (await cur.fetchone())[0]
            cur = await self._conn.execute(f"SELECT path, error FROM {p}_documents WHERE error != ''")
            bad = dict(await cur.fetchall())
        return StoreStats(docs, chunks, bad, last, self._model)

    async def vector_model(self) -> str:
        return self._model

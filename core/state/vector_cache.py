"""Embedding vectors of stored text sets (FAQ phrasings, intent examples) kept on disk.

A set is stored under the hash of its content and the model that embedded it, so a restart or a
second worker loads it in milliseconds instead of re-embedding, and an edited FAQ or a changed
model simply misses. Files are ``.npy`` (float32), written to a temporary name and renamed, so a
reader never sees half a file; an unreadable file is a miss. Nothing is ever read from the source
tree: the folder is ``paths.cache_dir``.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger("skillbot.vectors")


def content_key(model: str, kind: str, texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    digest.update(f"{model}\x00{kind}\x00{len(texts)}\x00".encode())
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:32]


class VectorCache:
    """Vectors per (model, kind, texts) in ``folder/vectors/``."""

    def __init__(self, folder: Path | str | None) -> None:
        self.folder = Path(folder) / "vectors" if folder else None

    def path(self, model: str, kind: str, texts: Sequence[str]) -> Path | None:
        return self.folder / f"{content_key(model, kind, texts)}.npy" if self.folder else None

    def load(self, model: str, kind: str, texts: Sequence[str]) -> np.ndarray | None:
        path = self.path(model, kind, texts)
        if path is None or not path.is_file():
            return None
        try:
            vectors = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            log.warning("vector cache %s unreadable (%s); recomputing", path.name, exc)
            return None
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            return None
        return vectors.astype(np.float32, copy=False)

    def save(self, model: str, kind: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        path = self.path(model, kind, texts)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, np.asarray(vectors, dtype=np.float32), allow_pickle=False)
            os.replace(tmp, path)
        except OSError as exc:  # a read-only or full disk costs time, never an answer
            log.warning("vector cache not written to %s: %s", path.parent, exc)

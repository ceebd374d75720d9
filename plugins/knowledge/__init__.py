"""The knowledge skill: answers grounded in the operator's own documents. See docs/knowledge.md.

It sits between the skills and the general model: its ``skillbot_fallback`` runs first of the
fallbacks (``tryfirst``; the llm fallback is ``trylast``), so only a message the FAQ and the other
skills left unanswered reaches it. It retrieves passages from the watched folder (hybrid
lexical + embedding retrieval, ``retrieval.py``); with relevant ones it answers, through the
configured model from those passages only (``templates/answer_prompt.j2``, streamed like any
long answer, the source named at the end) or, without a model, with the best passage itself;
with none, or when the model says the passages do not answer, it passes the message on to the
general model or declines (``no_match``). Passages and scores go to ``ctx.extra["knowledge"]`` and the message's
explanation; counts and index age to the health checks and metrics.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

import jinja2

from core import Check, Counter, Explanation, Reply, StreamedReply, TextReply, hookimpl

from .answer_check import AnswerCheck
from .config import Config
from .excerpt import excerpt
from .indexer import FolderIndexer, SyncReport
from .model import read_head, with_source
from .retrieval import Passage, Retriever
from .store import KnowledgeStore, SqliteStore, StoreStats
from .terms import TermAnalyzer, coverage

HERE = Path(__file__).parent
TEMPLATES = ("answer_prompt.j2", "answer_source.j2", "passage_answer.j2", "no_match.j2")
TEXT_TYPES = ("text", "voice")
log = logging.getLogger("skillbot.plugins.knowledge")


def build_store(config: Config, cache_dir: Path, settings: Any = None) -> KnowledgeStore:
    """The store the settings choose. Raises ``RuntimeError`` with the setting to fix."""
    if config.store == "postgres":
        dsn = os.environ.get(config.postgres_dsn_env, "")
        if not dsn:
            raise RuntimeError(f"plugins.knowledge.store = \"postgres\" needs a connection string in "
                               f"${config.postgres_dsn_env} (plugins.knowledge.postgres_dsn_env)")
        try:
            from .store_postgres import PostgresStore
        except ImportError as exc:  # pragma: no cover - psycopg is a declared extra
            raise RuntimeError(f"plugins.knowledge.store = \"postgres\" needs psycopg ({exc})") from None
        return PostgresStore(dsn, config.postgres_table_prefix)
    if config.index_dir:
        folder = Path(config.index_dir).expanduser()
        if not folder.is_absolute() and settings is not None:
            folder = settings.resolve_path(folder)
        return SqliteStore(folder)
    return SqliteStore(Path(cache_dir) / "knowledge")


class ReadFamily:
    """A gauge family read when /metrics is scraped: the running bot's value only (no ``copy``, so
    a bot replaced by a settings reload leaves nothing behind)."""

    def __init__(self, name: str, help: str, kind: str, read: Any, label: str = "") -> None:
        self.name, self.help, self.kind, self._read, self._label = name, help, kind, read, label

    def samples(self) -> list[str]:
        value = self._read()
        if value is None:
            return []
        if isinstance(value, dict):
            return [f'{self.name}{{{self._label}="{key}"}} {float(v):.6g}' for key, v in sorted(value.items())]
        return [f"{self.name} {float(value):.6g}"]


class Plugin:
    def __init__(self) -> None:
        self.config = Config()
        self.bot: Any = None
        self.env: jinja2.Environment | None = None
        self.folder: Path | None = None
        self.store: KnowledgeStore | None = None
        self.indexer: FolderIndexer | None = None
        self.retriever: Retriever | None = None
        self.answer_check: AnswerCheck | None = None
        self._loading: asyncio.Task | None = None
        self.stats: StoreStats | None = None
        self.last_sync: SyncReport | None = None
        #: time.time() of the last completed folder check (the index matched the folder then).
        self.checked_at: float | None = None
        self.last_error = ""
        #: Questions that reached the skill, by outcome (a core Counter: kept across settings reloads).
        self.questions = Counter("skillbot_knowledge_questions_total", "Questions that reached the "
                                 "knowledge skill, by outcome: answered_model, answered_passage, passed "
                                 "(to the general model), declined.", ("outcome",))
        self._watcher: asyncio.Task | None = None
        self._opened = False

    # ---- set-up ------------------------------------------------------------------------------

    @hookimpl
    def skillbot_config_schema(self) -> type:
        return Config

    @hookimpl
    async def skillbot_startup(self, bot: Any, config: Config) -> None:
        self.bot = bot
        self.config = config if isinstance(config, Config) else Config()
        self.env = bot.templates(HERE)
        for name in TEMPLATES:  # a missing or broken template stops start-up with its name
            self.env.get_template(name)
        settings = bot.settings
        folder = Path(self.config.folder).expanduser()
        self.folder = folder if folder.is_absolute() else settings.resolve_path(folder)
        self.store = build_store(self.config, bot.cache_dir, settings)
        analyzer = TermAnalyzer(bot.segmenter)
        embeddings = bot.embeddings
        self.indexer = FolderIndexer(self.folder, self.store, analyzer, embeddings,
                                     self.config.chunk_chars, self.config.max_file_bytes)
        if self.config.answer_check:
            self.answer_check = AnswerCheck(bot.cache_dir, settings.semantic.local_threads)
            # loaded in the background: start-up does not wait, the first question rarely does
            self._loading = asyncio.get_running_loop().create_task(self.answer_check.load(), name="answer-check-load")
        self.retriever = Retriever(self.store, analyzer, embeddings, self.config, self.answer_check)
        await self._open()
        if not self.folder.is_dir():
            log.info("knowledge: folder %s does not exist; no documents (add files there to use it)", self.folder)
        self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="knowledge-watch")

    @hookimpl
    async def skillbot_shutdown(self, bot: Any) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            try:
                await self._watcher
            except (asyncio.CancelledError, Exception):
                pass
            self._watcher = None
        if self._loading is not None:
            self._loading.cancel()
            self._loading = None
        if self.answer_check is not None:
            self.answer_check.close()
            self.answer_check = None
        if self.store is not None and self._opened:
            await self.store.close()
            self._opened = False

    async def _open(self) -> bool:
        if self._opened:
            return True
        assert self.store is not None
        try:
            await self.store.open()
        except Exception as exc:  # a database that is down: retried at every folder check
            self.last_error = f"store unavailable: {type(exc).__name__}: {exc}"
            log.error("knowledge: %s store unavailable (retrying): %s", self.store.kind, exc)
            return False
        self._opened = True
        self.stats = await self.store.stats()
        return True

    async def _reopen_later(self) -> None:
        """Drop a store that failed (a lost database connection) so the next check opens it again."""
        if self.store is not None and self._opened:
            self._opened = False
            try:
                await self.store.close()
            except Exception:
                pass

    # ---- keeping the index current -------------------------------------------------------------

    async def sync(self, full: bool = False) -> SyncReport | None:
        """Check the folder now and index what changed (``full``: every file). None: store down."""
        if self.indexer is None or not await self._open():
            return None
        assert self.store is not None
        report = await self.indexer.sync(full=full)
        self.last_sync = report
        self.checked_at = time.time()
        self.stats = await self.store.stats()
        self.last_error = ""
        return report

    async def _watch(self) -> None:
        while True:
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let the watcher die silently
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("knowledge: folder check failed")
                await self._reopen_later()
            if self.config.reload_interval <= 0:
                return
            await asyncio.sleep(self.config.reload_interval)

    # ---- answering -------------------------------------------------------------------------------

    @hookimpl(tryfirst=True)
    async def skillbot_fallback(self, ctx: Any) -> Any:
        message = ctx.message
        if message.is_event or message.msg_type not in TEXT_TYPES or self.retriever is None:
            return None
        text = (message.text or "").strip()
        if not text or not self._opened or not (self.stats and self.stats.chunks):
            return None
        try:
            passages, scored = await self.retriever.search(text)
        except Exception as exc:  # the store went away: the general model answers meanwhile
            self.last_error = f"search failed: {type(exc).__name__}: {exc}"
            ctx.log.warning("knowledge: %s; passing the message on", self.last_error)
            await self._reopen_later()
            return None
        shown = passages or scored[:self.config.top_k]
        info: dict[str, Any] = {"threshold": self.config.threshold,
                                "passages": [p.explain() for p in shown], "relevant": len(passages)}
        if self.answer_check is not None:
            info["answer_check_line"] = self.config.answer_check_line
        ctx.extra["knowledge"] = info
        if not passages:
            return self._no_match(ctx, text)
        outcome, reply = await self._model_answer(ctx, text, passages) if self.config.use_model else ("", None)
        if outcome == "not_covered":  # the model read the passages and found no answer in them
            return self._no_match(ctx, text)
        if reply is None:
            reply = await self._passage_answer(text, passages[0])
            info["outcome"] = "answered_passage"
        else:
            info["outcome"] = "answered_model"
        self.questions.inc(info["outcome"])
        return reply

    def _no_match(self, ctx: Any, text: str) -> TextReply | None:
        """No passage answers: decline (no_match.j2) or pass on to the general model (None)."""
        info = ctx.extra["knowledge"]
        info["outcome"] = "declined" if self.config.no_match == "decline" else "passed"
        self.questions.inc(info["outcome"])
        return TextReply(self._render("no_match.j2", question=text)) if info["outcome"] == "declined" else None

    async def _model_answer(self, ctx: Any, text: str, passages: list[Passage]) -> tuple[str, Reply | None]:
        """The configured model's answer from ``passages`` only, streamed as it is written:
        ("answered", a ``StreamedReply`` ending with the source line) once the model has written
        the head of its answer; ("not_covered", None) when that head says the passages do not
        answer; ("", None) without a model or without a sentence within ``model_timeout``."""
        info = ctx.extra["knowledge"]
        numbered = [{"number": i + 1, "title": p.chunk.title, "heading": p.chunk.heading,
                     "text": p.chunk.text} for i, p in enumerate(passages)]
        marker = self.config.not_covered_marker
        system = self._render("answer_prompt.j2", question=text, passages=numbered, not_covered=marker)
        started = time.monotonic()
        # the llm plugin's model (skillbot_stream_model); None: no model
        pieces = await self.bot.hooks.stream_model([{"role": "system", "content": system},
                                                    {"role": "user", "content": text}], self.config.model_timeout)
        if pieces is None:
            info["model_error"] = "no model"
            return "", None
        head = await read_head(pieces)
        if not head:  # the best passage answers instead (the llm plugin logs why a provider failed)
            await pieces.aclose()  # type: ignore[attr-defined]
            info["model_error"] = "no model answer"
            return "", None
        info["model"] = {"first_sentence_ms": round((time.monotonic() - started) * 1000)}
        if marker in "".join(head):
            await pieces.aclose()  # type: ignore[attr-defined]
            info["model"]["not_covered"] = True
            return "not_covered", None
        sources = list(dict.fromkeys(p.chunk.title for p in passages))

        def source_line(answer: str) -> str:
            return self._render("answer_source.j2", answer=answer, sources=sources)

        return "answered", StreamedReply(with_source(head, pieces, source_line))

    async def _passage_answer(self, question: str, passage: Passage) -> TextReply:
        """The best passage itself, within ``passage_chars``: the sentences nearest the question."""
        assert self.retriever is not None
        chunk, analyzer = passage.chunk, self.retriever.analyzer

        def cut() -> str:
            features = analyzer.question_features(question)
            return excerpt(chunk.text, self.config.passage_chars,
                           lambda sentence: coverage(features, set(analyzer.passage_terms(sentence))))
        # a passage that fits is shown whole, with no thread hop
        text = chunk.text if len(chunk.text) <= self.config.passage_chars else await asyncio.to_thread(cut)
        return TextReply(self._render("passage_answer.j2", text=text, title=chunk.title, heading=chunk.heading))

    def _render(self, name: str, **variables: Any) -> str:
        assert self.env is not None
        return self.env.get_template(name).render(**variables).strip()

    # ---- operations --------------------------------------------------------------------------------

    def index_age(self) -> float | None:
        """Seconds since the index was last checked against the folder (None: never)."""
        return None if self.checked_at is None else max(0.0, time.time() - self.checked_at)

    def status(self) -> dict[str, Any]:
        stats = self.stats
        return {"folder": str(self.folder), "store": self.store.kind if self.store else "",
                "documents": stats.documents if stats else 0, "chunks": stats.chunks if stats else 0,
                "unreadable": dict(stats.unreadable) if stats else {},
                "vector_model": stats.vector_model if stats else "",
                "index_age_seconds": None if self.index_age() is None else round(self.index_age(), 1),
                "last_indexed": stats.last_indexed if stats else None, "error": self.last_error,
                "answer_check": self.answer_check_state()}

    def answer_check_state(self) -> str:
        """"off", "line -2.5" (on), or "unavailable (...)": the fused line decides meanwhile."""
        check = self.answer_check
        if check is None:
            return "off"
        return f"unavailable ({check.error}); the fused line decides" if check.error else \
            f"line {self.config.answer_check_line}"

    @hookimpl
    def skillbot_health(self, bot: Any, probe: bool) -> list:
        """The index: documents, chunks, index age; unreadable files by name (from memory, no I/O)."""
        status = self.status()
        age = status["index_age_seconds"]
        detail = (f"{status['documents']} documents, {status['chunks']} chunks ({status['store']}), "
                  + ("not checked yet" if age is None else f"folder checked {age:.0f} s ago")
                  + f", answer check {status['answer_check']}")
        if status["error"]:
            return [Check("knowledge index", False, f"{status['error']}; {detail}")]
        checks = [Check("knowledge index", True, detail)]
        if status["unreadable"]:
            names = "; ".join(f"{path}: {why}" for path, why in sorted(status["unreadable"].items()))
            checks.append(Check("knowledge documents", False, f"unreadable: {names}"))
        return checks

    @hookimpl
    def skillbot_metrics(self) -> list:
        """Index gauges (read when /metrics is scraped) and the questions counter."""
        def stat(name: str) -> Any:
            return lambda: getattr(self.stats, name) if self.stats is not None else None
        return [
            ReadFamily("skillbot_knowledge_documents", "Documents in the knowledge index.", "gauge",
                       stat("documents")),
            ReadFamily("skillbot_knowledge_chunks", "Passages in the knowledge index.", "gauge", stat("chunks")),
            ReadFamily("skillbot_knowledge_unreadable_documents", "Files in the knowledge folder that "
                       "could not be read (named in /readyz and run.py kb status).", "gauge",
                       lambda: len(self.stats.unreadable) if self.stats is not None else None),
            ReadFamily("skillbot_knowledge_index_age_seconds", "Seconds since the knowledge index was "
                       "last checked against its folder.", "gauge", self.index_age),
            self.questions,
        ]

    @hookimpl
    def skillbot_explain(self, ctx: Any) -> Explanation | None:
        """The passages and scores behind this message's answer (or why there was none)."""
        info = ctx.extra.get("knowledge")
        if not info:
            return None
        items = [f"{p['score']:.2f} (lexical {p['lexical']:.2f}, dense {p['dense']:.2f}) "
                 f"《{p['title']}》{p['heading']}" for p in info["passages"]]
        best = info["passages"][0] if info["passages"] else {}
        line = (f"answer check {best['answers']:.2f}, line {info['answer_check_line']}" if "answers" in best
                else f"threshold {info['threshold']}")
        return Explanation("knowledge", f"{info.get('outcome', '?')}: {info['relevant']} relevant "
                           f"passage(s), {line}", items, info)

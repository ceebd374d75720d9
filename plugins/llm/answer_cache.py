"""Repeated questions answered from a TTL cache instead of a new model call (opt-in).

Which questions: a text (or recognised voice) message whose request to the model would carry no
personal context, that is the model would see only the system prompt and the question: no earlier
turn of the conversation within ``history_idle_seconds`` (or ``max_history_turns = 0``), no
picture. Reset commands never get here (their intent answers them). The key is the question's
normal form (core's ``normalize_text``: full-width, traditional characters, case, emoji and
repeated punctuation fold together; then spaces not between two Latin words and the question
mark or full stop at the end are dropped) plus a fingerprint of what else shapes the answer: the system
prompt as rendered for this user on this day in China (persona, account name, a nickname when a
plugin gave one) and the providers' models. So a changed persona or model, a new day, or a user
whose nickname is in the prompt never meets an answer made for another.

What is kept: only a complete answer (``finish_reason`` "stop") that the model was not stopped
from giving (no content filter), that reached the user's history as the model's answer, and is at
most ``max_chars`` long. Errors, the "unavailable" reply, cut-off and interrupted answers are
never kept. The outbound filter still runs on every answer given from the cache.

Where: ``bot.cache("llm_answers")``, so in memory per process (bounded by ``max_entries``), or in
Redis shared by every worker when the bot's state backend is Redis (each entry expires after
``ttl_seconds``; each worker keeps a bounded near copy). Concurrent identical questions in one
process make one model call: the others wait for it (single flight) and are answered from its
result; when it fails they each ask the model themselves.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

from core import Cache, Counter, MessageContext, Reply, StreamedReply, TextReply, normalize_text

from .config import AnswerCacheConfig

log = logging.getLogger("skillbot.llm")

#: Marks that end a question without changing it (after NFKC: ？ -> ?, ！ -> !).
END_PUNCTUATION = "?!.~。…~ "
_SPACE_NOT_BETWEEN_WORDS = re.compile(r" (?![a-z0-9])|(?<![a-z0-9]) ")

#: The named cache (``bot.cache``) holding the answers; Redis keys ``<prefix>cache:llm_answers:*``.
CACHE_NAME = "llm_answers"
#: Longest wait for an identical question being answered in this process (a streamed answer
#: is kept when its last piece has gone by); past it the waiter asks the model itself.
FLIGHT_WAIT_SECONDS = 120.0


class AnswerCacheMetrics:
    """``skillbot_model_cache_*``: lookups that hit or missed, and the model tokens a hit saved."""

    def __init__(self) -> None:
        self.hits = Counter("skillbot_model_cache_hits_total",
                            "Questions answered from the answer cache, by how (stored, waited: "
                            "joined an identical question being answered).", ("how",))
        self.misses = Counter("skillbot_model_cache_misses_total",
                              "Cacheable questions that needed a model call.")
        self.stored = Counter("skillbot_model_cache_stored_total",
                              "Answers put in the answer cache.")
        self.tokens_saved = Counter("skillbot_model_cache_tokens_saved_total",
                                    "Model tokens (prompt + completion) not spent thanks to the "
                                    "answer cache.")

    def families(self) -> list[Counter]:
        return [self.hits, self.misses, self.stored, self.tokens_saved]


def request_without_context(messages: Sequence[dict[str, Any]]) -> bool:
    """True when the model request is a system prompt (or none) and one plain-text question."""
    roles = [m.get("role") for m in messages]
    return (roles in (["user"], ["system", "user"])
            and isinstance(messages[-1].get("content"), str))


def question_form(question: str) -> str:
    """The question as the cache compares it: core's normal form, without spaces except between
    two Latin letters or digits, and without end punctuation ("什么是 API ？" -> "什么是api")."""
    normal = _SPACE_NOT_BETWEEN_WORDS.sub("", normalize_text(question))
    return normal.rstrip(END_PUNCTUATION)


def cache_key(question: str, fingerprint: Sequence[Any]) -> str | None:
    """The key for ``question`` (None when its form is empty)."""
    normal = question_form(question)
    if not normal:
        return None
    raw = json.dumps([normal, list(fingerprint)], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:40]


class AnswerCache:
    """Looks an answer up, asks the model on a miss (one call per key at a time), keeps a good one."""

    def __init__(self, config: AnswerCacheConfig, store: Cache, metrics: AnswerCacheMetrics) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        #: Keys being answered in this process now -> the entry their answer made (None: none).
        self._flights: dict[str, asyncio.Future[dict[str, Any] | None]] = {}

    async def answer(self, ctx: MessageContext, key: str,
                     ask: Callable[[], Awaitable[Reply]]) -> Reply:
        """The cached answer for ``key``, or ``ask()``'s (kept when it is a good one).

        ``ask()`` may return a ``StreamedReply``: it is passed on as it is written, and kept once
        its last piece has gone by (an identical question meanwhile waits for that, then is
        answered whole from the cache)."""
        entry = await self._get(key)
        if entry is not None:
            return self._hit(ctx, entry, "stored")
        flight = self._flights.get(key)
        if flight is not None:
            try:
                # shield: a waiter cancelled by its time limit must not cancel the others' future
                entry = await asyncio.wait_for(asyncio.shield(flight), FLIGHT_WAIT_SECONDS)
            except asyncio.TimeoutError:
                entry = None
            if entry is not None:
                return self._hit(ctx, entry, "waited")
            self.metrics.misses.inc()
            return await ask()
        flight = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        self.metrics.misses.inc()
        try:
            reply = await ask()
        except BaseException:
            self._land(key, flight, None)
            raise
        if isinstance(reply, StreamedReply):
            reply.pieces = self._kept_while_written(ctx, key, flight, reply, reply.pieces)
            return reply
        entry = self.entry_for(ctx, reply)
        if entry is not None:
            await self._put(key, entry)
        self._land(key, flight, entry)
        return reply

    async def _kept_while_written(self, ctx: MessageContext, key: str,
                                  flight: asyncio.Future[dict[str, Any] | None],
                                  reply: StreamedReply, source: AsyncIterator[str]) -> AsyncIterator[str]:
        """``source`` (``reply``'s own pieces), passed on unchanged; the whole text is kept after
        the last one (``reply.record`` is final by then)."""
        pieces: list[str] = []
        entry = None
        try:
            async for piece in source:
                pieces.append(piece)
                yield piece
            entry = self.entry_for(ctx, TextReply("".join(pieces).strip(), record=reply.record))
            if entry is not None:
                await self._put(key, entry)
        finally:
            self._land(key, flight, entry)
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()

    def _land(self, key: str, flight: asyncio.Future[dict[str, Any] | None],
              entry: dict[str, Any] | None) -> None:
        """End this key's flight: waiters get ``entry`` (None: ask the model themselves)."""
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.done():
            flight.set_result(entry)

    def entry_for(self, ctx: MessageContext, reply: Any) -> dict[str, Any] | None:
        """What to keep of a model answer, or None when it must not be reused."""
        llm = ctx.extra.get("llm")
        if (not isinstance(reply, TextReply) or not reply.record or not isinstance(llm, dict)
                or llm.get("error") or llm.get("finish_reason") != "stop"):
            return None
        text = reply.content
        if not text.strip() or len(text) > self.config.max_chars:
            return None
        tokens = sum(llm.get(k) or 0 for k in ("prompt_tokens", "completion_tokens")
                     if isinstance(llm.get(k), int))
        return {"text": text, "provider": llm.get("provider") or "", "model": llm.get("model") or "",
                "tokens": tokens, "at": time.time()}

    def _hit(self, ctx: MessageContext, entry: dict[str, Any], how: str) -> TextReply:
        tokens = int(entry.get("tokens") or 0)
        self.metrics.hits.inc(how)
        if tokens > 0:
            self.metrics.tokens_saved.inc(amount=tokens)
        ctx.extra["llm"] = {"cache": how, "provider": entry.get("provider", ""),
                            "model": entry.get("model", ""), "finish_reason": "stop",
                            "tokens_saved": tokens,
                            "age_s": round(max(0.0, time.time() - float(entry.get("at") or 0)), 1)}
        return TextReply(str(entry["text"]))

    async def _get(self, key: str) -> dict[str, Any] | None:
        try:
            entry = await self.store.get(key)
        except Exception as exc:  # a cache that fails is a miss, never a failed answer
            log.warning("llm answer cache: read failed (%s); asking the model", type(exc).__name__)
            return None
        return entry if isinstance(entry, dict) and isinstance(entry.get("text"), str) else None

    async def _put(self, key: str, entry: dict[str, Any]) -> None:
        try:
            await self.store.set(key, entry, self.config.ttl_seconds)
        except Exception as exc:
            log.warning("llm answer cache: write failed (%s)", type(exc).__name__)
            return
        self.metrics.stored.inc()

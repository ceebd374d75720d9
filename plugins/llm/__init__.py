"""LLM fallback: what no skill answers goes to a large language model, with conversation context.

- ``skillbot_fallback`` (last of all fallbacks) sends text and recognised voice messages to the
  first healthy OpenAI-compatible provider (``client.LLMClient``) with a Jinja2 system prompt and
  the user's recent turns, and answers with a ``StreamedReply``: the model's text turned into
  WeChat plain text, sentence by sentence as it is written (``LLMClient.stream``), so the delivery
  can show the first sentences inside WeChat's window; notes (cut at max_tokens, interrupted)
  come as the last piece, a failure before any text as the failure template.
- Image messages go to the providers marked ``vision = true`` (the picture's URL as an
  ``image_url`` part, with the conversation); without one they are left to the core's reply.
- A voice message without recognition gets ``voice_unrecognized.j2``, which says how to turn it on.
- With ``[plugins.llm.answer_cache]`` on, a question without personal context that was answered
  before is answered from the cache without a model call (``answer_cache.py``).
- The ``llm.reset`` intent ("重新开始", "清除上下文", configurable) clears the user's context.
- Failures (every provider down, time out, refused) give a polite reply from a template; with no
  provider configured the plugin says so once at start-up (INFO) and answers with ``no_provider.j2``.

Other plugins use the same providers through two service hooks: ``skillbot_ask_model`` (one
answer, e.g. the FAQ's assist) and ``skillbot_stream_model`` (an answer for the user, read as it
is written, e.g. the knowledge skill's grounded answer).

The answer's provider, model, token counts and latency are left in ``ctx.extra["llm"]``; the
plugin counts them in its own metric families (``skillbot_metrics``: model latency, attempts,
errors, tokens) and shows them in the message's explanation (``skillbot_explain``).
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import jinja2

from core import (
    BotServices,
    Candidate,
    Check,
    Counter,
    Explanation,
    Histogram,
    ImageMessage,
    Intent,
    MessageContext,
    StreamedReply,
    TextReply,
    hookimpl,
    probe_http,
)

from .answer_cache import CACHE_NAME, AnswerCache, AnswerCacheMetrics, cache_key, request_without_context
from .client import Completion, LLMClient, LLMError
from .config import Config
from .prompt import build_messages, china_timezone, history_messages, prompt_variables, reset_pattern

log = logging.getLogger("skillbot.llm")

PLUGIN_DIR = Path(__file__).parent
RESET_INTENT = "llm.reset"


@dataclass
class WalkOutcome:
    """What a walk over a streamed answer left behind (``Plugin.model_sentences``)."""

    said: bool = False  # a sentence with text was yielded
    completion: Completion | None = None  # set when the stream ended normally
#: Message types whose ``message.text`` is the user's words.
TEXT_TYPES = ("text", "voice")
#: Seconds; one model request.
MODEL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.5, 6.0, 10.0, 15.0, 20.0, 30.0, 60.0)


#: Running without a model is a normal set-up (small talk, FAQ, weather answer without one), so it
#: is said once per process at INFO, not warned at every start or settings reload.
_SAID_NO_PROVIDER = False


def _say_no_provider() -> None:
    global _SAID_NO_PROVIDER
    if not _SAID_NO_PROVIDER:
        _SAID_NO_PROVIDER = True
        log.info("no model configured: messages no skill answers get the no_provider.j2 reply; to add "
                 "one, add a [[plugins.llm.providers]] table to settings.toml (docs/llm.md)")


class ModelMetrics:
    """The plugin's metric families, fed from what ``ctx.extra["llm"]`` records."""

    def __init__(self) -> None:
        self.latency = Histogram("skillbot_model_latency_seconds",
                                 "Latency of the model request that answered, by provider.",
                                 ("provider",), MODEL_BUCKETS)
        self.attempts = Counter("skillbot_model_attempts_total", "Model provider attempts by outcome "
                                "(ok, timeout, rate_limited, server_error, skipped...).",
                                ("provider", "outcome"))
        self.errors = Counter("skillbot_model_errors_total",
                              "Messages the model could not answer, by error.", ("error",))
        self.tokens = Counter("skillbot_model_tokens_total",
                              "Model tokens used, by provider and kind (prompt, completion).",
                              ("provider", "kind"))

    def families(self) -> list[Counter | Histogram]:
        return [self.latency, self.attempts, self.errors, self.tokens]

    def observe(self, llm: dict[str, Any]) -> None:
        for attempt in llm.get("attempts") or []:
            provider, _, outcome = str(attempt).partition(":")
            self.attempts.inc(provider, outcome or "-")
        if llm.get("error"):
            self.errors.inc(str(llm["error"]))
            return
        provider = str(llm.get("provider") or "-")
        if isinstance(llm.get("latency_ms"), (int, float)):
            self.latency.observe(llm["latency_ms"] / 1000, provider)
        for kind in ("prompt", "completion"):
            tokens = llm.get(f"{kind}_tokens")
            if isinstance(tokens, int) and tokens > 0:
                self.tokens.inc(provider, kind, amount=tokens)


class Plugin:
    def __init__(self) -> None:
        self.config = Config()
        self.bot: BotServices | None = None
        self.client: LLMClient | None = None
        self.env: jinja2.Environment | None = None
        self.metrics = ModelMetrics()
        self.cache_metrics = AnswerCacheMetrics()
        self.answer_cache: AnswerCache | None = None

    # ---- set-up ------------------------------------------------------------------------------

    @hookimpl
    async def skillbot_health(self, bot: BotServices, probe: bool) -> list[Check] | None:
        """Each provider: its circuit breaker (for /readyz) or GET {base_url}/models (run.py check)."""
        if self.client is None:
            return []
        checks = [Check(f"model provider {name}", False, reason)
                  for name, reason in self.client.disabled.items()]
        if not self.client.chain and not checks:
            return [Check("model provider", True, "none configured (unmatched text gets no_provider.j2)")]
        for provider in self.client.chain:
            name = f"model provider {provider.name}"
            if probe:
                url = provider.config.url.removesuffix("/chat/completions") + "/models"
                headers = {"Authorization": f"Bearer {provider.api_key}"} if provider.api_key else None
                checks.append(await probe_http(bot.http, url, name=name, headers=headers,
                                               timeout=min(provider.config.timeout, 10)))
            else:
                state = provider.breaker.state
                detail = f"circuit {state}" + (
                    f", next trial in {provider.breaker.retry_in:.0f}s" if state == "open" else "")
                checks.append(Check(name, state != "open", detail))
        return checks

    @hookimpl
    def skillbot_config_schema(self) -> type:
        return Config

    @hookimpl
    async def skillbot_startup(self, bot: BotServices, config: Config) -> None:
        providers = config.provider_configs()
        self.bot = bot
        self.config = config
        self.env = bot.templates(PLUGIN_DIR)
        # Fail start-up now, with the file named, if a template is missing or broken.
        for name in (config.system_prompt_template, "reset_done.j2", "unavailable.j2",
                     "no_provider.j2", "truncated_note.j2", "content_filter.j2", "explain.j2",
                     "interrupted_note.j2", "voice_unrecognized.j2", "image_prompt.j2"):
            self.env.get_template(name)
        self.client = LLMClient(
            providers, bot.http,
            breaker_failures=config.circuit_breaker_failures,
            breaker_reset_seconds=config.circuit_breaker_reset_seconds,
            max_retry_after=config.max_retry_after_seconds,
            total_timeout=config.total_timeout,
        )
        if config.answer_cache.enabled:
            store = bot.cache(CACHE_NAME, config.answer_cache.max_entries, config.answer_cache.ttl_seconds)
            self.answer_cache = AnswerCache(config.answer_cache, store, self.cache_metrics)
        for name, reason in self.client.disabled.items():
            log.warning("llm provider %s is disabled: %s", name, reason)
        if not self.client.configured:
            _say_no_provider()
        else:
            log.info("llm providers in order: %s",
                     ", ".join(f"{p.name} ({p.config.model})" for p in self.client.chain))

    @hookimpl
    async def skillbot_shutdown(self, bot: BotServices) -> None:
        self.client = None  # the session is the bot's: the core closes it

    @hookimpl
    def skillbot_intents(self) -> list[Intent]:
        return [Intent(RESET_INTENT,
                       patterns=[reset_pattern(c) for c in self.config.reset_commands],
                       priority=100)]

    # ---- the reset command -------------------------------------------------------------------

    @hookimpl
    async def skillbot_handle(self, ctx: MessageContext, candidate: Candidate) -> TextReply | None:
        if candidate.intent.name != RESET_INTENT:
            return None
        await ctx.bot.conversations.clear(ctx.user)
        ctx.history = []
        return TextReply(self._render("reset_done.j2"), record=False)

    # ---- the fallback ------------------------------------------------------------------------

    @hookimpl(trylast=True)
    async def skillbot_fallback(self, ctx: MessageContext) -> TextReply | StreamedReply | None:
        message = ctx.message
        if message.is_event:
            return None
        if message.msg_type == "image":
            return await self.image_reply(ctx)
        if message.msg_type not in TEXT_TYPES:
            return None
        text = (message.text or "").strip()
        if not text:
            if message.msg_type == "voice":
                return TextReply(self._render("voice_unrecognized.j2"), record=False)
            return None
        if self.client is None or not self.client.configured:
            return TextReply(self._render("no_provider.j2"), record=False)
        messages = self.messages_for(ctx, text)
        key = self.answer_cache_key(ctx, text, messages)
        if key is not None and self.answer_cache is not None:
            return await self.answer_cache.answer(ctx, key, lambda: self.answer(ctx, messages))
        return await self.answer(ctx, messages)

    async def image_reply(self, ctx: MessageContext) -> StreamedReply | None:
        """A picture for a vision model, with the conversation; None (the core's reply) without one."""
        url = ctx.message.pic_url.strip() if isinstance(ctx.message, ImageMessage) else ""
        if (self.client is None or not url.lower().startswith(("http://", "https://"))
                or not any(p.config.vision for p in self.client.chain)):
            return None
        content = [{"type": "text", "text": self._render("image_prompt.j2")},
                   {"type": "image_url", "image_url": {"url": url}}]
        return await self.answer(ctx, self.messages_for(ctx, content), vision=True)

    async def answer(self, ctx: MessageContext, messages: list[dict[str, Any]],
                     vision: bool = False) -> StreamedReply:
        """The model's answer as it is written (the request starts when the first piece is read)."""
        def keep_out_of_history() -> None:
            reply.record = False

        reply = StreamedReply(self.written(ctx, messages, vision, keep_out_of_history))
        return reply

    async def written(self, ctx: MessageContext, messages: list[dict[str, Any]], vision: bool,
                      keep_out_of_history: Callable[[], None]) -> AsyncIterator[str]:
        """Plain-text sentences as the model writes them, then any note; a failure before the first
        sentence gives the failure template instead (kept out of the history)."""
        outcome = WalkOutcome()
        try:
            async with aclosing(self.model_sentences(messages, outcome, vision=vision)) as sentences:
                async for text in sentences:
                    yield text
        except LLMError as exc:
            ctx.log.warning("llm: no answer: %s", exc)
            ctx.extra["llm"] = {"error": type(exc).__name__,
                                "attempts": [f"{a.provider}:{a.outcome}" for a in exc.attempts]}
            self.metrics.observe(ctx.extra["llm"])
        except Exception:
            ctx.log.exception("llm: the fallback failed")
        completion = outcome.completion
        if completion is not None:
            ctx.extra["llm"] = completion.metrics()
            self.metrics.observe(ctx.extra["llm"])
        note = self.note_for(completion, outcome.said)
        if not outcome.said:
            keep_out_of_history()
        if note:
            yield note

    async def model_sentences(self, messages: list[dict[str, Any]], outcome: "WalkOutcome", *,
                              vision: bool = False, first_within: float | None = None) -> AsyncIterator[str]:
        """The one walk over a streamed answer (the fallback's and other plugins'): plain-text
        sentences as the model writes them; whether one had text and the completion go into
        ``outcome``. Only the wait for the first sentence is bounded, by ``first_within`` seconds
        (TimeoutError); the client's errors (LLMError) pass through to the caller."""
        assert self.client is not None
        async with self.client.stream(messages, vision=vision) as answer:
            sentences = answer.sentences()
            while True:
                try:
                    if outcome.said or first_within is None:
                        sentence = await anext(sentences)
                    else:
                        async with asyncio.timeout(first_within):
                            sentence = await anext(sentences)
                except StopAsyncIteration:
                    break
                outcome.said = outcome.said or bool(sentence.text.strip())
                yield sentence.text
            outcome.completion = answer.completion

    def note_for(self, completion: Completion | None, said: bool) -> str:
        """What follows the model's sentences (or replaces them when there were none)."""
        if completion is None:
            return "" if said else self._render("unavailable.j2")
        if completion.filtered:
            return ("\n" if said else "") + self._render("content_filter.j2")
        if not said:
            return self._render("unavailable.j2")
        if completion.truncated:
            return "\n" + self._render("truncated_note.j2")
        if completion.interrupted:
            return "\n" + self._render("interrupted_note.j2")
        return ""

    # ---- what it did: metrics and the explanation --------------------------------------------

    @hookimpl
    def skillbot_metrics(self) -> list[Counter | Histogram]:
        return [*self.metrics.families(), *self.cache_metrics.families()]

    @hookimpl
    def skillbot_explain(self, ctx: MessageContext) -> Explanation | None:
        llm = ctx.extra.get("llm")
        if not isinstance(llm, dict):
            return None
        return Explanation(title=self._render("explain.j2", part="title"),
                           summary=self._render("explain.j2", part="summary", llm=llm), data=llm)

    def messages_for(self, ctx: MessageContext, text: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The messages array for the model: system prompt, bounded history, ``text`` (a string
        or a list of content parts)."""
        config = self.config
        system = self._render(config.system_prompt_template, **prompt_variables(
            persona=config.persona, account_name=config.account_name,
            nickname=ctx.extra.get("nickname")))
        history = history_messages(
            ctx.history, max_turns=config.max_history_turns, max_chars=config.max_history_chars,
            idle_seconds=config.history_idle_seconds, reset_commands=config.reset_commands)
        return build_messages(system, history, text)

    def answer_cache_key(self, ctx: MessageContext, text: str, messages: list[dict[str, Any]]) -> str | None:
        """The answer cache's key for this question; None without the cache or with personal
        context (plugins/llm/answer_cache.py). The system prompt is rendered as at the start of
        the day, so the key changes with the day, the persona or a nickname, not the minute."""
        if self.answer_cache is None or self.client is None or not request_without_context(messages):
            return None
        day = datetime.now(china_timezone()).replace(hour=0, minute=0, second=0, microsecond=0)
        prompt = self._render(self.config.system_prompt_template, **prompt_variables(
            persona=self.config.persona, account_name=self.config.account_name,
            nickname=ctx.extra.get("nickname"), now=day))
        return cache_key(text, [prompt, [[p.name, p.config.model] for p in self.client.chain]])

    # ---- helpers -----------------------------------------------------------------------------

    def _render(self, name: str, **variables: Any) -> str:
        assert self.env is not None, "rendered before skillbot_startup"
        return self.env.get_template(name).render(**variables).strip()

    # ---- the model as a service for other plugins ---------------------------------------------

    @hookimpl
    async def skillbot_ask_model(self, messages: list[dict[str, Any]], timeout: float) -> str | None:
        """One answer for another plugin (the FAQ's assist, the knowledge skill) through this
        plugin's providers, failover and circuit breakers, counted in its metrics; None when
        there is no provider or no usable answer within ``timeout`` seconds."""
        if self.client is None or not self.client.configured:
            return None
        try:
            completion = await self.client.complete(messages, timeout=timeout)
        except LLMError as exc:
            log.warning("llm: no answer for another plugin: %s", exc)
            # attempts only: skillbot_model_errors_total counts the messages the fallback could not answer
            self.metrics.observe({"attempts": [f"{a.provider}:{a.outcome}" for a in exc.attempts]})
            return None
        self.metrics.observe(completion.metrics())
        if completion.filtered or not completion.text.strip():
            return None
        return completion.text

    @hookimpl
    def skillbot_stream_model(self, messages: list[dict[str, Any]], timeout: float) -> AsyncIterator[str] | None:
        """An answer for another plugin to show the user (the knowledge skill), read as it is
        written: plain-text sentences from this plugin's providers, failover and circuit breakers,
        then the note of an answer cut short; nothing at all when no provider wrote a sentence
        within ``timeout`` seconds. None without a provider. Counted in this plugin's metrics."""
        if self.client is None or not self.client.configured:
            return None
        return self.sentences_for(messages, timeout)

    async def sentences_for(self, messages: list[dict[str, Any]], timeout: float) -> AsyncIterator[str]:
        outcome = WalkOutcome()
        try:
            async with aclosing(self.model_sentences(messages, outcome, first_within=timeout)) as sentences:
                async for text in sentences:
                    yield text
        except TimeoutError:
            log.warning("llm: no sentence for another plugin within %.1fs", timeout)
            return
        except LLMError as exc:
            log.warning("llm: no answer for another plugin: %s", exc)
            self.metrics.observe({"attempts": [f"{a.provider}:{a.outcome}" for a in exc.attempts]})
            return
        if outcome.completion is None:
            return
        self.metrics.observe(outcome.completion.metrics())
        if outcome.said:
            note = self.note_for(outcome.completion, outcome.said)
            if note:
                yield note

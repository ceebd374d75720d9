"""A client for OpenAI-compatible chat completions with provider failover and circuit breakers.

The same wire protocol (``POST {base_url}/chat/completions``) is spoken by OpenAI, DeepSeek,
Qwen (DashScope compatible mode), Moonshot, Zhipu, Ollama, vLLM and llama.cpp's server. Providers
are tried in order; a provider that fails (timeout, connection error, 5xx, 429, any other 4xx,
malformed JSON, no answer) hands the question to the next one. Each provider has a circuit
breaker: after N consecutive failures it is skipped for a while, then a single trial request
decides whether it is back (half-open). A 429 with ``Retry-After`` skips it for that long.

Answers are streamed (``"stream": true``, server-sent events): ``LLMClient.stream`` returns an
``AnswerStream`` that yields plain-text pieces as the model writes, or whole sentences. Failover
happens only before the first visible text; a stream that breaks after it ends the answer with
what was written (``finish_reason == "interrupted"``). A provider with ``stream = false``, or one
that answers a stream request with a plain JSON body, still works (its answer is one piece).
``LLMClient.complete`` collects the stream into a ``Completion``.

Both are safe to cancel: ``asyncio.CancelledError`` propagates unchanged and leaves every breaker
as it was (before the first text; after it the provider has already been counted as working).
"""
from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Mapping, Sequence

import aiohttp

from .config import ProviderConfig
from .plaintext import MarkdownStream, strip_reasoning
from .sentences import Sentence, SentenceAssembler

log = logging.getLogger("skillbot.llm")

#: Largest response body read from a provider; anything longer is treated as malformed.
MAX_BODY_BYTES = 4 * 1024 * 1024
#: Largest single server-sent event (one ``data:`` chunk) accepted from a stream.
MAX_EVENT_BYTES = 1024 * 1024

#: Error ``code``/``type`` values providers use when their moderation refuses the input:
#: Azure OpenAI and Moonshot ("content_filter"), DashScope ("data_inspection_failed"),
#: Zhipu ("1301"), OpenAI ("content_policy_violation").
CONTENT_FILTER_CODES = frozenset({
    "content_filter", "data_inspection_failed", "datainspectionfailed", "1301",
    "content_policy_violation",
})


# ---- results and errors --------------------------------------------------------------------------

@dataclass
class Attempt:
    """What happened when one provider was tried (or skipped) for one completion."""

    provider: str
    outcome: str  # "ok", "skipped", "timeout", "connection", "rate_limited", "server_error",
    #               "client_error", "malformed", "empty", "content_filter", "deadline",
    #               "interrupted" (the stream broke after the first text)
    status: int | None = None
    detail: str = ""
    latency: float = 0.0


@dataclass
class Completion:
    """A model's answer.

    text: the answer as the model wrote it (reasoning blocks removed, Markdown kept).
    finish_reason: "stop", "length" (cut at max_tokens), "content_filter" (refused; ``text`` is
        what was written before the refusal, usually empty) or "interrupted" (the stream broke
        or ran out of time after the first text; ``text`` is what arrived).
    latency: seconds the successful request took; ``elapsed``: seconds for the whole call,
        failed attempts included; ``first_text``: seconds from the call to the first visible
        text (0 when there was none).
    prompt_tokens / completion_tokens: the provider's usage report (0 when it sent none).
    attempts: every provider tried or skipped before and including the one that answered.
    """

    text: str
    finish_reason: str
    provider: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: float = 0.0
    elapsed: float = 0.0
    first_text: float = 0.0
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    @property
    def filtered(self) -> bool:
        return self.finish_reason == "content_filter"

    @property
    def interrupted(self) -> bool:
        return self.finish_reason == "interrupted"

    def metrics(self) -> dict[str, Any]:
        """A JSON-friendly summary for logs and metrics."""
        return {
            "provider": self.provider, "model": self.model, "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "latency_ms": round(self.latency * 1000, 1), "elapsed_ms": round(self.elapsed * 1000, 1),
            "first_text_ms": round(self.first_text * 1000, 1),
            "attempts": [a.provider + ":" + a.outcome for a in self.attempts],
        }


class LLMError(Exception):
    """No answer could be had. ``attempts`` says what each provider did."""

    def __init__(self, message: str, attempts: Sequence[Attempt] = ()) -> None:
        super().__init__(message)
        self.attempts = list(attempts)


class NoProviderConfigured(LLMError):
    """The provider list is empty (or every provider lacks its API key)."""


class AllProvidersFailed(LLMError):
    """Every provider failed or was skipped by its circuit breaker, or time ran out."""


class ProviderFailure(Exception):
    """One request to one provider failed; the client moves on to the next provider."""

    def __init__(self, outcome: str, detail: str, status: int | None = None,
                 retry_after: float | None = None, by_deadline: bool = False) -> None:
        super().__init__(f"{outcome}: {detail}")
        self.outcome = outcome
        self.detail = detail
        self.status = status
        self.retry_after = retry_after
        #: The caller's overall deadline, not the provider, ended the request.
        self.by_deadline = by_deadline


class _Refused(Exception):
    """The provider's moderation refused the request (HTTP 400 with a content-filter code)."""


# ---- circuit breaker -----------------------------------------------------------------------------

class CircuitBreaker:
    """Closed -> (N consecutive failures) -> open -> (reset_seconds) -> half-open -> one trial.

    A successful trial closes the breaker; a failed one opens it again. ``open_for`` opens it for
    a given time (a 429's Retry-After). ``clock`` is injectable for tests.
    """

    def __init__(self, failures: int = 3, reset_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = failures
        self.reset_seconds = reset_seconds
        self.clock = clock
        self.state = "closed"
        self.failures = 0
        self.open_until = 0.0
        self._trial_running = False

    def allow(self) -> bool:
        """May a request go to this provider now? In half-open state only one may."""
        if self.state == "open":
            if self.clock() < self.open_until:
                return False
            self.state = "half_open"
            self._trial_running = False
        if self.state == "half_open":
            if self._trial_running:
                return False
            self._trial_running = True
        return True

    def success(self) -> None:
        self.state = "closed"
        self.failures = 0
        self._trial_running = False

    def failure(self) -> None:
        self.failures += 1
        if self.state == "half_open" or self.failures >= self.threshold:
            self.open_for(self.reset_seconds)

    def open_for(self, seconds: float) -> None:
        self.state = "open"
        self.open_until = max(self.open_until, self.clock() + seconds)
        self._trial_running = False

    def release(self) -> None:
        """The request allowed by ``allow`` ended without a verdict (cancelled, out of time)."""
        self._trial_running = False

    @property
    def retry_in(self) -> float:
        """Seconds until an open breaker lets a trial through (0 when not open)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self.open_until - self.clock())


# ---- response parsing ----------------------------------------------------------------------------

def parse_retry_after(headers: Mapping[str, str], now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms``."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now())


def _shorten(text: str, limit: int = 300) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_error_body(raw: bytes, content_type: str = "") -> tuple[str, set[str]]:
    """A one-line description of an error response, and its lower-cased error codes/types.

    Understands OpenAI-style ``{"error": {"message", "type", "code"}}`` (also used by DeepSeek,
    DashScope compatible mode, Moonshot, Zhipu, vLLM), ``{"error": "text"}`` (Ollama),
    ``{"message", "code"}`` / ``{"object": "error", ...}`` and ``{"detail": ...}`` bodies, and
    falls back to the title or text of an HTML page.
    """
    text = raw.decode("utf-8", errors="replace")
    codes: set[str] = set()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, str):
            return _shorten(error), codes
        if isinstance(error, dict):
            parts = []
            for key in ("type", "code"):
                value = error.get(key)
                if value not in (None, ""):
                    codes.add(str(value).lower())
                    parts.append(str(value))
            message = error.get("message") or error.get("msg") or error.get("detail")
            if message is None and "detail" in data:
                message = data["detail"]
            if not isinstance(message, str):
                message = json.dumps(message, ensure_ascii=False) if message is not None else ""
            return _shorten(" ".join(parts + [message]).strip() or text), codes
    title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    if title:
        return _shorten(title.group(1)), codes
    return _shorten(re.sub(r"<[^>]+>", " ", text)) or f"(empty body, {content_type or 'no type'})", codes


def _message_text(message: Any) -> str | None:
    """The answer text of a choice's ``message``: a string, or a list of text parts."""
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        pieces = []
        for part in content:
            if isinstance(part, str):
                pieces.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                pieces.append(part["text"])
        return "".join(pieces)
    return None if content is not None else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


# ---- the client ----------------------------------------------------------------------------------

@dataclass
class Provider:
    config: ProviderConfig
    api_key: str
    breaker: CircuitBreaker

    @property
    def name(self) -> str:
        return self.config.name


class LLMClient:
    """Ask the first healthy provider; fail over down the list.

    ``session`` is an ``aiohttp.ClientSession`` the caller owns. API keys are read once, here,
    from ``environ`` (``os.environ`` by default); a provider whose ``api_key_env`` is set but
    empty or missing is left out of the chain and listed in ``disabled``.
    """

    def __init__(self, providers: Sequence[ProviderConfig], session: aiohttp.ClientSession, *,
                 breaker_failures: int = 3, breaker_reset_seconds: float = 30.0,
                 max_retry_after: float = 600.0, total_timeout: float = 45.0,
                 clock: Callable[[], float] = time.monotonic,
                 environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        self.session = session
        self.total_timeout = total_timeout
        self.max_retry_after = max_retry_after
        self.chain: list[Provider] = []
        self.disabled: dict[str, str] = {}
        for config in providers:
            key = ""
            if config.api_key_env:
                key = (environ.get(config.api_key_env) or "").strip()
                if not key:
                    self.disabled[config.name] = f"environment variable {config.api_key_env} is not set"
                    continue
            self.chain.append(Provider(config, key, CircuitBreaker(
                breaker_failures, breaker_reset_seconds, clock)))

    @property
    def configured(self) -> bool:
        return bool(self.chain)

    def breaker(self, name: str) -> CircuitBreaker:
        for provider in self.chain:
            if provider.name == name:
                return provider.breaker
        raise KeyError(name)

    async def complete(self, messages: list[dict[str, Any]], deadline: float | None = None, *,
                       timeout: float | None = None, vision: bool = False) -> Completion:
        """Get an answer for ``messages`` (OpenAI chat format): ``stream(...)`` collected.

        Raises ``NoProviderConfigured`` or ``AllProvidersFailed`` (both ``LLMError``).
        """
        async with self.stream(messages, deadline, timeout=timeout, vision=vision) as answer:
            return await answer.collect()

    def stream(self, messages: list[dict[str, Any]], deadline: float | None = None, *,
               timeout: float | None = None, vision: bool = False) -> "AnswerStream":
        """Stream an answer for ``messages`` (OpenAI chat format); see ``AnswerStream``.

        deadline: an absolute ``time.monotonic()`` value after which no provider is tried and a
            running request is abandoned; ``timeout``: the same in seconds from now. Without
            either the client's ``total_timeout`` applies. Until its first text a request is
            also bounded by its provider's ``timeout``; after it, by that ``timeout`` between
            two pieces of the stream.
        vision: use only the providers marked ``vision = true`` (messages with images).
        """
        started = time.monotonic()
        end = started + self.total_timeout if deadline is None else deadline
        if timeout is not None:
            end = min(end, started + timeout)
        chain = [p for p in self.chain if p.config.vision] if vision else list(self.chain)
        return AnswerStream(self, messages, chain, started, end, vision)

    def _record_failure(self, provider: Provider, failure: ProviderFailure) -> None:
        name = provider.name
        if failure.outcome == "rate_limited" and failure.retry_after is not None:
            wait = min(failure.retry_after, self.max_retry_after)
            provider.breaker.open_for(wait)
            log.warning("llm provider %s: rate limited (429), skipping it for %.1fs: %s",
                        name, wait, failure.detail)
            return
        if failure.by_deadline:
            # Stopped by the caller's deadline, not the provider's own timeout: no verdict.
            provider.breaker.release()
            log.warning("llm provider %s: out of time before it answered", name)
            return
        provider.breaker.failure()
        state = f" (circuit open for {provider.breaker.retry_in:.0f}s)" \
            if provider.breaker.state == "open" else ""
        if failure.outcome == "client_error":
            log.error("llm provider %s: HTTP %s - check its base_url, model and API key: %s%s",
                      name, failure.status, failure.detail, state)
        else:
            log.warning("llm provider %s failed: %s%s", name, failure, state)

    def _request_body(self, config: ProviderConfig, messages: list[dict[str, Any]]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": config.model, "messages": messages, "stream": config.stream,
                                "temperature": config.temperature}
        if config.stream:
            body["stream_options"] = {"include_usage": True}
        if config.max_tokens:
            body["max_tokens"] = config.max_tokens
        body.update(config.extra_body)
        return body

    async def _pieces(self, provider: Provider, messages: list[dict[str, Any]], end: float,
                      state: "_StreamState") -> AsyncIterator[str]:
        """The raw answer text of one request, piece by piece (reasoning blocks removed).

        Raises ``ProviderFailure`` (before or after pieces) and ``_Refused``. Sets ``state``'s
        finish reason, usage and model as they arrive.
        """
        config = provider.config
        headers = {"Accept": "text/event-stream" if config.stream else "application/json"}
        if provider.api_key:
            headers["Authorization"] = f"Bearer {provider.api_key}"
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        first_limit = min(config.timeout, end - now)
        # Time limits as loop times: until the first text, and the overall end.
        base = loop.time()
        end_at = base + (end - now)
        wait_until = end_at if first_limit < config.timeout else base + first_limit

        async def bounded(awaitable: Any) -> Any:
            limit = min(wait_until, end_at)
            try:
                async with asyncio.timeout_at(limit):
                    return await awaitable
            except TimeoutError:
                by_deadline = end_at <= wait_until
                what = "ran out of the answer's time" if by_deadline else (
                    f"no text within {config.timeout:.1f}s" if not state.text_started
                    else f"the stream stalled for {config.timeout:.1f}s")
                raise ProviderFailure("deadline" if by_deadline and state.text_started else "timeout",
                                      what, by_deadline=by_deadline) from None
            except (aiohttp.ClientError, OSError) as exc:
                raise ProviderFailure("connection", f"{type(exc).__name__}: {exc}") from None

        response = await bounded(self.session.post(
            config.url, json=self._request_body(config, messages), headers=headers,
            timeout=aiohttp.ClientTimeout(total=None), allow_redirects=False))
        think = ReasoningFilter()
        try:
            if not 200 <= response.status < 300:
                raw = await bounded(_read_body(response))
                raise _failure_for_status(provider, response.status, response.headers,
                                          raw or b"", response.content_type)
            first = b""
            if response.content_type != "text/event-stream":
                # Sniff: a provider that cannot stream answers with its usual JSON body.
                while not first.strip():
                    chunk = await bounded(response.content.readany())
                    if not chunk:
                        break
                    first += chunk
                if first.lstrip()[:1] in (b"{", b"["):
                    rest = await bounded(_read_body(response, MAX_BODY_BYTES - len(first)))
                    if rest is None:
                        raise ProviderFailure("malformed", f"response body over {MAX_BODY_BYTES} bytes",
                                              response.status)
                    completion = _parse_completion(provider, first + rest, response.status)
                    state.finish_reason = completion.finish_reason
                    state.prompt_tokens = completion.prompt_tokens
                    state.completion_tokens = completion.completion_tokens
                    state.model = completion.model
                    state.done = True
                    if completion.filtered:
                        return
                    state.text_started = True
                    yield completion.text
                    return
            decoder = EventStreamDecoder()
            events = decoder.feed(first) if first else []
            while True:
                for data in events:
                    text = _stream_chunk(provider, data, state, response.status)
                    if state.done:
                        break
                    text = think.feed(text) if text else ""
                    if text:
                        if not state.text_started and not text.strip():
                            state.pending += text  # whitespace before the answer
                            continue
                        if not state.text_started:
                            state.text_started = True
                            wait_until = loop.time() + config.timeout
                            text, state.pending = state.pending + text, ""
                        yield text
                        wait_until = loop.time() + config.timeout
                if state.done:
                    break
                chunk = await bounded(response.content.readany())
                if not chunk:
                    break
                events = decoder.feed(chunk)
            rest = think.finish()
            if rest and state.text_started:
                yield rest
            if not state.done and state.finish_reason is None:
                raise ProviderFailure("connection", "the stream ended before the answer did",
                                      response.status)
        finally:
            if state.done:
                response.release()
            else:
                response.close()


class AnswerStream:
    """One answer as it is written. Use it once, in an ``async with`` block (or call ``aclose``):

        async with client.stream(messages) as answer:
            async for piece in answer:            # plain text (Markdown removed), in order
                ...
        answer.completion                          # finish reason, usage, provider, full text

    or ``async for sentence in answer.sentences()`` for whole sentences and paragraphs
    (``Sentence``), or ``await answer.collect()`` for the ``Completion``. Iteration raises
    ``NoProviderConfigured`` / ``AllProvidersFailed`` when no provider produced any text.
    """

    def __init__(self, client: LLMClient, messages: list[dict[str, Any]], chain: list[Provider],
                 started: float, end: float, vision: bool) -> None:
        self._client = client
        self._messages = messages
        self._chain = chain
        self._started = started
        self._end = end
        self._vision = vision
        self._used = False
        self._generator: Any = None
        #: The finished answer; set when the stream has ended normally.
        self.completion: Completion | None = None

    async def __aenter__(self) -> "AnswerStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop reading (closes the provider's connection if the answer is still coming)."""
        if self._generator is not None:
            await self._generator.aclose()

    def _start(self, generator: Any) -> Any:
        if self._used:
            raise RuntimeError("an AnswerStream can be read only once")
        self._used = True
        self._generator = generator
        return generator

    def __aiter__(self) -> AsyncIterator[str]:
        return self._start(self._plain())

    def sentences(self) -> AsyncIterator[Sentence]:
        """The plain text cut into sentences/lines as each one finishes."""
        return self._start(self._sentences())

    async def collect(self) -> Completion:
        async for _ in self:
            pass
        assert self.completion is not None
        return self.completion

    async def _plain(self) -> AsyncIterator[str]:
        converter = MarkdownStream()
        async with contextlib.aclosing(self._raw()) as raw_pieces:
            async for raw in raw_pieces:
                piece = converter.feed(raw)
                if piece:
                    yield piece
        piece = converter.finish()
        if piece:
            yield piece

    async def _sentences(self) -> AsyncIterator[Sentence]:
        assembler = SentenceAssembler()
        async with contextlib.aclosing(self._plain()) as pieces:
            async for piece in pieces:
                for sentence in assembler.feed(piece):
                    yield sentence
        for sentence in assembler.finish():
            yield sentence

    async def _raw(self) -> AsyncIterator[str]:
        client = self._client
        if not self._chain:
            if self._vision and client.chain:
                raise NoProviderConfigured("no provider is marked vision = true")
            raise NoProviderConfigured("no LLM provider is configured")
        attempts: list[Attempt] = []
        for provider in self._chain:
            if not provider.breaker.allow():
                attempts.append(Attempt(provider.name, "skipped",
                                        detail=f"circuit open for {provider.breaker.retry_in:.1f}s"))
                continue
            if self._end - time.monotonic() <= 0:
                provider.breaker.release()
                attempts.append(Attempt(provider.name, "deadline", detail="no time left"))
                break
            state = _StreamState()
            request_started = time.monotonic()
            first_text = 0.0
            parts: list[str] = []
            outcome = "ok"
            try:
                async with contextlib.aclosing(client._pieces(provider, self._messages, self._end,
                                                              state)) as pieces:
                    async for piece in pieces:
                        if not parts:
                            first_text = time.monotonic() - self._started
                            provider.breaker.success()
                        parts.append(piece)
                        yield piece
            except _Refused as refused:
                log.info("llm provider %s refused the input (%s)", provider.name, refused)
                state.finish_reason = "content_filter"
            except ProviderFailure as failure:
                latency = time.monotonic() - request_started
                if not parts:
                    attempts.append(Attempt(provider.name, failure.outcome, failure.status,
                                            failure.detail, latency))
                    client._record_failure(provider, failure)
                    continue
                # After the first text the answer cannot move to another provider: end it here.
                outcome = "interrupted"
                state.finish_reason = "interrupted"
                attempts.append(Attempt(provider.name, outcome, failure.status, failure.detail, latency))
                if failure.outcome == "deadline":
                    log.warning("llm provider %s: the answer ran out of time after %d characters",
                                provider.name, sum(map(len, parts)))
                else:
                    provider.breaker.failure()
                    log.warning("llm provider %s: the stream broke after %d characters: %s",
                                provider.name, sum(map(len, parts)), failure)
            except BaseException:
                # Cancellation, the reader stopping, or a bug: no verdict on the provider.
                if not parts:
                    provider.breaker.release()
                raise
            text = "".join(parts).strip()
            finish_reason = state.finish_reason or "stop"
            if not text and finish_reason != "content_filter":
                why = "the answer was cut before any text" if finish_reason == "length" else "empty answer"
                failure = ProviderFailure("empty", why, 200)
                attempts.append(Attempt(provider.name, "empty", 200, why,
                                        time.monotonic() - request_started))
                client._record_failure(provider, failure)
                continue
            if not parts:
                provider.breaker.success()
            latency = time.monotonic() - request_started
            if outcome == "ok" and finish_reason == "content_filter":
                outcome = "content_filter"
            if outcome != "interrupted":
                attempts.append(Attempt(provider.name, outcome, 200, latency=latency))
            self.completion = Completion(
                text, finish_reason, provider.name, state.model or provider.config.model,
                state.prompt_tokens, state.completion_tokens, latency,
                time.monotonic() - self._started, first_text, attempts)
            log.info("llm answer from %s (%s): finish=%s tokens=%d+%d first text=%.0fms latency=%.0fms",
                     provider.name, self.completion.model, finish_reason, state.prompt_tokens,
                     state.completion_tokens, first_text * 1000, latency * 1000)
            return
        summary = ", ".join(f"{a.provider}: {a.outcome}" for a in attempts) or "none tried"
        raise AllProvidersFailed(f"no LLM provider answered ({summary})", attempts)


@dataclass
class _StreamState:
    """What one request's stream has said so far besides its text."""

    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    text_started: bool = False
    done: bool = False
    pending: str = ""


# ---- server-sent events ---------------------------------------------------------------------------

class EventStreamDecoder:
    """Server-sent events from bytes that arrive in arbitrary pieces: the ``data`` of each event.

    Lines end in LF, CRLF or CR; ``:`` lines are comments (keep-alives); ``event:``/``id:``/
    ``retry:`` fields are ignored; several ``data:`` lines of one event are joined with a newline;
    a blank line ends an event. A ``data:`` line that is complete JSON (or ``[DONE]``) is taken as
    an event at once, for servers that do not put blank lines between events.
    """

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._buffer = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        self._buffer += chunk
        events: list[str] = []
        while True:
            match = re.search(rb"\r\n|\r|\n", self._buffer)
            if match is None or (match.group() == b"\r" and match.end() == len(self._buffer)):
                break  # no complete line yet (a CR at the end may be half of a CRLF)
            line = self._buffer[:match.start()]
            self._buffer = self._buffer[match.end():]
            self._line(line.decode("utf-8", errors="replace"), events)
        if len(self._buffer) + sum(map(len, self._data)) > self.max_event_bytes:
            raise ProviderFailure("malformed", f"a stream event over {self.max_event_bytes} bytes")
        return events

    def _line(self, line: str, events: list[str]) -> None:
        if not line:
            if self._data:
                events.append("\n".join(self._data))
                self._data = []
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        if name != "data":
            return
        value = value[1:] if value.startswith(" ") else value
        if not self._data:
            stripped = value.strip()
            if stripped == "[DONE]" or _is_json_object(stripped):
                events.append(value)
                return
        self._data.append(value)


def _is_json_object(text: str) -> bool:
    if not (text.startswith("{") and text.endswith("}")):
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _stream_chunk(provider: Provider, data: str, state: _StreamState, status: int) -> str:
    """Read one ``chat.completion.chunk``: returns its text, updates ``state``."""
    if data.strip() == "[DONE]":
        state.done = True
        return ""
    try:
        chunk = json.loads(data)
    except ValueError:
        raise ProviderFailure("malformed", f"stream event is not JSON: {_shorten(data[:200])}",
                              status) from None
    if not isinstance(chunk, dict):
        raise ProviderFailure("malformed", "stream event is not a JSON object", status)
    if chunk.get("error"):
        detail, codes = describe_error_body(data.encode("utf-8"))
        if codes & CONTENT_FILTER_CODES:
            raise _Refused(detail)
        raise ProviderFailure("server_error", f"error in the stream: {detail}", status)
    if isinstance(chunk.get("model"), str) and chunk["model"]:
        state.model = chunk["model"]
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        state.prompt_tokens = _int(usage.get("prompt_tokens")) or state.prompt_tokens
        state.completion_tokens = _int(usage.get("completion_tokens")) or state.completion_tokens
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices:
        return ""  # the usage chunk, or a heartbeat
    choice = choices[0]
    if not isinstance(choice, dict):
        raise ProviderFailure("malformed", "stream choice is not an object", status)
    reason = choice.get("finish_reason")
    if isinstance(reason, str) and reason:
        state.finish_reason = reason
    delta = choice.get("delta")
    if delta is None:
        delta = choice.get("message")  # a few servers repeat the non-stream shape
    if delta is None:
        return ""
    text = _message_text(delta)
    if text is None:
        raise ProviderFailure("malformed", "stream delta has no usable content", status)
    return text


class ReasoningFilter:
    """``strip_reasoning`` on streamed text: drops ``<think>…</think>`` blocks (and the
    whitespace after them) as the pieces arrive; an unclosed block drops the rest."""

    OPEN, CLOSE = "<think>", "</think>"

    def __init__(self) -> None:
        self._held = ""
        self._inside = False
        self._after_close = False

    def feed(self, text: str) -> str:
        text = self._held + text
        self._held = ""
        out: list[str] = []
        while text:
            if self._inside:
                at = text.lower().find(self.CLOSE)
                if at < 0:
                    self._held = _partial_suffix(text, self.CLOSE)
                    return "".join(out)
                text = text[at + len(self.CLOSE):]
                self._inside, self._after_close = False, True
                continue
            if self._after_close:
                text = text.lstrip()
                if not text:
                    return "".join(out)
                self._after_close = False
            at = text.lower().find(self.OPEN)
            if at >= 0:
                out.append(text[:at])
                text = text[at + len(self.OPEN):]
                self._inside = True
                continue
            self._held = _partial_suffix(text, self.OPEN)
            out.append(text[:len(text) - len(self._held)])
            break
        return "".join(out)


    def finish(self) -> str:
        """Text held back because it might have begun a tag (``"<th"`` at the very end)."""
        held, self._held = self._held, ""
        return "" if self._inside else held


def _partial_suffix(text: str, tag: str) -> str:
    """The end of ``text`` that could be the start of ``tag`` (kept until more text comes)."""
    lowered = text.lower()
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(lowered[-size:]):
            return text[-size:]
    return ""


# ---- whole responses ------------------------------------------------------------------------------

def _failure_for_status(provider: Provider, status: int, headers: Mapping[str, str], raw: bytes,
                        content_type: str) -> Exception:
    detail, codes = describe_error_body(raw, content_type)
    if status == 429:
        return ProviderFailure("rate_limited", detail, status, parse_retry_after(headers))
    if status >= 500:
        return ProviderFailure("server_error", detail, status)
    if 400 <= status < 500 and codes & CONTENT_FILTER_CODES:
        return _Refused(f"HTTP {status} {detail}")
    return ProviderFailure("client_error" if 400 <= status < 500 else "http", detail, status)


def _parse_completion(provider: Provider, raw: bytes, status: int) -> Completion:
    """A non-streamed ``chat.completion`` body."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ProviderFailure("malformed", f"not JSON: {_shorten(raw[:200].decode('utf-8', 'replace'))}",
                              status) from None
    if not isinstance(data, dict):
        raise ProviderFailure("malformed", "JSON body is not an object", status)
    if data.get("error"):
        detail, codes = describe_error_body(raw)
        if codes & CONTENT_FILTER_CODES:
            raise _Refused(detail)
        raise ProviderFailure("server_error", f"error in a {status} body: {detail}", status)
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ProviderFailure("empty", "no choices in the response", status)
    choice = choices[0]
    if not isinstance(choice, dict):
        raise ProviderFailure("malformed", "choice is not an object", status)
    finish_reason = choice.get("finish_reason")
    finish_reason = finish_reason if isinstance(finish_reason, str) and finish_reason else "stop"
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    model = data.get("model") if isinstance(data.get("model"), str) and data.get("model") \
        else provider.config.model
    completion = Completion("", finish_reason, provider.name, model,
                            _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")))
    if finish_reason == "content_filter":
        return completion
    text = _message_text(choice.get("message"))
    if text is None:
        raise ProviderFailure("malformed", "choice has no message content", status)
    text = strip_reasoning(text).strip()
    if not text:
        why = "the answer was cut before any text" if finish_reason == "length" else "empty answer"
        raise ProviderFailure("empty", why, status)
    completion.text = text
    return completion


async def _read_body(response: aiohttp.ClientResponse, limit: int = MAX_BODY_BYTES) -> bytes | None:
    """The (rest of the) response body, or None when it is longer than ``limit``."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)

"""A client for OpenAI-compatible chat completions with provider failover and circuit breakers.

The same wire protocol (``POST {base_url}/chat/completions``) is spoken by OpenAI, DeepSeek,
Qwen (DashScope compatible mode), Moonshot, Zhipu, Ollama, vLLM and llama.cpp's server. Providers
are tried in order; a provider that fails (timeout, connection error, 5xx, 429, any other 4xx,
malformed JSON, no answer) hands the question to the next one. Each provider has a circuit
breaker: after N consecutive failures it is skipped for a while, then a single trial request
decides whether it is back (half-open). A 429 with ``Retry-After`` skips it for that long.

``LLMClient.complete`` is safe to cancel: ``asyncio.CancelledError`` propagates unchanged and
leaves every breaker as it was.
"""
from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import aiohttp

from .config import ProviderConfig
from .plaintext import strip_reasoning

log = logging.getLogger("skillbot.llm")

#: Largest response body read from a provider; anything longer is treated as malformed.
MAX_BODY_BYTES = 4 * 1024 * 1024

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
    #               "client_error", "malformed", "empty", "content_filter", "deadline"
    status: int | None = None
    detail: str = ""
    latency: float = 0.0


@dataclass
class Completion:
    """A model's answer.

    text: the answer as the model wrote it (reasoning blocks removed, Markdown kept).
    finish_reason: "stop", "length" (cut at max_tokens) or "content_filter" (refused; ``text``
        is then empty).
    latency: seconds the successful request took; ``elapsed``: seconds for the whole call,
        failed attempts included.
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

    def metrics(self) -> dict[str, Any]:
        """A JSON-friendly summary for logs and metrics."""
        return {
            "provider": self.provider, "model": self.model, "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "latency_ms": round(self.latency * 1000, 1), "elapsed_ms": round(self.elapsed * 1000, 1),
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
                 retry_after: float | None = None) -> None:
        super().__init__(f"{outcome}: {detail}")
        self.outcome = outcome
        self.detail = detail
        self.status = status
        self.retry_after = retry_after


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

    async def complete(self, messages: list[dict[str, str]], deadline: float | None = None, *,
                       timeout: float | None = None) -> Completion:
        """Get an answer for ``messages`` (OpenAI chat format).

        deadline: an absolute ``time.monotonic()`` value after which no provider is tried and a
            running request is abandoned; ``timeout``: the same in seconds from now. Without
            either the client's ``total_timeout`` applies. Each request is also bounded by its
            provider's own ``timeout``.

        Raises ``NoProviderConfigured`` or ``AllProvidersFailed`` (both ``LLMError``).
        """
        if not self.chain:
            raise NoProviderConfigured("no LLM provider is configured")
        started = time.monotonic()
        end = started + self.total_timeout if deadline is None else deadline
        if timeout is not None:
            end = min(end, started + timeout)
        attempts: list[Attempt] = []
        for provider in self.chain:
            if not provider.breaker.allow():
                attempts.append(Attempt(provider.name, "skipped",
                                        detail=f"circuit open for {provider.breaker.retry_in:.1f}s"))
                continue
            remaining = end - time.monotonic()
            if remaining <= 0:
                provider.breaker.release()
                attempts.append(Attempt(provider.name, "deadline", detail="no time left"))
                break
            limit = min(provider.config.timeout, remaining)
            request_started = time.monotonic()
            try:
                completion = await self._request(provider, messages, limit)
            except ProviderFailure as failure:
                latency = time.monotonic() - request_started
                attempts.append(Attempt(provider.name, failure.outcome, failure.status,
                                        failure.detail, latency))
                self._record_failure(provider, failure, cut_short=limit < provider.config.timeout)
                continue
            except BaseException:
                # Cancellation (or a bug): leave the breaker as it was and let it propagate.
                provider.breaker.release()
                raise
            provider.breaker.success()
            completion.latency = time.monotonic() - request_started
            completion.elapsed = time.monotonic() - started
            attempts.append(Attempt(provider.name, "ok" if not completion.filtered
                                    else "content_filter", 200, latency=completion.latency))
            completion.attempts = attempts
            log.info("llm answer from %s (%s): finish=%s tokens=%d+%d latency=%.0fms",
                     provider.name, completion.model, completion.finish_reason,
                     completion.prompt_tokens, completion.completion_tokens,
                     completion.latency * 1000)
            return completion
        summary = ", ".join(f"{a.provider}: {a.outcome}" for a in attempts) or "none tried"
        raise AllProvidersFailed(f"no LLM provider answered ({summary})", attempts)

    def _record_failure(self, provider: Provider, failure: ProviderFailure, cut_short: bool) -> None:
        name = provider.name
        if failure.outcome == "rate_limited" and failure.retry_after is not None:
            wait = min(failure.retry_after, self.max_retry_after)
            provider.breaker.open_for(wait)
            log.warning("llm provider %s: rate limited (429), skipping it for %.1fs: %s",
                        name, wait, failure.detail)
            return
        if failure.outcome == "timeout" and cut_short:
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

    async def _request(self, provider: Provider, messages: list[dict[str, str]],
                       limit: float) -> Completion:
        config = provider.config
        body: dict[str, Any] = {"model": config.model, "messages": messages, "stream": False,
                                "temperature": config.temperature}
        if config.max_tokens:
            body["max_tokens"] = config.max_tokens
        body.update(config.extra_body)
        headers = {"Accept": "application/json"}
        if provider.api_key:
            headers["Authorization"] = f"Bearer {provider.api_key}"
        try:
            async with asyncio.timeout(limit):
                async with self.session.post(config.url, json=body, headers=headers,
                                             timeout=aiohttp.ClientTimeout(total=limit + 1.0),
                                             allow_redirects=False) as response:
                    raw = await _read_body(response)
                    status = response.status
                    response_headers = response.headers
                    content_type = response.content_type
        except TimeoutError:
            raise ProviderFailure("timeout", f"no answer within {limit:.1f}s") from None
        except aiohttp.ClientError as exc:
            raise ProviderFailure("connection", f"{type(exc).__name__}: {exc}") from None
        if raw is None:
            raise ProviderFailure("malformed", f"response body over {MAX_BODY_BYTES} bytes", status)
        if 200 <= status < 300:
            return self._parse_success(provider, raw, status)
        detail, codes = describe_error_body(raw, content_type)
        if status == 429:
            raise ProviderFailure("rate_limited", detail, status, parse_retry_after(response_headers))
        if status >= 500:
            raise ProviderFailure("server_error", detail, status)
        if 400 <= status < 500 and codes & CONTENT_FILTER_CODES:
            log.info("llm provider %s refused the input (HTTP %s %s)", provider.name, status, detail)
            return Completion("", "content_filter", provider.name, config.model)
        raise ProviderFailure("client_error" if 400 <= status < 500 else "http", detail, status)

    def _parse_success(self, provider: Provider, raw: bytes, status: int) -> Completion:
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
                return Completion("", "content_filter", provider.name, provider.config.model)
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


async def _read_body(response: aiohttp.ClientResponse) -> bytes | None:
    """The response body, or None when it is longer than ``MAX_BODY_BYTES``."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(65536):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)

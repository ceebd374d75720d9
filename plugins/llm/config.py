"""Settings of the LLM fallback: ``[plugins.llm]`` in settings.toml.

Providers are a list of tables, tried in order::

    [[plugins.llm.providers]]
    name = "deepseek"
    base_url = "https://api.deepseek.com/v1"
    model = "deepseek-chat"
    api_key_env = "DEEPSEEK_API_KEY"

Everything the bot says (persona aside) lives in ``templates/``; an operator overrides a template
by putting a file of the same name in the override folder.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from core import from_table

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ProviderConfig:
    """One OpenAI-compatible chat completions endpoint.

    name: a short label for logs and metrics (unique within the list).
    base_url: the API root that ``/chat/completions`` is appended to (``…/v1``); a URL that
        already ends in ``/chat/completions`` is used as is.
    model: the model name the provider expects.
    api_key_env: the environment variable holding the API key (sent as ``Authorization:
        Bearer``); empty for servers without authentication (Ollama, llama.cpp, local vLLM).
    temperature / max_tokens: sampling settings sent with each request; ``max_tokens = 0``
        leaves the field out (the provider's default applies).
    timeout: seconds a request may take to its first text, and (streamed) between two pieces of
        it; the whole answer is bounded by ``Config.total_timeout``.
    extra_body: extra JSON fields merged into each request (``{enable_thinking = false}``).
    stream: ask for a streamed answer (server-sent events); false for a server that cannot
        stream (one that answers a stream request with a plain JSON body works either way).
    vision: the model understands images: image messages are sent to it (``image_url`` parts).
    """

    name: str
    base_url: str
    model: str
    api_key_env: str = ""
    temperature: float = 0.7
    max_tokens: int = 800
    timeout: float = 20.0
    extra_body: dict[str, Any] = field(default_factory=dict)
    stream: bool = True
    vision: bool = False

    @property
    def url(self) -> str:
        base = self.base_url.rstrip("/")
        if base.endswith("/chat/completions"):
            return base
        return base + "/chat/completions"

    @classmethod
    def from_table(cls, table: Any, index: int = 0) -> "ProviderConfig":
        """Build and check one ``[[plugins.llm.providers]]`` table; errors name the key."""
        return from_table(cls, table, f"providers[{index}]")

    def validate(self) -> None:
        """Checks beyond the types (which the core's settings loader already enforces)."""
        for key in ("name", "base_url", "model"):
            if not getattr(self, key).strip():
                raise ValueError(f"{key}: required, a non-empty string")
        if not _NAME.match(self.name):
            raise ValueError("name: 1 to 64 letters, digits, '_', '-' or '.'")
        parts = urlsplit(self.base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("base_url: expected an http(s) URL")
        if self.api_key_env and not _ENV_NAME.match(self.api_key_env):
            raise ValueError("api_key_env: expected the name of an environment variable (put the "
                             "key itself in the environment, not in settings)")
        if not 0 <= self.temperature <= 2:
            raise ValueError("temperature: a number from 0 to 2")
        if self.max_tokens < 0:
            raise ValueError("max_tokens: a whole number >= 0 (0 = provider default)")
        if self.timeout <= 0:
            raise ValueError("timeout: a number of seconds > 0")
        reserved = {"model", "messages", "stream"} & set(self.extra_body)
        if reserved:
            raise ValueError(f"extra_body: may not set {sorted(reserved)[0]!r}")


@dataclass(frozen=True)
class AnswerCacheConfig:
    """``[plugins.llm.answer_cache]``: repeated questions answered from a TTL cache (opt-in).

    enabled: off by default; on, a question with no personal context (``answer_cache.py`` says
        which) whose normal form was answered within ``ttl_seconds`` gets that answer again
        without a model call.
    ttl_seconds: how long an answer is reused (it may be as old as this).
    max_entries: answers kept in this process's memory (the oldest go first); with the Redis
        state backend the answers are shared by every worker and expire after ``ttl_seconds``.
    max_chars: longer answers are not kept.
    """

    enabled: bool = False
    ttl_seconds: float = 3600.0
    max_entries: int = 1000
    max_chars: int = 4000

    def validate(self) -> None:
        if not 1 <= self.ttl_seconds <= 7 * 86400:
            raise ValueError("ttl_seconds: a number of seconds from 1 to 604800 (7 days)")
        if not 1 <= self.max_entries <= 1_000_000:
            raise ValueError("max_entries: a whole number from 1 to 1000000")
        if self.max_chars < 1:
            raise ValueError("max_chars: a whole number >= 1")


@dataclass
class Config:
    #: OpenAI-compatible endpoints tried in order (see ``ProviderConfig``). Empty: no model; the
    #: fallback answers with templates/no_provider.j2.
    providers: list[ProviderConfig] = field(default_factory=list)
    #: Consecutive failures after which a provider is skipped ...
    circuit_breaker_failures: int = 3
    #: ... for this many seconds; then one trial request decides (half-open).
    circuit_breaker_reset_seconds: float = 30.0
    #: Longest a 429 ``Retry-After`` may keep a provider skipped (guards against odd headers).
    max_retry_after_seconds: float = 600.0
    #: Overall budget in seconds for one answer across all providers tried.
    total_timeout: float = 45.0
    #: History sent to the model: at most this many previous messages (user + assistant) ...
    max_history_turns: int = 10
    #: ... and at most this many characters of them in total.
    max_history_chars: int = 2000
    #: A gap of this many seconds without messages starts a fresh conversation (0 = never).
    history_idle_seconds: float = 1800.0
    #: The system prompt template (templates/ folder; the operator override folder wins).
    system_prompt_template: str = "system_prompt.j2"
    #: Who the bot is, given to the system prompt template.
    persona: str = "你是一个微信公众号里的智能助手，回答简洁、友好、准确，使用简体中文。"
    #: The account's display name for the system prompt ("" leaves it out).
    account_name: str = ""
    #: Messages that clear the user's conversation (matched whole, ignoring surrounding spaces
    #: and a trailing full stop or exclamation mark).
    reset_commands: list[str] = field(default_factory=lambda: ["重新开始", "清除上下文"])
    #: Repeated questions from a TTL cache (``[plugins.llm.answer_cache]``; off by default).
    answer_cache: AnswerCacheConfig = field(default_factory=AnswerCacheConfig)

    def validate(self) -> None:
        self.provider_configs()
        if self.circuit_breaker_failures < 1:
            raise ValueError("circuit_breaker_failures: must be at least 1")
        if self.circuit_breaker_reset_seconds <= 0:
            raise ValueError("circuit_breaker_reset_seconds: must be > 0")
        if self.max_retry_after_seconds <= 0:
            raise ValueError("max_retry_after_seconds: must be > 0")
        if self.total_timeout <= 0:
            raise ValueError("total_timeout: must be > 0")
        if self.max_history_turns < 0:
            raise ValueError("max_history_turns: must be >= 0")
        if self.max_history_chars < 0:
            raise ValueError("max_history_chars: must be >= 0")
        if self.history_idle_seconds < 0:
            raise ValueError("history_idle_seconds: must be >= 0")
        if not self.system_prompt_template.strip():
            raise ValueError("system_prompt_template: a template file name is required")
        if not all(isinstance(c, str) and c.strip() for c in self.reset_commands):
            raise ValueError("reset_commands: every command must be a non-empty string")

    def provider_configs(self) -> list[ProviderConfig]:
        """The provider list, each checked, names unique (raises ``ValueError`` naming the key)."""
        seen: set[str] = set()
        for i, provider in enumerate(self.providers):
            if provider.name in seen:
                raise ValueError(f"providers[{i}].name: already used by an earlier provider")
            seen.add(provider.name)
        return list(self.providers)

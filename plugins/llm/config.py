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
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

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
    timeout: seconds one request may take, connection to last byte.
    extra_body: extra JSON fields merged into each request (``{enable_thinking = false}``).
    """

    name: str
    base_url: str
    model: str
    api_key_env: str = ""
    temperature: float = 0.7
    max_tokens: int = 800
    timeout: float = 20.0
    extra_body: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        base = self.base_url.rstrip("/")
        if base.endswith("/chat/completions"):
            return base
        return base + "/chat/completions"

    @classmethod
    def from_table(cls, table: Any, index: int) -> "ProviderConfig":
        """Build and check one ``[[plugins.llm.providers]]`` table; errors name the key."""
        where = f"providers[{index}]"
        if not isinstance(table, dict):
            raise ValueError(f"{where}: expected a table, got {type(table).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        for key in ("name", "base_url", "model"):
            value = table.get(key)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{where}.{key}: required, a non-empty string")
        name = table["name"].strip()
        if not _NAME.match(name):
            raise ValueError(f"{where}.name: {name!r} may use letters, digits, '_', '-' and '.' only")
        base_url = table["base_url"].strip()
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{where}.base_url: {base_url!r} is not an http(s) URL")
        api_key_env = table.get("api_key_env", "")
        if not isinstance(api_key_env, str):
            raise ValueError(f"{where}.api_key_env: expected a string")
        api_key_env = api_key_env.strip()
        if api_key_env and not _ENV_NAME.match(api_key_env):
            raise ValueError(f"{where}.api_key_env: {api_key_env!r} is not an environment variable "
                             "name (put the key itself in the environment, not in settings)")
        temperature = table.get("temperature", cls.temperature)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
                or not 0 <= temperature <= 2:
            raise ValueError(f"{where}.temperature: a number from 0 to 2")
        max_tokens = table.get("max_tokens", cls.max_tokens)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0:
            raise ValueError(f"{where}.max_tokens: a whole number >= 0 (0 = provider default)")
        timeout = table.get("timeout", cls.timeout)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"{where}.timeout: a number of seconds > 0")
        extra_body = table.get("extra_body", {})
        if not isinstance(extra_body, dict):
            raise ValueError(f"{where}.extra_body: expected a table")
        reserved = {"model", "messages", "stream"} & set(extra_body)
        if reserved:
            raise ValueError(f"{where}.extra_body: may not set {sorted(reserved)[0]!r}")
        return cls(name=name, base_url=base_url, model=table["model"].strip(),
                   api_key_env=api_key_env, temperature=float(temperature), max_tokens=max_tokens,
                   timeout=float(timeout), extra_body=dict(extra_body))


@dataclass
class Config:
    #: OpenAI-compatible endpoints tried in order (see ``ProviderConfig``). Empty: no model; the
    #: fallback answers with templates/no_provider.j2.
    providers: list[dict[str, Any]] = field(default_factory=list)
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
        """The checked provider list (raises ``ValueError`` naming the bad key)."""
        if not isinstance(self.providers, list):
            raise ValueError("providers: expected a list of tables ([[plugins.llm.providers]])")
        result = [ProviderConfig.from_table(table, i) for i, table in enumerate(self.providers)]
        seen: set[str] = set()
        for i, provider in enumerate(result):
            if provider.name in seen:
                raise ValueError(f"providers[{i}].name: {provider.name!r} is used twice")
            seen.add(provider.name)
        return result

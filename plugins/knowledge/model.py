"""Asking the configured model for a grounded answer: the llm plugin's providers (``[plugins.llm]``,
read through ``bot.configs``), tried in order over the OpenAI-compatible chat protocol on the bot's
shared HTTP session, within one overall timeout.

Kept small on purpose: the knowledge skill needs one answer from the first provider that gives
one; failover policy, circuit breakers and conversation history stay the llm plugin's business.
"""
from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass
class ModelAnswer:
    text: str
    provider: str
    finish_reason: str


class ModelUnavailable(Exception):
    """No provider answered in time (each provider's failure is in the message)."""


_THINKING = re.compile(r"<think>.*?</think>", re.S)
_MARKUP = ((re.compile(r"^\s{0,3}#{1,6}\s*", re.M), ""), (re.compile(r"\*\*(.+?)\*\*"), r"\1"),
           (re.compile(r"`([^`]*)`"), r"\1"), (re.compile(r"^\s*[-*]\s+", re.M), "- "))


def plain_text(text: str) -> str:
    """A model's Markdown as WeChat plain text: no reasoning block, headings, bold or code marks."""
    text = _THINKING.sub("", text)
    for pattern, repl in _MARKUP:
        text = pattern.sub(repl, text)
    return text.strip()


async def ask_model(session: Any, providers: list[Any], messages: list[dict[str, str]],
                    timeout: float) -> ModelAnswer:
    deadline = time.monotonic() + timeout
    errors = []
    for provider in providers:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        headers = {}
        key = os.environ.get(provider.api_key_env, "") if provider.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        body: dict[str, Any] = {"model": provider.model, "messages": messages, "stream": False,
                                "temperature": provider.temperature, **dict(provider.extra_body)}
        if provider.max_tokens:
            body["max_tokens"] = provider.max_tokens
        try:
            async with session.post(provider.url, json=body, headers=headers,
                                    timeout=aiohttp.ClientTimeout(total=min(remaining, provider.timeout))) as resp:
                if resp.status != 200:
                    errors.append(f"{provider.name}: HTTP {resp.status}")
                    continue
                data = await resp.json(content_type=None)
            choice = data["choices"][0]
            text = plain_text(str(choice["message"]["content"] or ""))
            reason = str(choice.get("finish_reason") or "")
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError, IndexError, TypeError) as exc:
            errors.append(f"{provider.name}: {type(exc).__name__}")
            continue
        if reason == "content_filter" or not text:
            errors.append(f"{provider.name}: {reason or 'empty answer'}")
            continue
        return ModelAnswer(text, provider.name, reason)
    raise ModelUnavailable("; ".join(errors) or "no time left")

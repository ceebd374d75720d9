"""Model assist for close FAQ calls: one short chat completion asking which entry, if any.

The model is the one the operator configured for the llm plugin (``[[plugins.llm.providers]]``,
read from ``bot.configs``), asked directly over the bot's HTTP session with a small budget:
providers are tried in order until one answers or the time is up. Only the first number in the
answer counts.
"""
from __future__ import annotations

import asyncio
import os
import re
import time
from typing import Any

import aiohttp


async def ask_model(session: Any, providers: list[Any], prompt: str, timeout: float) -> str:
    """The first provider's answer text within ``timeout`` seconds; raises on failure or timeout."""
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
        body = {"model": provider.model, "messages": [{"role": "user", "content": prompt}],
                "temperature": 0, "max_tokens": 8, **dict(provider.extra_body)}
        try:
            async with session.post(provider.url, json=body, headers=headers,
                                    timeout=aiohttp.ClientTimeout(total=min(remaining, provider.timeout))) as resp:
                if resp.status != 200:
                    errors.append(f"{provider.name}: HTTP {resp.status}")
                    continue
                data = await resp.json(content_type=None)
            return str(data["choices"][0]["message"]["content"] or "")
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError, IndexError, TypeError) as exc:
            errors.append(f"{provider.name}: {type(exc).__name__}")
    raise TimeoutError("; ".join(errors) or "no time left")


def picked_number(text: str) -> int:
    """The first number in the model's answer (-1 when there is none)."""
    digits = re.findall(r"\d+", text or "")
    return int(digits[0]) if digits else -1

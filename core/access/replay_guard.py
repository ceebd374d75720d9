"""Replay guard: each signed query string (timestamp, nonce, signature) carries one message.

WeChat's signature covers only the timestamp and nonce, not the body, so a captured query string
would otherwise carry any body for the whole timestamp window. The first message seen with a query
is remembered (as a digest) for the window; the same query with another message is a replay, the
same query with the same message a retry.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol

from ..state.expiring import ExpiringDict


class SignedQueryStore(Protocol):
    async def first_message(self, query_key: str, digest: str, ttl: float) -> str:
        """Remember ``digest`` for ``query_key`` unless one is remembered; returns the one kept."""


def signed_query_key(query: Any) -> str:
    return f"{query.get('timestamp', '')}:{query.get('nonce', '')}:{query.get('signature', '')}"


def message_digest(fields: dict[str, Any]) -> str:
    """The message's identity: its parsed (and decrypted) fields, so a retry that WeChat encrypts
    again, or whose XML differs only in layout, is the same message."""
    text = json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def remember_seconds(timestamp_window: int) -> float:
    """How long a query is remembered: a timestamp up to the window ahead of our clock stays valid
    until a window behind it, so twice the window; 600 s when the timestamp check is off."""
    return 2.0 * timestamp_window if timestamp_window > 0 else 600.0


class MemorySignedQueryStore:
    """One process's signed queries (bounded: WeChat's own traffic, as forgeries fail the signature)."""

    def __init__(self, ttl: float, max_entries: int = 200_000) -> None:
        self._seen: ExpiringDict[str, str] = ExpiringDict(maxsize=max_entries, ttl=ttl)

    async def first_message(self, query_key: str, digest: str, ttl: float) -> str:
        return self._seen.setdefault(query_key, digest)

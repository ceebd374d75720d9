"""Named caches for skills (FAQ answers, forecasts) behind one async interface.

The memory backend is cachetools' TTLCache: bounded, least recently read dropped first when full,
so a skill's popular entries stay (the per-message records use the cheaper
core/state/expiring.py, which drops the entry set longest ago); the Redis backend keeps
the same interface so a skill never knows which one it has. Values must be JSON-serialisable (dicts, lists, strings,
numbers) so every backend can store them.
"""
from __future__ import annotations

import time
from typing import Any, Protocol

from cachetools import TTLCache


class Cache(Protocol):
    name: str

    async def get(self, key: str) -> Any | None: ...
    async def set(self, key: str, value: Any, ttl: float | None = None) -> None: ...
    async def delete(self, key: str) -> None: ...


class MemoryCache:
    """A bounded TTL cache. ``ttl`` passed to ``set`` overrides the default for that entry."""

    def __init__(self, name: str, maxsize: int = 1024, ttl: float = 600) -> None:
        self.name = name
        self.ttl = ttl
        self._data: TTLCache[str, tuple[float, Any]] = TTLCache(maxsize=maxsize, ttl=ttl)
        self.hits = 0
        self.misses = 0

    async def get(self, key: str) -> Any | None:
        item = self._data.get(key)
        if item is None or item[0] < time.monotonic():
            self.misses += 1
            return None
        self.hits += 1
        return item[1]

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        expires = time.monotonic() + (self.ttl if ttl is None else ttl)
        self._data[key] = (expires, value)

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)

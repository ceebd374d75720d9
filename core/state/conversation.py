"""Per-user conversation memory: recent turns plus a small slot dict skills use for follow-ups."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from .expiring import ExpiringDict


@dataclass
class Turn:
    role: str  # "user" or "assistant"
    text: str
    at: float = field(default_factory=time.time)
    plugin: str | None = None
    intent: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ConversationStore(Protocol):
    """What every backend (memory, Redis) provides. All methods are async."""

    async def history(self, user: str) -> list[Turn]: ...
    async def append(self, user: str, *turns: Turn) -> None: ...
    async def clear(self, user: str) -> None: ...
    async def slots(self, user: str) -> dict[str, Any]: ...
    async def update_slots(self, user: str, **values: Any) -> None: ...


def trim_turns(turns: list[Turn], max_turns: int, max_chars: int) -> list[Turn]:
    """Keep the newest turns within both bounds (a turn is one message, user or assistant)."""
    turns = turns[-max_turns:] if max_turns > 0 else []
    total = 0
    kept: list[Turn] = []
    for turn in reversed(turns):
        total += len(turn.text)
        if total > max_chars and kept:
            break
        kept.append(turn)
    kept.reverse()
    return kept


class MemoryConversationStore:
    """In-process backend: a cachetools TTL cache, so idle users expire and memory stays bounded."""

    def __init__(self, max_turns: int = 10, max_chars: int = 2000, idle_seconds: float = 1800,
                 max_users: int = 100_000) -> None:
        self.max_turns = max_turns
        self.max_chars = max_chars
        self._users: ExpiringDict[str, dict[str, Any]] = ExpiringDict(maxsize=max_users, ttl=idle_seconds)

    def _record(self, user: str) -> dict[str, Any]:
        record = self._users.get(user)
        if record is None:
            record = {"turns": [], "slots": {}}
        self._users[user] = record  # re-insert: refreshes the idle timer
        return record

    async def history(self, user: str) -> list[Turn]:
        record = self._users.get(user)
        return list(record["turns"]) if record else []

    async def append(self, user: str, *turns: Turn) -> None:
        record = self._record(user)
        record["turns"] = trim_turns(record["turns"] + list(turns), self.max_turns, self.max_chars)

    async def clear(self, user: str) -> None:
        self._users.pop(user, None)

    async def slots(self, user: str) -> dict[str, Any]:
        record = self._users.get(user)
        return dict(record["slots"]) if record else {}

    async def update_slots(self, user: str, **values: Any) -> None:
        self._record(user)["slots"].update(values)

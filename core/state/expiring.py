"""A bounded dict whose entries expire: the memory state's per-message and per-user records.

Every message reads and writes several of these (answer records, the rate limiter's buckets,
the history, the replay guard), so each operation is a few dict operations in C: an entry
expires ``ttl`` seconds after it was last set, and when the dict is full the entry set longest
ago is dropped (reading an entry does not refresh it; setting it again does).
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable, Generic, Iterator, TypeVar

K = TypeVar("K")
V = TypeVar("V")
_MISSING = object()
#: Seconds between two sweeps of expired entries when entries are set.
SWEEP_EVERY = 1.0


class ExpiringDict(Generic[K, V]):
    """At most ``maxsize`` entries, each kept ``ttl`` seconds after it was last set."""

    __slots__ = ("maxsize", "ttl", "timer", "_data", "_swept")

    def __init__(self, maxsize: int, ttl: float, timer: Callable[[], float] = time.monotonic) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.ttl = ttl
        self.timer = timer
        #: key -> (expiry time, value), the entry set longest ago first (so the first to expire).
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()
        #: When entries past their time were last dropped (``_expire``).
        self._swept = float("-inf")

    def get(self, key: K, default: V | None = None) -> V | None:
        entry = self._data.get(key)
        if entry is None:
            return default
        if entry[0] <= self.timer():
            del self._data[key]
            return default
        return entry[1]

    def __getitem__(self, key: K) -> V:
        value = self.get(key, _MISSING)  # type: ignore[arg-type]
        if value is _MISSING:
            raise KeyError(key)
        return value  # type: ignore[return-value]

    def __contains__(self, key: object) -> bool:
        return self.get(key, _MISSING) is not _MISSING  # type: ignore[arg-type]

    def __setitem__(self, key: K, value: V) -> None:
        now = self.timer()
        data = self._data
        if key in data:
            data.move_to_end(key)
        data[key] = (now + self.ttl, value)
        # An expired entry is never returned (``get`` checks its time): dropping them when an
        # entry is set is for the memory, so it need not scan on every message.
        self._expire(now, SWEEP_EVERY)

    def setdefault(self, key: K, default: V) -> V:
        found = self.get(key, _MISSING)  # type: ignore[arg-type]
        if found is not _MISSING:
            return found  # type: ignore[return-value]
        self[key] = default
        return default

    def pop(self, key: K, default: V | None = None) -> V | None:
        entry = self._data.pop(key, None)
        if entry is None or entry[0] <= self.timer():
            return default
        return entry[1]

    def __delitem__(self, key: K) -> None:
        if self.pop(key, _MISSING) is _MISSING:  # type: ignore[arg-type]
            raise KeyError(key)

    def _expire(self, now: float, every: float = 0.0) -> None:
        """Drop the entries over ``maxsize`` and those past their time; the latter at most once
        per ``every`` seconds."""
        data = self._data
        while len(data) > self.maxsize:
            data.popitem(last=False)
        if now - self._swept < every:
            return
        self._swept = now
        while data:
            first = next(iter(data.values()))
            if first[0] > now:
                return
            data.popitem(last=False)

    def __len__(self) -> int:
        self._expire(self.timer())
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        self._expire(self.timer())
        return iter(list(self._data))

    def clear(self) -> None:
        self._data.clear()

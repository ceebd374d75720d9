"""The memory state's bounded expiring dict (core/state/expiring.py)."""
import pytest

from core.state.expiring import ExpiringDict


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_expires_ttl_seconds_after_it_was_last_set():
    clock = Clock()
    d = ExpiringDict(maxsize=10, ttl=5, timer=clock)
    d["a"] = 1
    clock.now += 4
    assert d.get("a") == 1 and d["a"] == 1 and "a" in d
    d["a"] = 2  # set again: kept another 5 s
    clock.now += 4
    assert d.get("a") == 2
    clock.now += 1
    assert d.get("a") is None and d.get("a", "x") == "x" and "a" not in d
    with pytest.raises(KeyError):
        d["a"]
    assert len(d) == 0


def test_reading_does_not_refresh_and_expired_entries_are_dropped_when_others_are_set():
    clock = Clock()
    d = ExpiringDict(maxsize=10, ttl=5, timer=clock)
    d["old"] = 1
    clock.now += 3
    d["new"] = 2
    assert d.get("old") == 1
    clock.now += 2.5
    d["newest"] = 3
    assert list(d) == ["new", "newest"] and len(d) == 2


def test_when_full_the_entry_set_longest_ago_goes():
    d = ExpiringDict(maxsize=3, ttl=60, timer=Clock())
    for key in "abc":
        d[key] = key
    d["a"] = "again"  # now the latest
    d["d"] = "d"
    assert list(d) == ["c", "a", "d"]
    assert d.get("b") is None and d.get("a") == "again"


def test_setdefault_pop_and_delete():
    clock = Clock()
    d = ExpiringDict(maxsize=10, ttl=5, timer=clock)
    assert d.setdefault("q", "first") == "first"
    assert d.setdefault("q", "second") == "first"
    clock.now += 6
    assert d.setdefault("q", "third") == "third"  # the first expired: a new entry
    assert d.pop("q") == "third" and d.pop("q") is None and d.pop("q", 0) == 0
    d["r"] = 1
    clock.now += 6
    assert d.pop("r", "gone") == "gone"  # expired: as if absent
    d["s"] = 1
    del d["s"]
    with pytest.raises(KeyError):
        del d["s"]
    d["t"] = 1
    d.clear()
    assert len(d) == 0

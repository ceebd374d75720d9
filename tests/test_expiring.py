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


def test_setting_sweeps_expired_entries_at_most_once_per_interval_and_never_returns_them():
    from core.state.expiring import SWEEP_EVERY

    clock = Clock()
    d = ExpiringDict(maxsize=10, ttl=SWEEP_EVERY / 5, timer=clock)
    d["old1"], d["old2"] = 1, 2  # the first set sweeps (nothing to drop)
    clock.now += SWEEP_EVERY / 2
    d["mid"] = 3  # both old entries expired, but the last sweep was under SWEEP_EVERY ago...
    assert list(d._data) == ["old1", "old2", "mid"]
    assert d.get("old1") is None and "old2" not in d and d.get("mid") == 3  # ...and never returned
    clock.now += SWEEP_EVERY / 2
    d["new"] = 4  # SWEEP_EVERY after the last sweep: every expired entry leaves the storage
    assert list(d._data) == ["new"] and len(d) == 1


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


# ---- against cachetools' TTLCache, which it replaced ---------------------------------------------

def _differential_run(seed: int, maxsize: int, keys: int, steps: int):
    """The same random operations on an ExpiringDict and a TTLCache with one fake clock; yields
    (operation, ExpiringDict's answer, TTLCache's answer)."""
    import random

    from cachetools import TTLCache

    rng = random.Random(seed)
    now = [0.0]
    ours, theirs = ExpiringDict(maxsize, 10, timer=lambda: now[0]), TTLCache(maxsize, 10, timer=lambda: now[0])
    for step in range(steps):
        key, op = f"k{rng.randrange(keys)}", rng.choice(
            ["set", "set", "get", "get", "contains", "setdefault", "pop", "del", "len", "iter", "tick", "tick"])
        if op == "tick":
            now[0] += rng.choice([0.5, 1, 3, 9.999, 10, 10.001])
            continue
        answers = []
        for store in (ours, theirs):
            try:
                if op == "set":
                    store[key] = step
                    answers.append(None)
                elif op == "get":
                    answers.append(store.get(key, "none"))
                elif op == "contains":
                    answers.append(key in store)
                elif op == "setdefault":
                    answers.append(store.setdefault(key, step))
                elif op == "pop":
                    answers.append(store.pop(key, "none"))
                elif op == "del":
                    del store[key]
                    answers.append("deleted")
                elif op == "len":
                    answers.append(len(store) if store is ours else sum(1 for _ in store))
                else:
                    answers.append(sorted(store))
            except KeyError:
                answers.append("KeyError")
        yield op, answers[0], answers[1]


def test_it_answers_as_ttlcache_did_while_not_full():
    """Every use site (answer records, queues, streams, buckets, history, replay guard, caches,
    explanations) reads and writes through get, [], in, setdefault, pop, del, len and iteration:
    while the dict is not full, each answers exactly as TTLCache did (expiry ttl after the last
    set, at the same instant; reads do not refresh; an expired key is absent everywhere)."""
    for seed in range(5):
        for op, ours, theirs in _differential_run(seed, maxsize=1000, keys=12, steps=3000):
            assert ours == theirs, (seed, op)


def test_when_full_it_drops_the_entry_set_longest_ago_where_ttlcache_dropped_the_least_used():
    """The one difference: TTLCache evicted the least recently *used* entry, this drops the one
    *set* longest ago (the first to expire anyway) even if it was just read. The state's records
    are set again when they must stay (a record per try, a history per turn, a bucket per
    message) and sized far above one process's traffic within their ttl (100,000); in the named
    caches (FAQ, model answers, weather, media ids) a full cache now drops its oldest answer
    rather than its least-read one: fewer hits for an old popular entry, which is made again,
    never a wrong one (llm's max_entries already documents "the oldest go first")."""
    from cachetools import TTLCache

    now = [0.0]
    ours, theirs = ExpiringDict(2, 10, timer=lambda: now[0]), TTLCache(2, 10, timer=lambda: now[0])
    for store in (ours, theirs):
        store["a"], store["b"] = 1, 2
        assert store["a"] == 1  # read: TTLCache's most recently used
        store["c"] = 3
    assert ("a" in ours, "b" in ours) == (False, True)
    assert ("a" in theirs, "b" in theirs) == (True, False)
    differing = [op for seed in range(3)
                 for op, a, b in _differential_run(seed, maxsize=4, keys=12, steps=2000) if a != b]
    assert differing  # (the run above reaches the difference, so the first test's agreement means something)


async def test_the_skills_named_memory_cache_keeps_the_entry_read_recently_when_full():
    """bot.cache in memory (core/state/cache.py) drops the least recently read entry when full,
    so a skill's popular entries stay; the per-message records' ExpiringDict drops the one set
    longest ago instead."""
    from core.state.cache import MemoryCache

    cache = MemoryCache("t", maxsize=2, ttl=60)
    await cache.set("popular", 1)
    await cache.set("other", 2)
    assert await cache.get("popular") == 1  # read: now the most recently used
    await cache.set("new", 3)  # full: "other" goes, not "popular"
    assert await cache.get("popular") == 1 and await cache.get("other") is None and await cache.get("new") == 3

"""Forecasts with a cache, one upstream call per question in flight, and stale-on-error.

Cache layout (both caches come from ``bot.cache`` and hold JSON values)::

    weather        "<place key>|now"         -> {"fetched_at": ts, "source": ..., "data": {...}}
    weather        "<place key>|2026-11-28"  -> the same for one day
    weather_stale  the same keys, kept for ``stale_ttl``: the last good answer

One upstream answer usually holds current conditions and every forecast day, so each fetch
stores all of them: asking about tomorrow after today costs no second call.

Single flight: concurrent questions that miss the cache for the same (place, mode) share one
asyncio task, so twenty people asking "北京明天天气" at once cause one upstream call. The task
re-checks the cache before calling out, closing the gap between a miss and a finished fetch.

Every fetch is bounded by ``timeout``. When it fails the last good value is served with its
age; with none the caller apologises. Exceptions never reach the user.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Callable

from .providers import Forecast, WeatherProvider

log = logging.getLogger("skillbot.weather")

NOW = "now"


@dataclass(frozen=True)
class Spot:
    """Where to ask about: a cache key, a label for the reply and coordinates."""

    key: str
    name: str
    lat: float
    lon: float

    @classmethod
    def at(cls, lat: float, lon: float, name: str = "") -> "Spot":
        return cls(key=f"{lat:.2f},{lon:.2f}", name=name, lat=lat, lon=lon)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name, "lat": self.lat, "lon": self.lon}

    @classmethod
    def from_dict(cls, data: Any) -> "Spot | None":
        if not isinstance(data, dict):
            return None
        try:
            return cls(key=str(data["key"]), name=str(data.get("name") or ""),
                       lat=float(data["lat"]), lon=float(data["lon"]))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass
class Report:
    """What the service could find for one spot."""

    spot: Spot
    current: dict[str, Any] | None = None
    days: list[dict[str, Any]] = field(default_factory=list)
    #: Requested days the provider had no data for.
    missing: list[str] = field(default_factory=list)
    #: Seconds since the oldest stale value used, or None when everything is fresh.
    stale_age: float | None = None
    failed: bool = False  # the upstream call failed (stale data may still be there)

    @property
    def empty(self) -> bool:
        return self.current is None and not self.days


class WeatherService:
    def __init__(self, provider: WeatherProvider, cache: Any, stale_cache: Any, *,
                 timeout: float = 2.5, cache_ttl: float = 600, stale_ttl: float = 21600,
                 now: Callable[[], datetime] | None = None) -> None:
        from .dates import china_now
        self.provider = provider
        self.cache = cache
        self.stale = stale_cache
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self.stale_ttl = stale_ttl
        self.now = now or china_now
        self._inflight: dict[tuple[str, str], asyncio.Task] = {}

    @staticmethod
    def cache_key(spot: Spot, part: str) -> str:
        return f"{spot.key}|{part}"

    async def report(self, spot: Spot, days: list[date], current: bool = False) -> Report:
        parts = ([NOW] if current else []) + [d.isoformat() for d in days]
        values: dict[str, Any] = {}
        for part in parts:
            values[part] = await self.cache.get(self.cache_key(spot, part))
        missing = [p for p in parts if values[p] is None]
        result = Report(spot=spot)
        if missing:
            mode = NOW if NOW in missing else "days"
            try:
                fetched = await self._shared_fetch(spot, mode, missing)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure becomes stale data or an apology
                log.warning("weather fetch failed for %s (%s): %s", spot.key, self.provider.name, exc)
                fetched = {}
                result.failed = True
            values.update({k: v for k, v in fetched.items() if k in values})
            for part in parts:
                if values[part] is None and not result.failed:
                    # a flight started by another question may have stored it
                    values[part] = await self.cache.get(self.cache_key(spot, part))
                if values[part] is None:
                    values[part] = await self.stale.get(self.cache_key(spot, part))
                    if values[part] is not None:
                        age = max(0.0, self.now().timestamp() - float(values[part]["fetched_at"]))
                        result.stale_age = max(result.stale_age or 0.0, age)
        for part in parts:
            value = values[part]
            if value is None:
                if part != NOW:
                    result.missing.append(part)
            elif part == NOW:
                result.current = value["data"]
            else:
                result.days.append(value["data"])
        return result

    async def _shared_fetch(self, spot: Spot, mode: str, wanted: list[str]) -> dict[str, Any]:
        key = (spot.key, mode)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fetch_and_store(spot, mode, wanted))
            self._inflight[key] = task

            def done(t: asyncio.Task, key: tuple[str, str] = key) -> None:
                if self._inflight.get(key) is t:
                    del self._inflight[key]
                if not t.cancelled():
                    t.exception()  # mark retrieved even if every waiter went away

            task.add_done_callback(done)
        values = await asyncio.shield(task)
        return values

    async def _fetch_and_store(self, spot: Spot, mode: str, wanted: list[str]) -> dict[str, Any]:
        # Another flight may have filled the cache between our miss and this task starting.
        cached = {part: await self.cache.get(self.cache_key(spot, part)) for part in wanted}
        if all(v is not None for v in cached.values()):
            return cached
        first_day = next((p for p in wanted if p != NOW), None)
        day = None if mode == NOW else date.fromisoformat(first_day) if first_day else None
        async with asyncio.timeout(self.timeout):
            forecast = await self.provider.fetch(spot.lat, spot.lon, day)
        return await self._store(spot, forecast)

    async def _store(self, spot: Spot, forecast: Forecast) -> dict[str, Any]:
        fetched_at = self.now().timestamp()
        entries: dict[str, Any] = {}
        data = forecast.to_dict()
        if data["current"] is not None:
            entries[NOW] = {"fetched_at": fetched_at, "source": forecast.source, "data": data["current"]}
        for day in data["days"]:
            entries[day["date"]] = {"fetched_at": fetched_at, "source": forecast.source, "data": day}
        for part, value in entries.items():
            key = self.cache_key(spot, part)
            await self.cache.set(key, value, ttl=self.cache_ttl)
            await self.stale.set(key, value, ttl=self.stale_ttl)
        return entries

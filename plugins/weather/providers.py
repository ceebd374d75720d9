"""Weather providers behind one interface.

A provider turns coordinates into a ``Forecast``: current conditions (when asked for) and the
daily forecast it has, already normalised (numbers, WMO codes or upstream Chinese texts, wind
sector and Beaufort scale). Words for the user are *not* made here: templates turn codes into
Chinese.

Providers are registered through the contract, not here: the weather plugin adds the hook
``skillbot_weather_providers`` (``hookspecs.py``) and gives its two built-in providers through it;
another plugin adds one the same way::

    class MyPlugin:
        @hookimpl(optionalhook=True)
        def skillbot_weather_providers(self):
            return {"my-provider": MyProvider}   # a WeatherProvider subclass

then ``provider = "my-provider"`` under ``[plugins.weather]`` (docs/weather.md).
"""
from __future__ import annotations

import asyncio
import json
import math
import os
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any, Callable

import aiohttp

MAX_BODY = 1 << 20  # no weather answer is anywhere near 1 MiB


# ---- data -----------------------------------------------------------------------------------

@dataclass
class Current:
    temperature: float | None = None
    code: int | None = None  # WMO weather code (Open-Meteo)
    text: str | None = None  # upstream description (QWeather, already Chinese)
    humidity: float | None = None
    wind_speed_kmh: float | None = None
    wind_sector: int | None = None  # 0 = from the north, 1 = north-east ... 7 = north-west
    wind_dir_text: str | None = None  # upstream wind direction text
    wind_scale: str | None = None  # Beaufort force, "3" or a range "3-4"
    observed: str | None = None  # local time of the observation, ISO


@dataclass
class Daily:
    date: str  # ISO date, local to the place
    code: int | None = None
    text_day: str | None = None
    text_night: str | None = None
    temp_max: float | None = None
    temp_min: float | None = None
    precip_probability: float | None = None  # percent; None when the provider has none
    precip_mm: float | None = None
    wind_speed_kmh: float | None = None
    wind_sector: int | None = None
    wind_dir_text: str | None = None
    wind_scale: str | None = None
    humidity: float | None = None


@dataclass
class Forecast:
    source: str
    current: Current | None = None
    days: list[Daily] = field(default_factory=list)
    timezone: str | None = None

    def day(self, when: date | str) -> Daily | None:
        iso = when if isinstance(when, str) else when.isoformat()
        for d in self.days:
            if d.date == iso:
                return d
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ProviderError(Exception):
    """The provider could not answer: HTTP error, error payload, malformed or empty data."""

    def __init__(self, provider: str, reason: str, status: int | None = None) -> None:
        super().__init__(f"{provider}: {reason}")
        self.provider = provider
        self.reason = reason
        self.status = status


class ProviderTimeout(ProviderError):
    pass


# ---- units ----------------------------------------------------------------------------------

_BEAUFORT_KMH = (1, 6, 12, 20, 29, 39, 50, 62, 75, 89, 103, 118)
_TO_KMH = {"km/h": 1.0, "kmh": 1.0, "m/s": 3.6, "ms": 3.6, "mp/h": 1.609344, "mph": 1.609344,
           "kn": 1.852, "knots": 1.852}


def beaufort(kmh: float | None) -> int | None:
    """Beaufort force (0-12) for a wind speed in km/h."""
    if kmh is None or not math.isfinite(kmh):
        return None
    for force, limit in enumerate(_BEAUFORT_KMH):
        if kmh < limit:
            return force
    return 12


def wind_sector(degrees: float | None) -> int | None:
    """Which of 8 compass sectors the wind comes from: 0 north, 1 north-east ... 7 north-west."""
    if degrees is None or not math.isfinite(degrees):
        return None
    return int(((degrees % 360) + 22.5) // 45) % 8


def _num(value: Any) -> float | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    number = _num(value)
    return None if number is None else int(number)


# ---- interface and registry -------------------------------------------------------------------

class WeatherProvider(ABC):
    """Fetches weather for coordinates. Subclasses set ``name`` and implement ``fetch``."""

    name = "provider"

    def __init__(self, config: Any, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.session = session
        self.timeout = float(getattr(config, "timeout", 2.5))
        self.forecast_days = int(getattr(config, "forecast_days", 7))
        self.calls = 0  # upstream requests made (for logs and tests)

    @abstractmethod
    async def fetch(self, lat: float, lon: float, day: date | None = None) -> Forecast:
        """Current conditions plus the daily forecast (``day`` None), or at least ``day``.

        Raise ``ProviderError`` (or let ``asyncio.TimeoutError`` / ``aiohttp.ClientError`` out)
        when there is no usable answer; the caller serves stale data or apologises.
        """

    async def _get_json(self, url: str, params: dict[str, Any],
                        headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """GET and decode JSON within ``timeout``; returns (status, payload)."""
        self.calls += 1
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with self.session.get(url, params=params, headers=headers or {},
                                        timeout=timeout) as resp:
                body = await resp.content.read(MAX_BODY + 1)
                status = resp.status
        except asyncio.TimeoutError:
            raise ProviderTimeout(self.name, f"no answer within {self.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise ProviderError(self.name, f"{type(exc).__name__}: {exc}") from None
        if len(body) > MAX_BODY:
            raise ProviderError(self.name, "response too large", status)
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            if status >= 400:
                raise ProviderError(self.name, f"HTTP {status}", status) from None
            raise ProviderError(self.name, "malformed JSON", status) from None
        return status, payload


ProviderFactory = Callable[[Any, aiohttp.ClientSession], WeatherProvider]


def create_provider(name: str, config: Any, session: aiohttp.ClientSession,
                    factories: dict[str, ProviderFactory]) -> WeatherProvider:
    """The provider ``name`` from ``factories`` (what ``skillbot_weather_providers`` gave)."""
    try:
        factory = factories[name]
    except KeyError:
        raise ValueError(f"unknown weather provider {name!r}; known: {', '.join(sorted(factories))}") \
            from None
    return factory(config, session)


# ---- Open-Meteo -------------------------------------------------------------------------------

class OpenMeteoProvider(WeatherProvider):
    """https://open-meteo.com forecast API: no key; free for non-commercial use (<10,000/day)."""

    name = "open-meteo"
    default_base_url = "https://api.open-meteo.com"
    CURRENT = "temperature_2m,weather_code,wind_speed_10m,wind_direction_10m,relative_humidity_2m"
    DAILY = ("weather_code,temperature_2m_max,temperature_2m_min,precipitation_probability_max,"
             "wind_speed_10m_max,wind_direction_10m_dominant")

    def __init__(self, config: Any, session: aiohttp.ClientSession) -> None:
        super().__init__(config, session)
        self.base_url = (getattr(config, "base_url", "") or self.default_base_url).rstrip("/")

    async def fetch(self, lat: float, lon: float, day: date | None = None) -> Forecast:
        params = {
            "latitude": f"{lat:.4f}", "longitude": f"{lon:.4f}",
            "current": self.CURRENT, "daily": self.DAILY,
            "timezone": "auto", "forecast_days": str(self.forecast_days),
        }
        status, payload = await self._get_json(f"{self.base_url}/v1/forecast", params)
        if not isinstance(payload, dict):
            raise ProviderError(self.name, "unexpected JSON shape", status)
        if status >= 400 or payload.get("error"):
            reason = payload.get("reason") or f"HTTP {status}"
            raise ProviderError(self.name, str(reason), status)
        forecast = Forecast(source=self.name, timezone=payload.get("timezone"))
        forecast.days = self._daily(payload.get("daily"), payload.get("daily_units") or {})
        forecast.current = self._current(payload.get("current"), payload.get("current_units") or {})
        if not forecast.days and forecast.current is None:
            raise ProviderError(self.name, "empty result", status)
        return forecast

    @staticmethod
    def _speed(value: Any, unit: str | None) -> float | None:
        number = _num(value)
        if number is None:
            return None
        return number * _TO_KMH.get((unit or "km/h").lower(), 1.0)

    def _current(self, block: Any, units: dict) -> Current | None:
        if not isinstance(block, dict) or not block:
            return None
        speed = self._speed(block.get("wind_speed_10m"), units.get("wind_speed_10m"))
        force = beaufort(speed)
        current = Current(
            temperature=_num(block.get("temperature_2m")),
            code=_int(block.get("weather_code")),
            humidity=_num(block.get("relative_humidity_2m")),
            wind_speed_kmh=speed,
            wind_sector=wind_sector(_num(block.get("wind_direction_10m"))),
            wind_scale=None if force is None else str(force),
            observed=block.get("time") if isinstance(block.get("time"), str) else None,
        )
        if current.temperature is None and current.code is None:
            return None
        return current

    def _daily(self, block: Any, units: dict) -> list[Daily]:
        if not isinstance(block, dict):
            return []
        times = block.get("time")
        if not isinstance(times, list):
            return []

        def column(name: str) -> list:
            values = block.get(name)
            return values if isinstance(values, list) and len(values) == len(times) else [None] * len(times)

        codes, tmax, tmin = column("weather_code"), column("temperature_2m_max"), column("temperature_2m_min")
        pop, wind = column("precipitation_probability_max"), column("wind_speed_10m_max")
        wdir = column("wind_direction_10m_dominant")
        days = []
        for i, when in enumerate(times):
            if not isinstance(when, str):
                continue
            speed = self._speed(wind[i], units.get("wind_speed_10m_max"))
            force = beaufort(speed)
            d = Daily(date=when, code=_int(codes[i]), temp_max=_num(tmax[i]), temp_min=_num(tmin[i]),
                      precip_probability=_num(pop[i]), wind_speed_kmh=speed,
                      wind_sector=wind_sector(_num(wdir[i])),
                      wind_scale=None if force is None else str(force))
            if d.code is None and d.temp_max is None and d.temp_min is None:
                continue  # a day the model has no data for
            days.append(d)
        return days


# ---- QWeather (和风天气) ------------------------------------------------------------------------

class QWeatherProvider(WeatherProvider):
    """QWeather v7 API. The key comes from the environment variable named by ``api_key_env``.

    New QWeather accounts get a personal API host: put it in ``base_url``. The key is sent in
    the ``X-QW-Api-Key`` header (never in the URL, so it stays out of logs).
    """

    name = "qweather"
    default_base_url = "https://devapi.qweather.com"
    ENDPOINT_DAYS = (3, 7, 10, 15, 30)

    def __init__(self, config: Any, session: aiohttp.ClientSession) -> None:
        super().__init__(config, session)
        self.base_url = (getattr(config, "base_url", "") or self.default_base_url).rstrip("/")
        env = getattr(config, "api_key_env", "QWEATHER_KEY") or "QWEATHER_KEY"
        self.api_key = os.environ.get(env, "")
        if not self.api_key:
            raise ValueError(f"the QWeather provider needs an API key in the environment variable {env}")
        self.days_endpoint = next((n for n in self.ENDPOINT_DAYS if n >= self.forecast_days), 30)

    async def fetch(self, lat: float, lon: float, day: date | None = None) -> Forecast:
        location = f"{lon:.2f},{lat:.2f}"  # QWeather wants longitude first
        if day is None:
            now, daily = await asyncio.gather(self._call("now", location),
                                              self._call(f"{self.days_endpoint}d", location))
        else:
            now, daily = None, await self._call(f"{self.days_endpoint}d", location)
        forecast = Forecast(source=self.name)
        forecast.days = self._daily(daily.get("daily"))
        if now is not None:
            forecast.current = self._current(now.get("now"))
        if not forecast.days and forecast.current is None:
            raise ProviderError(self.name, "empty result")
        return forecast

    async def _call(self, what: str, location: str) -> dict:
        status, payload = await self._get_json(
            f"{self.base_url}/v7/weather/{what}", {"location": location, "lang": "zh"},
            headers={"X-QW-Api-Key": self.api_key})
        if not isinstance(payload, dict):
            raise ProviderError(self.name, "unexpected JSON shape", status)
        error = payload.get("error")
        if isinstance(error, dict):  # error format v2: HTTP status + {"error": {...}}
            raise ProviderError(self.name, f"{error.get('status', status)} {error.get('title', '')}".strip(),
                                status)
        if status >= 400:
            raise ProviderError(self.name, f"HTTP {status}", status)
        code = str(payload.get("code", ""))
        if code != "200":  # error format v1: HTTP 200 + {"code": "401"}; 204 = no data here
            raise ProviderError(self.name, f"code {code or 'missing'}", status)
        return payload

    @staticmethod
    def _current(block: Any) -> Current | None:
        if not isinstance(block, dict) or not block:
            return None
        current = Current(
            temperature=_num(block.get("temp")), text=block.get("text") or None,
            humidity=_num(block.get("humidity")), wind_speed_kmh=_num(block.get("windSpeed")),
            wind_sector=wind_sector(_num(block.get("wind360"))),
            wind_dir_text=block.get("windDir") or None,
            wind_scale=str(block.get("windScale")) if block.get("windScale") not in (None, "") else None,
            observed=block.get("obsTime") if isinstance(block.get("obsTime"), str) else None)
        if current.temperature is None and current.text is None:
            return None
        return current

    @staticmethod
    def _daily(block: Any) -> list[Daily]:
        if not isinstance(block, list):
            return []
        days = []
        for item in block:
            if not isinstance(item, dict) or not isinstance(item.get("fxDate"), str):
                continue
            d = Daily(
                date=item["fxDate"], text_day=item.get("textDay") or None,
                text_night=item.get("textNight") or None, temp_max=_num(item.get("tempMax")),
                temp_min=_num(item.get("tempMin")),
                precip_probability=None,  # the daily forecast has no probability
                precip_mm=_num(item.get("precip")), wind_speed_kmh=_num(item.get("windSpeedDay")),
                wind_sector=wind_sector(_num(item.get("wind360Day"))),
                wind_dir_text=item.get("windDirDay") or None,
                wind_scale=str(item["windScaleDay"]) if item.get("windScaleDay") not in (None, "") else None,
                humidity=_num(item.get("humidity")))
            if d.text_day is None and d.temp_max is None and d.temp_min is None:
                continue
            days.append(d)
        return days


#: The providers the weather plugin brings itself (through ``skillbot_weather_providers``).
BUILT_IN: dict[str, ProviderFactory] = {OpenMeteoProvider.name: OpenMeteoProvider,
                                        QWeatherProvider.name: QWeatherProvider}

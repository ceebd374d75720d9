"""Settings of the weather skill: the ``[plugins.weather]`` table of settings.toml."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Config:
    #: "open-meteo" (no key; free tier is for non-commercial use under 10,000 calls a day),
    #: "qweather" (和风天气, needs a key), or a name another plugin registered.
    provider: str = "open-meteo"
    #: The provider's API root; empty = its public default (https://api.open-meteo.com,
    #: https://devapi.qweather.com). QWeather accounts with a personal API host set it here.
    base_url: str = ""
    #: Environment variable holding the QWeather key (never put the key in settings).
    api_key_env: str = "QWEATHER_KEY"
    #: Seconds one upstream call may take, so the reply fits WeChat's 5-second window.
    timeout: float = 2.5
    #: Seconds a forecast stays fresh in the cache.
    cache_ttl: float = 600
    #: Seconds the last good forecast is kept to answer with when the provider fails.
    stale_ttl: float = 21600
    #: Days of forecast, today included (Open-Meteo allows up to 16, QWeather 3/7/10/15/30).
    forecast_days: int = 7
    #: Entries in each forecast cache.
    cache_size: int = 4096

    def validate(self) -> None:
        if not self.provider:
            raise ValueError("provider must not be empty")
        if not 0 < self.timeout <= 4.5:
            raise ValueError("timeout must be between 0 and 4.5 seconds (WeChat waits 5)")
        if self.cache_ttl < 0 or self.stale_ttl < 0:
            raise ValueError("cache_ttl and stale_ttl must not be negative")
        if not 1 <= self.forecast_days <= 16:
            raise ValueError("forecast_days must be between 1 and 16")
        if self.cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be empty (the provider's default) or an http(s) URL")

"""Weather providers against the local stand-in that speaks Open-Meteo's and QWeather's formats."""
from __future__ import annotations

from datetime import date, timedelta

import aiohttp
import pytest

from core import hookimpl
from plugins.weather.config import Config
from plugins.weather.dates import china_now
from plugins.weather.providers import (
    Daily,
    Forecast,
    OpenMeteoProvider,
    ProviderError,
    ProviderTimeout,
    QWeatherProvider,
    WeatherProvider,
    beaufort,
    create_provider,
    wind_sector,
)
from tests.standins.weather_server import WeatherStandIn

TODAY = date(2025, 11, 26)
KEY = "test-qweather-key"


@pytest.fixture
async def standin(aiohttp_server):
    stand_in = WeatherStandIn(today=TODAY, qweather_key=KEY)
    server = await aiohttp_server(stand_in.app())
    stand_in.base_url = str(server.make_url("")).rstrip("/")
    return stand_in


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def config(standin, **kw) -> Config:
    return Config(base_url=standin.base_url, **kw)


# ---- Open-Meteo -------------------------------------------------------------------------------

async def test_open_meteo_current_and_daily(standin, session):
    provider = OpenMeteoProvider(config(standin), session)
    forecast = await provider.fetch(39.9042, 116.4074)
    assert isinstance(forecast, Forecast) and forecast.source == "open-meteo"
    assert forecast.timezone == "Asia/Shanghai"
    assert len(forecast.days) == 7
    tomorrow = forecast.day(TODAY + timedelta(days=1))
    assert tomorrow.code == 61 and tomorrow.precip_probability == 84
    assert tomorrow.temp_max == 7.1 and tomorrow.temp_min == 2.3
    assert tomorrow.wind_sector == 1 and tomorrow.wind_scale == "4"  # 45°, 22.3 km/h
    now = forecast.current
    assert now.temperature == 8.3 and now.code == 1 and now.humidity == 24
    assert now.wind_sector == 7 and now.wind_scale == "2"  # 326°, 11.2 km/h
    (path, query), = standin.calls
    assert path == "/v1/forecast"
    assert query["timezone"] == "auto" and query["forecast_days"] == "7"
    assert query["latitude"] == "39.9042" and query["longitude"] == "116.4074"
    assert "precipitation_probability_max" in query["daily"] and "temperature_2m" in query["current"]


async def test_open_meteo_forecast_days_setting(standin, session):
    forecast = await OpenMeteoProvider(config(standin, forecast_days=16), session).fetch(31.2, 121.5)
    assert len(forecast.days) == 16
    # the stand-in sends null for the last day's probability, as Open-Meteo does past its models
    assert forecast.days[-1].precip_probability is None


@pytest.mark.parametrize("mode,status,reason", [
    ("error400", 400, "Cannot initialize WeatherVariable"),
    ("ratelimit", 429, "request limit exceeded"),
    ("error500", 500, "HTTP 500"),
    ("malformed", 200, "malformed JSON"),
    ("empty", 200, "empty result"),
])
async def test_open_meteo_failures(standin, session, mode, status, reason):
    standin.mode = mode
    with pytest.raises(ProviderError) as info:
        await OpenMeteoProvider(config(standin), session).fetch(39.9, 116.4)
    assert info.value.status == status
    assert reason in info.value.reason


async def test_open_meteo_timeout(standin, session):
    standin.mode, standin.delay = "slow", 2.0
    with pytest.raises(ProviderTimeout):
        await OpenMeteoProvider(config(standin, timeout=0.2), session).fetch(39.9, 116.4)


async def test_unreachable_provider(session):
    provider = OpenMeteoProvider(Config(base_url="http://127.0.0.1:9", timeout=1.0), session)
    with pytest.raises(ProviderError):
        await provider.fetch(39.9, 116.4)


def test_open_meteo_converts_other_wind_units():
    provider = OpenMeteoProvider.__new__(OpenMeteoProvider)
    days = provider._daily({"time": ["2025-11-26"], "weather_code": [3], "temperature_2m_max": [5],
                            "temperature_2m_min": [1], "wind_speed_10m_max": [10.0],
                            "wind_direction_10m_dominant": [90]},
                           {"wind_speed_10m_max": "m/s"})
    assert days[0].wind_speed_kmh == pytest.approx(36.0)
    assert days[0].wind_scale == "5" and days[0].wind_sector == 2


def test_open_meteo_skips_days_without_data_and_mismatched_columns():
    provider = OpenMeteoProvider.__new__(OpenMeteoProvider)
    days = provider._daily({"time": ["2025-11-26", "2025-11-27"], "weather_code": [None, 2],
                            "temperature_2m_max": [None, 4.0], "temperature_2m_min": [None, -1.0],
                            "precipitation_probability_max": [10]},  # wrong length: ignored
                           {})
    assert [d.date for d in days] == ["2025-11-27"]
    assert days[0].precip_probability is None


# ---- QWeather ---------------------------------------------------------------------------------

@pytest.fixture
def qweather_key(monkeypatch):
    monkeypatch.setenv("SKILLBOT_TEST_QWEATHER_KEY", KEY)
    return "SKILLBOT_TEST_QWEATHER_KEY"


async def test_qweather_now_and_days(standin, session, qweather_key):
    provider = QWeatherProvider(config(standin, provider="qweather", api_key_env=qweather_key), session)
    forecast = await provider.fetch(39.9042, 116.4074)
    assert forecast.current.text == "多云" and forecast.current.temperature == 9
    assert forecast.current.wind_dir_text == "西北风" and forecast.current.wind_scale == "3"
    assert len(forecast.days) == 7
    tomorrow = forecast.day(TODAY + timedelta(days=1))
    assert tomorrow.text_day == "小雨" and tomorrow.text_night == "阴"
    assert tomorrow.precip_probability is None and tomorrow.precip_mm == 2.6
    assert tomorrow.wind_dir_text == "东北风" and tomorrow.wind_scale == "1-3"
    paths = sorted(path for path, _ in standin.calls)
    assert paths == ["/v7/weather/7d", "/v7/weather/now"]
    for _, query in standin.calls:
        assert query["location"] == "116.41,39.90"  # longitude first
        assert "key" not in query  # the key travels in the X-QW-Api-Key header


async def test_qweather_one_day_needs_only_the_daily_call(standin, session, qweather_key):
    provider = QWeatherProvider(config(standin, api_key_env=qweather_key, forecast_days=3), session)
    forecast = await provider.fetch(31.23, 121.47, TODAY + timedelta(days=2))
    assert forecast.current is None and len(forecast.days) == 3
    assert [path for path, _ in standin.calls] == ["/v7/weather/3d"]


@pytest.mark.parametrize("mode,text", [
    ("error400", "code 400"), ("nodata", "code 204"), ("ratelimit", "429"),
    ("error500", "HTTP 500"), ("malformed", "malformed JSON"), ("empty", "empty result"),
])
async def test_qweather_failures(standin, session, qweather_key, mode, text):
    standin.mode = mode
    provider = QWeatherProvider(config(standin, api_key_env=qweather_key), session)
    with pytest.raises(ProviderError) as info:
        await provider.fetch(39.9, 116.4)
    assert text in str(info.value)


async def test_qweather_wrong_key(standin, session, monkeypatch):
    monkeypatch.setenv("SKILLBOT_TEST_QWEATHER_KEY", "not-the-key")
    provider = QWeatherProvider(config(standin, api_key_env="SKILLBOT_TEST_QWEATHER_KEY"), session)
    with pytest.raises(ProviderError) as info:
        await provider.fetch(39.9, 116.4, TODAY)
    assert info.value.status == 401 and "Unauthorized" in info.value.reason


async def test_qweather_needs_a_key(session, monkeypatch):
    monkeypatch.delenv("SKILLBOT_TEST_NO_SUCH_KEY", raising=False)
    with pytest.raises(ValueError, match="SKILLBOT_TEST_NO_SUCH_KEY"):
        QWeatherProvider(Config(provider="qweather", api_key_env="SKILLBOT_TEST_NO_SUCH_KEY"), session)


# ---- registry and units -----------------------------------------------------------------------

class FixedProvider(WeatherProvider):
    """Always the same clear, mild day, whatever is asked."""

    name = "fixed-for-test"

    async def fetch(self, lat, lon, day=None):
        self.calls += 1
        today = china_now().date()
        return Forecast(source=self.name, days=[
            Daily(date=(today + timedelta(days=n)).isoformat(), text_day="测试晴", text_night="测试晴",
                  temp_min=11, temp_max=19) for n in range(7)])


class FixedProviderPlugin:
    """A third-party plugin that brings a weather provider through the weather plugin's hook."""

    @hookimpl(optionalhook=True)
    def skillbot_weather_providers(self):
        return {"fixed-for-test": FixedProvider, "open-meteo": FixedProvider}


async def test_another_plugin_adds_a_provider_through_the_hook(make_bot, caplog):
    settings = {"plugins": {"enabled": ["weather"], "weather": {"provider": "fixed-for-test"}}}
    async with make_bot(settings, plugins={"fixed": FixedProviderPlugin()}) as bot:
        assert bot.pm.hook.skillbot_weather_providers.spec is not None  # added by the weather plugin
        provider = bot.pm.get_plugin("weather").service.provider
        assert isinstance(provider, FixedProvider)
        reply = await bot.send("北京明天天气怎么样")
        assert (reply.plugin, reply.intent) == ("weather", "weather")
        assert "测试晴" in reply.content and provider.calls == 1
    # The built-in name stays the weather plugin's own: the later plugin's is refused, loudly.
    assert "weather provider 'open-meteo' from plugin fixed ignored: plugin weather gave it first" in caplog.text


async def test_unknown_provider_stops_start_up_naming_every_known_one(make_bot):
    settings = {"plugins": {"enabled": ["weather"], "weather": {"provider": "no-such-provider"}}}
    with pytest.raises(RuntimeError, match="weather failed to start"):
        async with make_bot(settings, plugins={"fixed": FixedProviderPlugin()}):
            pass
    factories = {"open-meteo": OpenMeteoProvider}
    with pytest.raises(ValueError, match="unknown weather provider 'x'; known: open-meteo"):
        create_provider("x", Config(), None, factories)


async def test_a_provider_plugin_loads_without_the_weather_plugin(make_bot):
    async with make_bot({"plugins": {"enabled": ["welcome"]}}, plugins={"fixed": FixedProviderPlugin()}) as bot:
        assert (await bot.send_event("subscribe")).plugin == "welcome"


@pytest.mark.parametrize("kmh,force", [(0, 0), (0.9, 0), (5, 1), (11.9, 2), (12, 3), (28, 4),
                                       (38, 5), (49, 6), (61, 7), (74, 8), (88, 9), (102, 10),
                                       (117, 11), (118, 12), (200, 12), (None, None)])
def test_beaufort(kmh, force):
    assert beaufort(kmh) == force


@pytest.mark.parametrize("degrees,sector", [(0, 0), (22, 0), (23, 1), (45, 1), (90, 2), (180, 4),
                                            (270, 6), (315, 7), (338, 0), (360, 0), (-45, 7),
                                            (None, None)])
def test_wind_sector(degrees, sector):
    assert wind_sector(degrees) == sector

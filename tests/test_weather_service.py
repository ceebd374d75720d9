"""Forecast cache, single flight, timeouts and stale-on-error, against the local stand-in."""
from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta

import aiohttp
import pytest

from core.state.cache import MemoryCache
from plugins.weather.config import Config
from plugins.weather.dates import CHINA_TZ
from plugins.weather.providers import OpenMeteoProvider
from plugins.weather.service import Spot, WeatherService
from tests.standins.weather_server import WeatherStandIn

TODAY = date(2025, 11, 26)
BEIJING = Spot(key="110000", name="北京", lat=39.9042, lon=116.4074)
SHANGHAI = Spot(key="310000", name="上海", lat=31.2304, lon=121.4737)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 11, 26, 10, 0, tzinfo=CHINA_TZ)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
async def standin(aiohttp_server):
    stand_in = WeatherStandIn(today=TODAY)
    server = await aiohttp_server(stand_in.app())
    stand_in.base_url = str(server.make_url("")).rstrip("/")
    return stand_in


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def clock():
    return Clock()


def make_service(standin, session, clock, cache_ttl=600.0, timeout=2.0) -> WeatherService:
    config = Config(base_url=standin.base_url, timeout=timeout, cache_ttl=cache_ttl)
    return WeatherService(OpenMeteoProvider(config, session),
                          MemoryCache("weather", 100, cache_ttl), MemoryCache("weather_stale", 100, 21600),
                          timeout=timeout, cache_ttl=cache_ttl, stale_ttl=21600, now=clock)


def days(*offsets: int) -> list[date]:
    return [TODAY + timedelta(days=o) for o in offsets]


async def test_second_question_is_a_cache_hit(standin, session, clock):
    service = make_service(standin, session, clock)
    first = await service.report(BEIJING, days(1))
    second = await service.report(BEIJING, days(1))
    assert first.days == second.days and first.days[0]["code"] == 61
    assert standin.count() == 1
    assert service.cache.hits >= 1


async def test_one_fetch_fills_every_day_and_current(standin, session, clock):
    service = make_service(standin, session, clock)
    await service.report(BEIJING, days(0), current=True)
    later = await service.report(BEIJING, days(2, 3, 4))
    assert [d["date"] for d in later.days] == [d.isoformat() for d in days(2, 3, 4)]
    again = await service.report(BEIJING, days(0), current=True)
    assert again.current["temperature"] == 8.3
    assert standin.count() == 1
    assert later.stale_age is None and not later.failed


async def test_places_are_cached_separately(standin, session, clock):
    service = make_service(standin, session, clock)
    await service.report(BEIJING, days(1))
    await service.report(SHANGHAI, days(1))
    assert standin.count() == 2


async def test_concurrent_identical_questions_make_one_upstream_call(standin, session, clock):
    standin.latency = 0.05  # so the twenty questions overlap the one call for certain
    service = make_service(standin, session, clock)
    reports = await asyncio.gather(*(service.report(BEIJING, days(1)) for _ in range(20)))
    assert standin.count() == 1
    assert all(r.days == reports[0].days and r.days for r in reports)
    assert service._inflight == {}


async def test_concurrent_failures_share_one_call_and_the_next_question_retries(standin, session, clock):
    standin.mode, standin.latency = "error500", 0.05
    service = make_service(standin, session, clock)
    reports = await asyncio.gather(*(service.report(BEIJING, days(1)) for _ in range(10)))
    assert standin.count() == 1
    assert all(r.failed and r.empty for r in reports)
    standin.mode = "ok"
    report = await service.report(BEIJING, days(1))
    assert not report.failed and report.days
    assert standin.count() == 2


async def test_stale_value_is_served_with_its_age_when_the_provider_fails(standin, session, clock):
    service = make_service(standin, session, clock, cache_ttl=0)  # every value expires at once
    fresh = await service.report(BEIJING, days(1))
    assert fresh.stale_age is None
    standin.mode = "error500"
    clock.advance(minutes=25)
    stale = await service.report(BEIJING, days(1))
    assert stale.failed
    assert stale.days == fresh.days
    assert stale.stale_age == pytest.approx(25 * 60)
    assert standin.count() == 2


@pytest.mark.parametrize("mode", ["error400", "malformed", "empty", "ratelimit"])
async def test_every_failure_kind_falls_back_to_stale(standin, session, clock, mode):
    service = make_service(standin, session, clock, cache_ttl=0)
    await service.report(SHANGHAI, days(0), current=True)
    standin.mode = mode
    report = await service.report(SHANGHAI, days(0), current=True)
    assert report.failed and report.current is not None and report.days
    assert report.stale_age is not None


async def test_no_stale_value_means_an_empty_report(standin, session, clock):
    standin.mode = "error500"
    report = await make_service(standin, session, clock).report(BEIJING, days(1))
    assert report.failed and report.empty and report.stale_age is None


async def test_timeout_bounds_the_upstream_call(standin, session, clock):
    standin.mode, standin.delay = "slow", 3.0
    service = make_service(standin, session, clock, timeout=0.2)
    report = await service.report(BEIJING, days(1))
    assert report.failed and report.empty


async def test_day_missing_upstream_is_reported_missing(standin, session, clock):
    service = make_service(standin, session, clock)
    report = await service.report(BEIJING, days(1, 10))  # day 10 is past the 7 the stand-in sends
    assert [d["date"] for d in report.days] == [days(1)[0].isoformat()]
    assert report.missing == [days(10)[0].isoformat()]


def test_spot_round_trip():
    spot = Spot.at(23.12911, 113.264385, "广州")
    assert spot.key == "23.13,113.26"
    assert Spot.from_dict(spot.to_dict()) == spot
    assert Spot.from_dict({"key": "x"}) is None and Spot.from_dict(None) is None

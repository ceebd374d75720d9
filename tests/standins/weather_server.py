"""A local stand-in for the Open-Meteo and QWeather (和风天气) APIs, for tests.

It speaks the real wire formats: the JSON shapes below follow responses recorded from
``api.open-meteo.com/v1/forecast`` and QWeather's ``/v7/weather/now`` and ``/v7/weather/7d``
(values changed, field names, nesting, types and units as sent: Open-Meteo numbers, QWeather
strings). Each response is rebuilt per request so the dates start at the stand-in's ``today``.

Behaviours a test can switch (``standin.mode = ...``):

    "ok"         normal answers
    "error400"   Open-Meteo: HTTP 400 {"error": true, "reason": ...};
                 QWeather: HTTP 200 {"code": "400"} (error format v1)
    "error500"   HTTP 500 with an HTML body (a proxy in front of a failing upstream)
    "ratelimit"  Open-Meteo: HTTP 429 {"error": true, "reason": ...};
                 QWeather: HTTP 429 with error format v2 {"error": {"status": 429, ...}}
    "nodata"     QWeather: {"code": "204"} (no data for this location)
    "malformed"  HTTP 200, a truncated JSON body
    "empty"      HTTP 200, valid JSON with empty daily arrays and no current block
    "slow"       answers after ``delay`` seconds (tests set a shorter client timeout)

QWeather checks the key (``X-QW-Api-Key`` header or ``key`` parameter) like the real service:
a wrong key gets HTTP 401 with error format v2. Every request is recorded in ``calls``.
"""
from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from aiohttp import web

CHINA = timezone(timedelta(hours=8))

# ---- recorded shapes --------------------------------------------------------------------------

OPEN_METEO_FORECAST: dict[str, Any] = {
    "latitude": 39.875,
    "longitude": 116.375,
    "generationtime_ms": 0.08308887481689453,
    "utc_offset_seconds": 28800,
    "timezone": "Asia/Shanghai",
    "timezone_abbreviation": "GMT+8",
    "elevation": 47.0,
    "current_units": {
        "time": "iso8601", "interval": "seconds", "temperature_2m": "°C",
        "weather_code": "wmo code", "wind_speed_10m": "km/h", "wind_direction_10m": "°",
        "relative_humidity_2m": "%",
    },
    "current": {
        "time": "2025-11-26T14:15", "interval": 900, "temperature_2m": 8.3, "weather_code": 1,
        "wind_speed_10m": 11.2, "wind_direction_10m": 326, "relative_humidity_2m": 24,
    },
    "daily_units": {
        "time": "iso8601", "weather_code": "wmo code", "temperature_2m_max": "°C",
        "temperature_2m_min": "°C", "precipitation_probability_max": "%",
        "wind_speed_10m_max": "km/h", "wind_direction_10m_dominant": "°",
    },
    "daily": {
        "time": [],  # filled per request
        "weather_code": [1, 61, 3, 0, 71, 2, 80, 95, 45, 63, 3, 1, 0, 2, 73, 51],
        "temperature_2m_max": [9.8, 7.1, 5.4, 6.9, -0.8, 4.2, 8.8, 12.5, 6.0, 7.7, 5.5, 9.1, 10.2, 8.4, 1.2, 6.6],
        "temperature_2m_min": [-1.6, 2.3, -3.0, -4.4, -6.1, -5.2, -0.7, 3.9, -2.0, 1.5, -3.3, -1.0, 0.4, -2.2, -5.5, -0.9],
        "precipitation_probability_max": [3, 84, 20, 0, 65, 8, 55, 70, 10, 90, 15, 5, 0, 12, 60, None],
        "wind_speed_10m_max": [14.8, 22.3, 9.7, 31.0, 18.4, 4.1, 12.0, 40.2, 7.5, 16.6, 10.9, 13.3, 8.8, 19.9, 25.1, 11.1],
        "wind_direction_10m_dominant": [316, 45, 180, 350, 10, 92, 270, 225, 135, 300, 0, 60, 120, 240, 330, 20],
    },
}
OPEN_METEO_ERROR = {"error": True,
                    "reason": "Cannot initialize WeatherVariable from invalid String value "
                              "tempeture_2m for key daily"}
OPEN_METEO_RATELIMIT = {"error": True,
                        "reason": "Minutely API request limit exceeded. Please try again in one minute."}
OPEN_METEO_DAILY = {"weather_code", "temperature_2m_max", "temperature_2m_min",
                    "precipitation_probability_max", "wind_speed_10m_max",
                    "wind_direction_10m_dominant", "precipitation_sum", "sunrise", "sunset"}
OPEN_METEO_CURRENT = {"temperature_2m", "weather_code", "wind_speed_10m", "wind_direction_10m",
                      "relative_humidity_2m", "apparent_temperature", "is_day", "precipitation"}

QWEATHER_REFER = {"sources": ["QWeather"], "license": ["QWeather Developers License"]}
QWEATHER_NOW: dict[str, Any] = {
    "code": "200",
    "updateTime": "2025-11-26T14:20+08:00",
    "fxLink": "https://www.qweather.com/weather/beijing-101010100.html",
    "now": {
        "obsTime": "2025-11-26T14:12+08:00", "temp": "9", "feelsLike": "5", "icon": "101",
        "text": "多云", "wind360": "315", "windDir": "西北风", "windScale": "3", "windSpeed": "15",
        "humidity": "27", "precip": "0.0", "pressure": "1021", "vis": "25", "cloud": "30",
        "dew": "-10",
    },
    "refer": QWEATHER_REFER,
}
QWEATHER_DAY_TEMPLATE = [
    # (textDay, textNight, tempMax, tempMin, wind360Day, windDirDay, windScaleDay, windSpeedDay, precip, humidity)
    ("晴", "晴", "10", "-2", "315", "西北风", "3-4", "16", "0.0", "25"),
    ("小雨", "阴", "7", "2", "45", "东北风", "1-3", "8", "2.6", "78"),
    ("阴", "多云", "5", "-3", "180", "南风", "1-3", "5", "0.0", "52"),
    ("晴", "晴", "7", "-4", "0", "北风", "4-5", "28", "0.0", "21"),
    ("小雪", "小雪", "-1", "-6", "22", "北风", "3-4", "18", "1.2", "70"),
    ("多云", "晴", "4", "-5", "90", "东风", "1-3", "4", "0.0", "40"),
    ("阵雨", "多云", "9", "-1", "270", "西风", "1-3", "11", "0.8", "55"),
]
QWEATHER_7D: dict[str, Any] = {
    "code": "200",
    "updateTime": "2025-11-26T13:35+08:00",
    "fxLink": "https://www.qweather.com/weather/beijing-101010100.html",
    "daily": [],  # filled per request
    "refer": QWEATHER_REFER,
}


def qweather_day(day: date, values: tuple) -> dict[str, str]:
    text_day, text_night, tmax, tmin, w360, wdir, wscale, wspeed, precip, humidity = values
    return {
        "fxDate": day.isoformat(), "sunrise": "07:06", "sunset": "16:52", "moonrise": "10:21",
        "moonset": "19:44", "moonPhase": "蛾眉月", "moonPhaseIcon": "801", "tempMax": tmax,
        "tempMin": tmin, "iconDay": "100", "textDay": text_day, "iconNight": "150",
        "textNight": text_night, "wind360Day": w360, "windDirDay": wdir, "windScaleDay": wscale,
        "windSpeedDay": wspeed, "wind360Night": "0", "windDirNight": "北风", "windScaleNight": "1-3",
        "windSpeedNight": "3", "humidity": humidity, "precip": precip, "pressure": "1024",
        "vis": "25", "cloud": "0", "uvIndex": "2",
    }


def qweather_error_v2(status: int, title: str) -> dict[str, Any]:
    return {"error": {"status": status,
                      "type": f"https://dev.qweather.com/docs/resource/error-code/#{title.lower().replace(' ', '-')}",
                      "title": title, "detail": f"{title}."}}


# ---- the server -------------------------------------------------------------------------------

@dataclass
class WeatherStandIn:
    today: date = field(default_factory=lambda: datetime.now(CHINA).date())
    mode: str = "ok"
    delay: float = 1.0
    #: Extra pause for every answer (even "ok"), so concurrent requests really overlap.
    latency: float = 0.0
    qweather_key: str = "test-qweather-key"
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def count(self, path_part: str = "") -> int:
        return sum(1 for path, _ in self.calls if path_part in path)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/forecast", self.open_meteo)
        app.router.add_get("/v7/weather/now", self.qweather_now)
        app.router.add_get(r"/v7/weather/{days:\d+}d", self.qweather_days)
        return app

    async def _common(self, request: web.Request) -> web.Response | None:
        self.calls.append((request.path, dict(request.query)))
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.mode == "slow":
            await asyncio.sleep(self.delay)
        if self.mode == "error500":
            return web.Response(status=500, content_type="text/html",
                                text="<html><body><h1>500 Internal Server Error</h1></body></html>")
        if self.mode == "malformed":
            return web.Response(status=200, content_type="application/json",
                                text='{"latitude": 39.875, "daily": {"time": ["2025-11-')
        return None

    # Open-Meteo ------------------------------------------------------------------------------

    async def open_meteo(self, request: web.Request) -> web.Response:
        early = await self._common(request)
        if early is not None:
            return early
        q = request.query
        if self.mode == "error400":
            return web.json_response(OPEN_METEO_ERROR, status=400)
        if self.mode == "ratelimit":
            return web.json_response(OPEN_METEO_RATELIMIT, status=429)
        try:
            lat, lon = float(q["latitude"]), float(q["longitude"])
            days = int(q.get("forecast_days", "7"))
        except (KeyError, ValueError):
            return web.json_response({"error": True, "reason": "Parameter 'latitude' and 'longitude' must have the same number of elements"}, status=400)
        if not -90 <= lat <= 90 or not -180 <= lon <= 180:
            return web.json_response({"error": True, "reason": f"Latitude must be in range of -90 to 90°. Given: {lat}."}, status=400)
        if not 0 <= days <= 16:
            return web.json_response({"error": True, "reason": "Forecast days is invalid. Allowed range 0 to 16."}, status=400)
        daily_vars = [v for v in q.get("daily", "").split(",") if v]
        current_vars = [v for v in q.get("current", "").split(",") if v]
        for name in daily_vars:
            if name not in OPEN_METEO_DAILY:
                return web.json_response({"error": True, "reason": f"Cannot initialize WeatherVariable from invalid String value {name} for key daily"}, status=400)
        for name in current_vars:
            if name not in OPEN_METEO_CURRENT:
                return web.json_response({"error": True, "reason": f"Cannot initialize WeatherVariable from invalid String value {name} for key current"}, status=400)

        body = copy.deepcopy(OPEN_METEO_FORECAST)
        body["latitude"], body["longitude"] = round(lat * 8) / 8, round(lon * 8) / 8
        if self.mode == "empty":
            body.pop("current"), body.pop("current_units")
            body["daily"] = {"time": [], **{v: [] for v in daily_vars}}
            body["daily_units"] = {"time": "iso8601", **{v: body["daily_units"].get(v, "") for v in daily_vars}}
            return web.json_response(body)
        body["current"]["time"] = f"{self.today.isoformat()}T14:15"
        body["current"] = {k: v for k, v in body["current"].items()
                           if k in ("time", "interval") or k in current_vars}
        body["current_units"] = {k: v for k, v in body["current_units"].items()
                                 if k in ("time", "interval") or k in current_vars}
        if not current_vars:
            body.pop("current"), body.pop("current_units")
        daily = {"time": [(self.today + timedelta(days=i)).isoformat() for i in range(days)]}
        for name in daily_vars:
            daily[name] = list(OPEN_METEO_FORECAST["daily"].get(name, [None] * 16))[:days]
        body["daily"] = daily
        body["daily_units"] = {k: v for k, v in body["daily_units"].items() if k == "time" or k in daily_vars}
        return web.json_response(body)

    # QWeather --------------------------------------------------------------------------------

    def _qweather_auth(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("X-QW-Api-Key") or request.query.get("key", "")
        if key != self.qweather_key:
            return web.json_response(qweather_error_v2(401, "Unauthorized"), status=401)
        location = request.query.get("location", "")
        try:
            lon, lat = (float(x) for x in location.split(","))
        except ValueError:
            return web.json_response(qweather_error_v2(400, "Invalid Parameter"), status=400)
        if not -180 <= lon <= 180 or not -90 <= lat <= 90:
            return web.json_response(qweather_error_v2(400, "No Such Location"), status=400)
        return None

    def _qweather_mode(self) -> web.Response | None:
        if self.mode == "error400":
            return web.json_response({"code": "400"})
        if self.mode == "nodata":
            return web.json_response({"code": "204"})
        if self.mode == "ratelimit":
            return web.json_response(qweather_error_v2(429, "Over Free Daily Limit"), status=429)
        return None

    async def _qweather_early(self, request: web.Request) -> web.Response | None:
        # (responses are mappings that test falsy when empty: compare with None, never ``or``)
        early = await self._common(request)
        if early is None:
            early = self._qweather_auth(request)
        if early is None:
            early = self._qweather_mode()
        return early

    async def qweather_now(self, request: web.Request) -> web.Response:
        early = await self._qweather_early(request)
        if early is not None:
            return early
        body = copy.deepcopy(QWEATHER_NOW)
        if self.mode == "empty":
            body["now"] = {}
        else:
            body["now"]["obsTime"] = f"{self.today.isoformat()}T14:12+08:00"
        return web.json_response(body)

    async def qweather_days(self, request: web.Request) -> web.Response:
        early = await self._qweather_early(request)
        if early is not None:
            return early
        days = int(request.match_info["days"])
        if days not in (3, 7, 10, 15, 30):
            return web.Response(status=404, text="404 page not found")
        body = copy.deepcopy(QWEATHER_7D)
        if self.mode != "empty":
            body["daily"] = [qweather_day(self.today + timedelta(days=i),
                                          QWEATHER_DAY_TEMPLATE[i % len(QWEATHER_DAY_TEMPLATE)])
                             for i in range(days)]
        return web.json_response(body, dumps=lambda v: json.dumps(v, ensure_ascii=False))

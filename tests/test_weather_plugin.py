"""The weather skill end to end: a real bot (core.testing.running_bot) and the local stand-in."""
from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta

import pytest

from core import SuccessReply, TextReply
from core.testing import running_bot
from plugins.weather.dates import CHINA_TZ
from tests.standins.weather_server import WeatherStandIn

TODAY = date(2025, 11, 26)  # a Wednesday; the stand-in's first forecast day
ERROR_WORDS = ("Error", "error", "Traceback", "HTTP", "500", "Exception", "None", "Undefined")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 11, 26, 9, 30, tzinfo=CHINA_TZ)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def standin(aiohttp_server):
    stand_in = WeatherStandIn(today=TODAY, qweather_key="e2e-key")
    server = await aiohttp_server(stand_in.app())
    stand_in.base_url = str(server.make_url("")).rstrip("/")
    return stand_in


@pytest.fixture
def weather_bot(standin):
    """``async with weather_bot(**weather_settings) as (bot, clock)``: only the weather plugin."""

    @asynccontextmanager
    async def make(extra: dict | None = None, **weather):
        overrides = {"plugins": {"enabled": ["weather"],
                                 "weather": {"base_url": standin.base_url, "timeout": 1.0, **weather}}}
        for key, value in (extra or {}).items():
            overrides[key] = value
        async with running_bot(overrides) as bot:
            clock = Clock()
            bot.pm.get_plugin("weather").now = clock
            yield bot, clock

    return make


def text_of(reply) -> str:
    assert isinstance(reply, TextReply), reply
    return reply.content


def assert_weather(reply) -> str:
    assert reply.plugin == "weather" and reply.intent == "weather", reply
    content = text_of(reply)
    assert not any(word in content for word in ERROR_WORDS), content
    return content


async def test_question_and_follow_ups(weather_bot, standin):
    async with weather_bot() as (bot, _):
        first = assert_weather(await bot.send("明天北京会下雨吗", user="u1"))
        assert first.splitlines()[0] == "北京 明天（11月27日 周四）"
        assert "小雨" in first and "2~7°C" in first and "降水概率84%" in first and "东北风4级" in first
        # "那上海呢？" keeps the day and changes the place
        second = assert_weather(await bot.send("那上海呢？", user="u1"))
        assert second.startswith("上海 明天（11月27日 周四）")
        # "后天呢？" keeps the place and changes the day
        third = assert_weather(await bot.send("后天呢？", user="u1"))
        assert third.startswith("上海 后天（11月28日 周五）") and "阴" in third
        # a new complete question means today, with current conditions
        fourth = assert_weather(await bot.send("广州天气", user="u1"))
        assert fourth.startswith("广州 今天（11月26日 周三）")
        assert "现在 8°C" in fourth and "全天 大部晴朗" in fourth
        # without a place, the last place is used
        fifth = assert_weather(await bot.send("明天会下雨吗", user="u1"))
        assert fifth.startswith("广州 明天")
    # Beijing, Shanghai, Guangzhou: one upstream call each, the rest from the cache
    assert standin.count("/v1/forecast") == 3


async def test_weather_remark_without_place_goes_to_the_fallback(weather_bot):
    async with weather_bot() as (bot, _):
        reply = await bot.send("天气太冷了我不想上班", user="u2")
        assert reply.plugin != "weather"


@pytest.mark.parametrize("text", ["台风天还发货吗", "下雨天快递会延迟吗", "雨衣尺码偏大吗",
                                  "今天天气真好，适合出去逛街", "上海能包邮吗",
                                  # a weather word (or a place and a day) inside another question
                                  "昆明冰雪节门票多少钱", "降温了怎么保暖", "下雪了，还包邮吗", "深圳明天有演唱会吗"])
async def test_other_topics_that_mention_weather_are_declined(weather_bot, standin, text):
    async with weather_bot() as (bot, _):
        reply = await bot.send(text, user="u2b")
        assert reply.plugin != "weather"
    assert standin.calls == []


async def test_router_scorer_reads_follow_ups_and_glued_words(weather_bot):
    async with weather_bot() as (bot, _):
        plugin = bot.pm.get_plugin("weather")
        assert plugin.score("广州", ["广州"])[0] == 0.7
        assert plugin.score("那上海呢？", [])[0] == 0.7
        assert plugin.score("青岛明天风大吗", ["青岛", "明天", "风大", "吗"])[0] == 0.6
        assert plugin.score("你好", ["你好"])[0] == 0.0
        assert plugin.score("台风天还发货吗", [])[0] == 0.0
        route = bot.router.route(None, "大连这周末晴不晴")
        assert route.chosen and route.chosen[0].name == "weather"


async def test_follow_up_shape_without_a_weather_answer_is_declined(weather_bot, standin):
    async with weather_bot() as (bot, _):
        reply = await bot.send("那上海呢？", user="u3")
        assert reply.plugin != "weather"
        reply = await bot.send("你好", user="u3")
        assert reply.plugin != "weather"
    assert standin.calls == []


@pytest.mark.parametrize("text,day", [("苏州后天", "后天"), ("Wuxi tomorrow", "明天"),
                                      ("明天 ningbo", "明天"), ("今天厦门？", "今天")])
async def test_a_place_and_a_day_alone_ask_the_weather(weather_bot, text, day):
    """Nothing but where and when: a weather question from a new user, with no weather word."""
    async with weather_bot() as (bot, _):
        content = assert_weather(await bot.send(text, user="pd"))
        assert day in content, content


async def test_weather_asked_after_a_clause_about_a_delivery(weather_bot):
    async with weather_bot() as (bot, _):
        content = assert_weather(await bot.send("订单说周五送到，杭州周五下雨吗", user="od"))
        assert content.startswith("杭州"), content


async def test_asks_which_city_then_answers_for_the_day_asked(weather_bot):
    async with weather_bot() as (bot, _):
        ask = assert_weather(await bot.send("明天会下雨吗", user="u4"))
        assert "哪个城市" in ask
        answer = assert_weather(await bot.send("杭州", user="u4"))
        assert answer.startswith("杭州 明天（11月27日 周四）")


async def test_weekend_answers_saturday_and_sunday(weather_bot):
    async with weather_bot() as (bot, _):
        content = assert_weather(await bot.send("周末杭州冷不冷", user="u5"))
        lines = content.splitlines()
        assert lines[0] == "杭州天气"
        assert lines[1].startswith("周六（11月29日） 晴，-4~7°C")
        assert lines[2].startswith("周日（11月30日） 小雪，-6~-1°C")


async def test_several_places_in_one_question(weather_bot):
    async with weather_bot() as (bot, _):
        content = assert_weather(await bot.send("北京和上海明天哪个冷", user="u6"))
        assert "北京 明天" in content and "上海 明天" in content


async def test_days_out_of_range(weather_bot, standin):
    async with weather_bot() as (bot, _):
        future = assert_weather(await bot.send("12月25日北京天气", user="u7"))
        assert "7天内" in future and "12月25日" in future
        past = assert_weather(await bot.send("昨天北京天气怎么样", user="u7"))
        assert "过去" in past
        # the place was still remembered
        assert assert_weather(await bot.send("明天会下雨吗", user="u7")).startswith("北京 明天")
        # a span reaching past the range is answered as far as it goes, with a note
        week = assert_weather(await bot.send("下周北京天气", user="u7"))
        assert "周一（12月1日）" in week and "周二（12月2日）" in week and "还查不到" in week


async def test_location_message_answers_current_conditions(weather_bot):
    async with weather_bot() as (bot, _):
        reply = await bot.send_location(23.1291, 113.2644, "广东省广州市天河区体育西路", user="u8")
        content = assert_weather(reply)
        assert content.startswith("广州天河区 现在")
        assert "8°C" in content and "今天（11月26日 周三）" in content
        follow = assert_weather(await bot.send("明天呢", user="u8"))
        assert follow.startswith("广州天河区 明天")


async def test_location_event_is_remembered_silently(weather_bot):
    async with weather_bot() as (bot, _):
        reply = await bot.send_event("LOCATION", user="u9", Latitude=30.2741, Longitude=120.1551,
                                     Precision=30.0)
        assert isinstance(reply, SuccessReply)
        content = assert_weather(await bot.send("明天会下雨吗", user="u9"))
        assert content.startswith("你所在位置 明天")


async def test_provider_down_gives_a_polite_apology(weather_bot, standin):
    standin.mode = "error500"
    async with weather_bot() as (bot, _):
        content = assert_weather(await bot.send("明天北京天气", user="u10"))
        assert content.startswith("抱歉") and "北京" in content


async def test_slow_provider_times_out_into_an_apology(weather_bot, standin):
    standin.mode, standin.delay = "slow", 3.0
    async with weather_bot(timeout=0.3) as (bot, _):
        content = assert_weather(await bot.send("上海天气", user="u11"))
        assert content.startswith("抱歉")


async def test_stale_answer_shows_its_age(weather_bot, standin):
    async with weather_bot(cache_ttl=0.0) as (bot, clock):
        assert "小雨" in assert_weather(await bot.send("明天北京天气", user="u12"))
        standin.mode = "malformed"
        clock.now += timedelta(minutes=30)
        content = assert_weather(await bot.send("明天北京天气", user="u12"))
        assert "小雨" in content and "30分钟前的数据" in content


async def test_qweather_provider_end_to_end(weather_bot, standin, monkeypatch):
    monkeypatch.setenv("SKILLBOT_E2E_QWEATHER", "e2e-key")
    async with weather_bot(provider="qweather", api_key_env="SKILLBOT_E2E_QWEATHER") as (bot, _):
        content = assert_weather(await bot.send("明天北京天气", user="u13"))
        assert "小雨转阴" in content and "东北风1-3级" in content and "降水量2.6毫米" in content
        now = assert_weather(await bot.send("现在上海多少度", user="u13"))
        assert now.startswith("上海 现在") and "9°C，多云" in now and "西北风3级" in now


async def test_identical_questions_from_many_users_share_the_cache(weather_bot, standin):
    async with weather_bot() as (bot, _):
        for i in range(5):
            assert_weather(await bot.send("明天成都会下雨吗", user=f"many{i}"))
    assert standin.count() == 1


async def test_operator_can_override_a_template(weather_bot, standin, tmp_path):
    folder = tmp_path / "weather"
    folder.mkdir()
    (folder / "apology.j2").write_text("天气服务维护中，{{ place }}的天气晚点再来查吧。", encoding="utf-8")
    standin.mode = "error500"
    async with weather_bot(extra={"pipeline": {"templates_dir": str(tmp_path)}}) as (bot, _):
        content = assert_weather(await bot.send("南京天气", user="u14"))
        assert content == "天气服务维护中，南京的天气晚点再来查吧。"


async def test_place_names_are_whole_tokens(weather_bot):
    async with weather_bot() as (bot, _):
        assert "海淀区" in bot.tokenize("海淀区明天天气")
        assert "乌鲁木齐" in bot.tokenize("乌鲁木齐这周末下雪吗")

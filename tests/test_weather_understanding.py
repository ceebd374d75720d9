"""The weather skill reads what users type (issue 14): pinyin and English place, day and weather
words, traditional characters and Cantonese, Hong Kong, Macau and Taiwan, typos, and ordinary
words that merely look like a place or a weather word.

"Today" is Wednesday 2025-11-26 in China, as in test_weather_extraction.py.
"""
from __future__ import annotations

import functools
from datetime import date

import pytest

from core.processing.segmenter import Segmenter
from plugins.weather.normalize import normalize
from plugins.weather.places import default_index
from plugins.weather.understand import understand
from tests.test_weather_plugin import assert_weather, standin, weather_bot  # noqa: F401 (fixtures)

TODAY = date(2025, 11, 26)
NONE: list[str] = []


@functools.lru_cache(maxsize=1)
def segmenter() -> Segmenter:
    """A segmenter like the bot's: jieba's dictionary plus the place names the plugin gives."""
    seg = Segmenter()
    seg.initialize()
    seg.add_words(default_index().words(min_length=2))
    return seg


def read(text: str):
    return understand(text, default_index(), TODAY, cut=segmenter().cut)


# (text, places (display names), day offsets, current conditions asked)
CASES = [
    # pinyin and English place names, generated from the place table
    ("shanghai", ["上海"], [], False),
    ("Shang Hai", ["上海"], [], False),
    ("xi'an", ["西安"], [], False),
    ("Xi An tianqi", ["西安"], [], False),
    ("Hangzhou明天下雨吗", ["杭州"], [1], False),
    ("shanghai jintian tianqi", ["上海"], [0], False),
    ("nanjing houtian tianqi zenmeyang", ["南京"], [2], False),
    ("Beijing weather tomorrow", ["北京"], [1], False),
    ("is it raining in Shenzhen", ["深圳"], [], True),
    ("What's the weather like in Guangzhou the day after tomorrow?", ["广州"], [2], False),
    ("Peking weather", ["北京"], [], False),
    ("Hong Kong weather tomorrow", ["香港"], [1], False),
    ("chaoyang tianqi", ["北京朝阳区"], [], False),
    ("liaoning chaoyang mingtian tianqi", ["辽宁朝阳市"], [1], False),
    ("beijingtianqi", ["北京"], [], False),
    ("Xiamen next Monday weather", ["厦门"], [5], False),
    ("lvliang tianqi", ["吕梁"], [], False),
    ("Běijīng tiānqì", ["北京"], [], False),
    ("Hangzhou's weather tmr", ["杭州"], [1], False),
    ("luliang tianqi", ["吕梁"], [], False),
    # traditional characters, Cantonese day words, full-width letters, emoji
    ("香港今日天氣點樣", ["香港"], [0], False),
    ("香港聽日會唔會落雨", ["香港"], [1], False),
    ("澳門後日天氣", ["澳门"], [2], False),
    ("臺北明天會下雨嗎", ["台北"], [1], False),
    ("台北今天幾度", ["台北"], [0], False),
    ("銅鑼灣而家落緊雨嗎", ["香港铜锣湾"], [], True),
    ("ＢＥＩＪＩＮＧ明天天气", ["北京"], [1], False),
    ("北京明天🌧吗", ["北京"], [1], False),
    # Hong Kong, Macau and Taiwan below the province
    ("尖沙咀天氣點樣", ["香港尖沙咀"], [], False),
    ("沙田今日幾多度", ["香港沙田区"], [0], False),
    ("kowloon weather", ["香港九龙"], [], False),
    ("氹仔天气怎么样", ["澳门氹仔"], [], False),
    ("高雄後天熱不熱", ["高雄"], [2], False),
    ("Kaohsiung rain tomorrow", ["高雄"], [1], False),
    ("新北明天冷吗", ["新北"], [1], False),
    # typos typed by sound
    ("北京天汽怎么样", ["北京"], [], False),
    ("上海明天天器", ["上海"], [1], False),
    ("杭洲明天天气", ["杭州"], [1], False),
    ("明天广洲会下鱼吗", ["广州"], [1], False),
    # no place formed across a word boundary, or from a thing
    ("明天上高速会下雨吗", NONE, [1], False),
    # a name dropped at a word boundary does not hide the one starting inside it
    ("周日早上杭州有雾吗", ["杭州"], [4], False),  # 早上 / 杭州, not 上杭
    ("晚上海口下雨吗", ["海口"], [0], False),      # 晚上 / 海口, not 上海; 晚上 alone is today
    ("下午广州会下雨吗", ["广州"], [0], False),    # a part of the day with no day: today
    ("明天下午成都下雨吗", ["成都"], [1], False),  # ... and with one: that day
    ("待会儿要下雨吗", [], [0], False),
    ("元旦三亚热吗", ["三亚"], [], False),         # a holiday: its date (beyond the range)
    ("圣诞节上海会下雪吗", ["上海"], [], False),
    ("魔都明天下雨吗", ["上海"], [1], False),      # city nicknames (build_places.py)
    ("羊城明天热吗", ["广州"], [1], False),        # not 盐城 typed by sound
    ("崇明岛周末天气", ["上海崇明区"], [3, 4], False),
    ("首都机场明天有雾吗", ["北京顺义区"], [1], False),  # airports (build_places.py)
    ("天河机场明天下雨吗", ["武汉黄陂区"], [1], False),  # Wuhan's, not Guangzhou's 天河
    ("chongqing zhe zhoumo hui xiayu ma", ["重庆"], [3, 4], False),  # pinyin particles
    ("Hangzhou 3 day forecast", ["杭州"], [0, 1, 2], False),
    ("杭州3天天气预报", ["杭州"], [0, 1, 2], False),
    ("Chaoyang district weather tomorrow", ["北京朝阳区"], [1], False),
    ("中关村今天冷吗", ["北京海淀区"], [0], False),    # sights and city areas (build_places.py)
    ("长白山周末下雪吗", ["延边安图县"], [3, 4], False),
    ("北京西站今天下雪吗", ["北京"], [0], False),      # not 西藏 typed by sound inside a word
    ("昆明今天晒不晒", ["昆明"], [0], False),        # 晒 and 湿 asked A不A or in a weather-shaped word
    ("What should I wear in Beijing tomorrow", ["北京"], [1], False),
    ("How many degrees in Wuhan today", ["武汉"], [0], False),
    ("chengdu jin tian re ma", ["成都"], [0], False),
    ("聽日香港要唔要帶遮", ["香港"], [1], False),     # Cantonese 遮: an umbrella
    ("重庆今天最高温度", ["重庆"], [0], False),     # 高温 cut 最高/温度 does not hide 温度
    ("北京天气怎么洋", ["北京"], [], False),        # 怎么样 typed by sound
    ("成都明天温读多少", ["成都"], [1], False),     # 温度 typed by sound
    ("上高明天会下雨吗", ["宜春上高县"], [1], False),
    ("周末去洛阳看牡丹会下雨吗", ["洛阳"], [3, 4], False),
    ("牡丹区明天天气", ["菏泽牡丹区"], [1], False),
    ("深证股票今天涨了吗天气也不错", NONE, [0], False),
    ("湖州明天天气好吗，打算去竹海骑车", ["湖州"], [1], False),  # a place typed right: no 珠海
    ("后儿北京冷不冷", ["北京"], [2], False),
    # the places asked for, and famous places by their own name
    ("明天从上海飞成都，成都天气怎么样", ["成都"], [1], False),
    ("北京和上海明天哪个冷", ["北京", "上海"], [1], False),
    ("上海和北京天气", ["上海", "北京"], [], False),
    ("凤凰古城后天天气", ["湘西凤凰县"], [2], False),
    ("千岛湖明天会下雨吗", ["杭州淳安县"], [1], False),
]


@pytest.mark.parametrize("text,places,offsets,current", CASES, ids=[c[0] for c in CASES])
def test_place_and_day(text, places, offsets, current):
    q = read(text)
    assert [s.name for s in q.spots] == places
    assert [(d - TODAY).days for d in q.days.dates] == offsets
    assert q.days.current is current
    assert q.weather_word or not places or q.followup


@pytest.mark.parametrize("text,followup", [
    ("what about Shanghai?", True), ("and tomorrow?", True), ("那台北呢", True), ("and you?", False),
    # a part of the day alone names no day (a bank's 下午呢 asks its opening hours); an ATM is not now
    ("下午呢", False), ("那明天下午呢", True), ("ATM呢", False),
])
def test_follow_ups_in_other_scripts(text, followup):
    assert read(text).followup is followup


@pytest.mark.parametrize("text", [
    "guide", "change the plan", "please send the invoice", "I am going home", "hello there",
    "long time no see", "the meaning of life", "anyway", "pm2.5",
])
def test_english_words_stay_english(text):
    assert normalize(text, default_index()) == text.lower()


@pytest.mark.parametrize("text", [
    "北京热门景点有哪些", "讲个冷笑话", "风险投资是什么", "热水器不出热水怎么办", "田七粉的功效",
    "从明天起做一个幸福的人", "深证股票涨了吗", "太阳能热水器好用吗", "羽绒服可以机洗吗",
    "明天去西安要带身份证吗", "晒单有奖励吗", "衣服湿了怎么办",
])
def test_ordinary_words_are_not_weather(text):
    assert read(text).weather_word is False


@pytest.mark.parametrize("text,about", [
    ("台风是怎么形成的", True), ("天气预报是怎么做出来的", True), ("为什么会下雨", True),
    ("雷阵雨和阵雨有什么区别", True), ("雾霾天戴什么口罩好", True), ("天气预报准不准", True),
    ("明天天气怎么样", False), ("北京明天会下雨吗", False), ("下雨天北京冷不冷", False),
    ("明天天气是怎么样的", False), ("把明天会下雨翻译成英语", True), ("写一首关于台风的诗", True),
    ("香港天文台是做什么的", True), ("北京一年有多少个雾霾天", True), ("闷热的天气吃什么好", True),
    ("北京天气怎么洋", False), ("上海明天天气怎么阳？", False),
])
def test_questions_about_weather_as_a_subject(text, about):
    assert read(text).about_weather is about


@pytest.mark.parametrize("text,weather", [
    ("明天要穿羽绒服吗", True), ("周末能晒被子吗", True), ("杭州明天适合爬山吗", True),
    ("明天穿羽绒服还是大衣", True), ("明早跑步要穿几件", True), ("明天出门需要戴帽子围巾吗", True),
    # another question about the same thing, or the word inside another word
    ("我明天跑步能减肥吗", False), ("周末去爬山带什么吃的", False), ("明天跑步机能修好吗", False),
    # no day named: what to wear or do in general, not a forecast
    ("羽绒服可以机洗吗", False), ("晒被子能杀死螨虫吗", False), ("爬山前要做什么准备", False),
])
def test_what_to_wear_or_do_on_a_named_day_asks_the_forecast(text, weather):
    assert read(text).weather_word is weather


@pytest.mark.parametrize("text,topical", [
    ("那个我想问一下就是明天上海那边会不会下雨啊我要出门", True),  # voice input, no punctuation
    ("我明天要去武汉出差然后想知道那边天气咋样", True),
    ("哈尔滨冰雪大世界什么时候开放", False),
])
def test_run_on_clauses(text, topical):
    assert read(text).clause_topical is topical


@pytest.mark.parametrize("text,measure_only", [
    ("人的正常体温是多少度", True), ("白酒一般多少度", True), ("今天几度", False), ("北京多少度", False),
    ("外面几度", False), ("多少度啊今天冷不冷", False),
])
def test_temperature_measures_alone(text, measure_only):
    assert read(text).measure_only is measure_only


async def test_a_measure_alone_is_weather_only_after_a_weather_answer(weather_bot):  # noqa: F811
    async with weather_bot() as (bot, _):
        assert (await bot.send("人的正常体温是多少度", user="m1")).plugin != "weather"
        assert_weather(await bot.send("北京明天天气", user="m2"))
        assert assert_weather(await bot.send("多少度？", user="m2")).startswith("北京")


async def test_the_plugin_answers_other_scripts_and_declines_the_subject(weather_bot):  # noqa: F811
    async with weather_bot() as (bot, _):
        english = assert_weather(await bot.send("Beijing weather tomorrow", user="w1"))
        assert english.splitlines()[0] == "北京 明天（11月27日 周四）"
        cantonese = assert_weather(await bot.send("香港今日天氣點樣", user="w2"))
        assert cantonese.startswith("香港 今天（11月26日 周三）")
        typo = assert_weather(await bot.send("上海明天天器", user="w3"))
        assert typo.startswith("上海 明天")
        for i, text in enumerate(["台风是怎么形成的", "天气预报是怎么做出来的", "北京热门景点有哪些",
                                  "去洛阳看牡丹花好吗"]):
            reply = await bot.send(text, user=f"w4{i}")
            assert reply.plugin != "weather", text
        plugin = bot.pm.get_plugin("weather")
        assert plugin.score("台风是怎么形成的", [])[0] == 0.0
        assert plugin.score("shanghai jintian tianqi", [])[0] > 0.0

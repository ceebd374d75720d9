"""Place and day extraction for the weather skill, over many real phrasings (table-driven).

"Today" is Wednesday 2025-11-26 in China; offsets are days from today.
"""
from __future__ import annotations

from datetime import date

import pytest

from plugins.weather.dates import cn_number, parse_days
from plugins.weather.places import default_index
from plugins.weather.understand import understand

TODAY = date(2025, 11, 26)  # a Wednesday
NONE: list[str] = []

# (text, places (display names), day offsets, current conditions asked)
CASES = [
    # the issue's own examples
    ("明天北京会下雨吗", ["北京"], [1], False),
    ("上海天气", ["上海"], [], False),
    ("那广州呢？", ["广州"], [], False),
    ("周末杭州冷不冷", ["杭州"], [3, 4], False),
    # suffixes on and off
    ("北京市明天天气", ["北京"], [1], False),
    ("海淀明天冷吗", ["北京海淀区"], [1], False),
    ("海淀区今天几度", ["北京海淀区"], [0], False),
    ("浦东新区天气", ["上海浦东新区"], [], False),
    ("上海浦东天气怎么样", ["上海浦东新区"], [], False),
    ("昆山天气", ["苏州昆山市"], [], False),
    ("昆山市明天多少度", ["苏州昆山市"], [1], False),
    ("黄山天气", ["黄山"], [], False),
    ("黄山区天气", ["黄山黄山区"], [], False),
    ("石家庄天气", ["石家庄"], [], False),
    ("西安明天下雨吗", ["西安"], [1], False),
    # ambiguous names: prominence, and a named parent wins
    ("朝阳天气", ["北京朝阳区"], [], False),
    ("北京朝阳天气", ["北京朝阳区"], [], False),
    ("辽宁朝阳明天天气", ["辽宁朝阳市"], [1], False),
    ("朝阳市天气", ["辽宁朝阳市"], [], False),
    ("长春朝阳区后天天气", ["长春朝阳区"], [2], False),
    ("通州天气", ["北京通州区"], [], False),
    ("南通通州明天下雨吗", ["南通通州区"], [1], False),
    ("鼓楼区天气", ["南京鼓楼区"], [], False),
    ("福州鼓楼天气", ["福州鼓楼区"], [], False),
    ("吉林天气", ["吉林"], [], False),
    ("吉林市天气", ["吉林吉林市"], [], False),
    ("海南天气", ["海南"], [], False),
    ("海南省三亚天气", ["三亚"], [], False),
    # counties, county-level cities, directly administered divisions
    ("义乌明天天气", ["金华义乌市"], [1], False),
    ("马鞍山和县天气", ["马鞍山和县"], [], False),
    ("神农架明天天气", ["湖北神农架林区"], [1], False),
    ("重庆万州天气", ["重庆万州区"], [], False),
    ("万州区后天天气", ["重庆万州区"], [2], False),
    ("鄂伦春自治旗天气", ["呼伦贝尔鄂伦春自治旗"], [], False),
    # autonomous regions and prefectures, leagues, SARs
    ("内蒙古天气", ["内蒙古"], [], False),
    ("内蒙明天冷不冷", ["内蒙古"], [1], False),
    ("广西壮族自治区天气", ["广西"], [], False),
    ("延边朝鲜族自治州天气", ["延边"], [], False),
    ("延边明天下雪吗", ["延边"], [1], False),
    ("恩施天气", ["恩施"], [], False),
    ("西双版纳天气", ["西双版纳"], [], False),
    ("阿克苏地区明天天气", ["阿克苏"], [1], False),
    ("锡林郭勒盟天气", ["锡林郭勒"], [], False),
    ("香港天气", ["香港"], [], False),
    ("澳门今天会下雨吗", ["澳门"], [0], False),
    # ordinary words that are also place names need their parent
    ("天津和平区天气", ["天津和平区"], [], False),
    ("天津和平明天天气", ["天津和平区"], [1], False),
    ("世界和平的天气", NONE, [], False),
    ("和县天气", NONE, [], False),
    ("深圳南山天气", ["深圳南山区"], [], False),
    ("南山天气", NONE, [], False),
    ("广州白云天气", ["广州白云区"], [], False),
    ("白云天气怎么样", NONE, [], False),
    ("比如明天北京下雨吗", ["北京"], [1], False),
    ("今天天台风大吗", NONE, [0], False),
    ("明天天水天气", ["天水"], [1], False),
    ("今天水温多少度", NONE, [0], False),
    # weather words without a place
    ("天气太冷了我不想上班", NONE, [], False),
    ("明天会下雨吗", NONE, [1], False),
    ("今天好热啊", NONE, [0], False),
    ("下雨了", NONE, [], False),
    ("全国天气", NONE, [], False),
    ("火星天气", NONE, [], False),
    # follow-ups
    ("后天呢？", NONE, [2], False),
    ("那上海呢", ["上海"], [], False),
    ("上海呢？", ["上海"], [], False),
    ("那明天杭州怎么样", ["杭州"], [1], False),
    # now
    ("现在北京多少度", ["北京"], [], True),
    ("北京现在冷吗", ["北京"], [], True),
    ("目前深圳天气", ["深圳"], [], True),
    # several places
    ("北京和上海明天哪个冷", ["北京", "上海"], [1], False),
    # days
    ("11月28日北京天气", ["北京"], [2], False),
    ("28号成都下雨吗", ["成都"], [2], False),
    ("2025-11-30上海天气", ["上海"], [4], False),
    ("十二月一日南京天气", ["南京"], [5], False),
    ("下周一武汉天气", ["武汉"], [5], False),
    ("星期天苏州天气", ["苏州"], [4], False),
    ("礼拜六青岛会下雨吗", ["青岛"], [3], False),
    ("周三郑州天气", ["郑州"], [0], False),
    ("大后天天津天气", ["天津"], [3], False),
    ("明后天广州天气", ["广州"], [1, 2], False),
    ("未来三天杭州天气", ["杭州"], [0, 1, 2], False),
    ("这几天长沙冷不冷", ["长沙"], [0, 1, 2], False),
    ("乌鲁木齐这周末下雪吗", ["乌鲁木齐"], [3, 4], False),
    ("今晚合肥冷吗", ["合肥"], [0], False),
    ("明早济南有雾吗", ["济南"], [1], False),
    # sentences around the place
    ("北京天气预报", ["北京"], [], False),
    ("帮我查一下厦门的天气", ["厦门"], [], False),
    ("我在成都，明天要带伞吗", ["成都"], [1], False),
    ("拉萨紫外线强吗", ["拉萨"], [], False),
    ("明天去哈尔滨要穿多少", ["哈尔滨"], [1], False),
    ("ＨＩ，明天昆明天气？", ["昆明"], [1], False),
    # a day word hidden across a place name, and places holding weather characters
    ("昆明天气", ["昆明"], [], False),
    ("三明天气怎么样", ["三明"], [], False),
    ("凉山明天天气", ["凉山"], [1], False),
    ("雅安雨城区天气", ["雅安雨城区"], [], False),
    ("晴隆明天会下雨吗", ["黔西南晴隆县"], [1], False),
]


def test_enough_phrasings():
    assert len(CASES) >= 60


@pytest.mark.parametrize("text,places,offsets,current", CASES, ids=[c[0] for c in CASES])
def test_place_and_day(text, places, offsets, current):
    q = understand(text, default_index(), TODAY)
    assert [s.name for s in q.spots] == places
    assert [(d - TODAY).days for d in q.days.dates] == offsets
    assert q.days.current is current


@pytest.mark.parametrize("text,question", [
    ("天气太冷了我不想上班", False), ("今天好热啊", False), ("下雨了", False),
    ("明天会下雨吗", True), ("天气", True), ("明天下雨", True), ("冷不冷", True),
    ("北京天气", True), ("今天几度", True),
])
def test_question_or_remark(text, question):
    assert understand(text, default_index(), TODAY).question is question


@pytest.mark.parametrize("text,followup", [
    ("那上海呢？", True), ("后天呢", True), ("广州", True), ("那明天杭州怎么样", True),
    ("上海天气", True), ("你呢", False), ("我想去上海玩", False), ("明天会下雨吗", False),
])
def test_followup_shape(text, followup):
    assert understand(text, default_index(), TODAY).followup is followup


@pytest.mark.parametrize("text,topical,off_topic", [
    ("今天外面冷吗", True, False), ("明天要不要带伞", True, False), ("后天气温多少度", True, False),
    ("明天降温吗，要穿秋裤不", True, False), ("今天出门要戴口罩吗雾霾大不大", True, False),
    ("外面现在还在下雨吗", True, False), ("今天紫外线强吗", True, False),
    ("雨衣尺码偏大吗", False, False), ("今天天气真好，适合出去逛街", False, False),
    ("台风天还发货吗", True, True), ("下雨天快递会延迟吗", False, True),
    ("买的雨伞坏了能保修吗", False, True), ("天气预报这个APP怎么退款", False, True),
    ("明天下雨的话还送货吗", True, True),
])
def test_weather_topic_or_another(text, topical, off_topic):
    q = understand(text, default_index(), TODAY)
    assert (q.topical, q.off_topic) == (topical, off_topic)


@pytest.mark.parametrize("text,place_and_day", [
    ("苏州后天", True), ("明天 无锡", True), ("wuxi tomorrow", True), ("那宁波明天呢", True),
    ("苏州", False), ("后天呢", False), ("我想去上海玩", False), ("明天是周几", False),
    ("深圳明天有演唱会吗", False),
])
def test_a_place_and_a_day_alone(text, place_and_day):
    assert understand(text, default_index(), TODAY).place_and_day is place_and_day


@pytest.mark.parametrize("text,off_topic", [
    ("订单说周五送到，杭州周五下雨吗", False),   # the shop clause is context
    ("下雪了，还包邮吗", True),                  # the question is the shop's
    ("下雨天发货吗", True),
])
def test_a_shop_topic_counts_in_the_clause_that_asks(text, off_topic):
    assert understand(text, default_index(), TODAY).off_topic is off_topic


@pytest.mark.parametrize("text,clause_topical", [
    ("哈尔滨冰雪大世界几点开门", False), ("明天去厦门开会，想问问那边热不热", True), ("长沙明天冷吗", True),
    ("昆明冰雪节门票贵吗明天冷吗", True),  # a question particle ends a clause when the comma is left out
])
def test_a_weather_word_needs_a_clause_about_weather(text, clause_topical):
    assert understand(text, default_index(), TODAY).clause_topical is clause_topical


@pytest.mark.parametrize("text,about", [
    ("降温了怎么保暖", True), ("下雪天怎么开车", True), ("上海明天天气怎么样", False),
    ("北京天气如何", False),
    # the climate: a season or a habit and no day
    ("长沙夏天热不热", True), ("杭州一般几月下雪", True), ("长沙明天热不热", False),
    ("今年冬天的第一场雪", True),
    # weather as the premise of another question, no place or day named
    ("天冷了穿什么鞋", True), ("下雪了要给车做什么保养", True), ("外面下雪了吗", False),
    # asking where: no forecast answers it
    ("浙江哪里最暖和", True), ("明天哪个城市最冷", True), ("北京和上海明天哪个冷", False),
    # the same in English
    ("why is it so hot in Wuhan", True), ("is it cold in Xi'an in winter", True),
    ("is it cold in Xi'an tomorrow", False),
])
def test_how_to_questions_are_about_weather_not_a_forecast(text, about):
    assert understand(text, default_index(), TODAY).about_weather is about


def test_english_function_words_leave_a_terse_query():
    assert understand("weather in Xiamen the day after tomorrow", default_index(), TODAY).question


@pytest.mark.parametrize("text,past,beyond", [
    ("昨天北京天气", True, []),
    ("前天", True, []),
    ("上周五", True, []),
    ("这周一", True, []),
    ("11月20日", True, []),
    ("下周三", False, ["2025-12-03"]),
    ("下个月15号", False, ["2025-12-15"]),
    ("12月25日", False, ["2025-12-25"]),
    ("下周末", False, ["2025-12-06", "2025-12-07"]),
])
def test_out_of_range_days(text, past, beyond):
    q = parse_days(text, TODAY, 7)
    assert q.past is past
    assert [d.isoformat() for d in q.beyond] == beyond


def test_longer_forecast_range_accepts_further_days():
    q = parse_days("下周三", TODAY, 16)
    assert [d.isoformat() for d in q.dates] == ["2025-12-03"]


@pytest.mark.parametrize("text", ["1号线地铁", "3号楼", "星期几", "这会不会下雨", "这周天气"])
def test_not_a_single_day(text):
    q = parse_days(text, TODAY, 7)
    assert not q.current
    assert len(q.dates) != 1 or text == "这周天气"


def test_this_week_runs_to_sunday():
    q = parse_days("这周天气", TODAY, 7)
    assert [(d - TODAY).days for d in q.dates] == [0, 1, 2, 3, 4]


def test_weekend_on_saturday_and_sunday():
    saturday, sunday = date(2025, 11, 29), date(2025, 11, 30)
    assert parse_days("周末", saturday).dates == [saturday, sunday]
    assert parse_days("周末", sunday).dates == [sunday]


def test_day_of_month_that_has_passed_is_next_month():
    q = parse_days("5号", TODAY, 16)
    assert q.dates == [date(2025, 12, 5)]


@pytest.mark.parametrize("token,value", [("28", 28), ("二十八", 28), ("十一", 11), ("十", 10),
                                         ("两", 2), ("三十一", 31), ("", None), ("廿", None)])
def test_chinese_numbers(token, value):
    assert cn_number(token) == value

"""Reading a weather question: places, days, and whether it is a question at all.

``understand(text, index, today)`` returns a ``Question``; the plugin then decides with the
conversation context (see ``Plugin.skillbot_handle`` and docs/weather.md):

* ``weather_word``: the text names weather (天气, 下雨, 冷, 几度...);
* ``question``: it asks something (吗/呢/？, 怎么样, 多少, 冷不冷, 会不会...) or is a terse query
  ("上海天气", "明天下雨") rather than a remark ("天气太冷了我不想上班");
* ``followup``: it is only a place and/or a day, optionally wrapped in 那...呢 / ...怎么样
  ("那上海呢？", "后天呢", "广州"), which only means weather right after a weather answer;
* ``topical``: almost nothing is left besides weather words, days, places and filler, so a
  question without a place is still about the weather ("今天外面冷吗", not "雨衣尺码偏大吗");
* ``off_topic``: a shop topic is the point ("台风天还发货吗", "下雨天快递会延迟吗").

The Chinese words below are what the skill *reads*; everything it says is in templates.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date

from .dates import DayQuery, parse_days
from .places import Mention, PlaceIndex
from .service import Spot

MAX_PLACES = 3
#: At most this many characters may be left once weather words, days, places and filler are
#: removed, for a question without a place to count as a weather question.
TOPICAL_REST = 3

#: Words that make a message about the weather (the router's keywords are the same family).
WEATHER_WORDS = (
    "天气", "气温", "温度", "预报", "下雨", "下雪", "降雨", "降雪", "降温", "升温", "回升", "雨", "雪",
    "冷", "热", "凉", "暖和", "风", "刮风", "风力", "大风", "台风", "晴", "阴天", "多云", "雾", "霾",
    "雾霾", "带伞", "打伞", "雨伞", "几度", "多少度", "湿度", "冰雹", "雷阵雨", "沙尘", "紫外线",
    "寒潮", "空气质量", "空气", "pm2.5", "aqi",
)
_WEATHER_RE = re.compile("|".join(sorted(map(re.escape, WEATHER_WORDS), key=len, reverse=True)),
                         re.IGNORECASE)
#: Topics a shop's customers ask about that merely mention weather ("台风天还发货吗",
#: "下雨天快递会延迟吗", "买的雨伞坏了能保修吗"): the question is not about the weather.
_OFF_TOPIC_RE = re.compile(
    r"发货|送货|到货|快递|包裹|物流|订单|下单|退货|退款|换货|保修|售后|客服|包邮|发票|价格|多少钱"
    r"|优惠|运费|门店|店铺|app|买的|购买|坏了|质量问题", re.IGNORECASE)
#: Words that carry no topic of their own in a weather question (the rest must be nearly empty
#: for a question that names no place: "今天外面冷吗" yes, "雨衣尺码偏大吗" no).
_FILLER_RE = re.compile(
    r"请问|帮我|帮忙|查询|查一下|查查|查|看一下|看看|想看|想知道|告诉我|一下|我想|我这边|这边|这里"
    r"|外面|出门|出去|早上|上午|中午|下午|傍晚|晚上|夜里|白天|还在|还会|还|会不会|要不要|需不需要"
    r"|需要|是不是|有没有|会|要|能|可以|有|是|的|了|吗|呢|吧|啊|呀|么|嘛|怎么样|怎样|怎么|如何|咋样"
    r"|多少|几|度|大|小|高|低|强|弱|不|最|穿|外套|秋裤|毛衣|短袖|衣服|戴|口罩|变化|严重|厉害")
_QUESTION_RE = re.compile(
    r"[吗嘛么呢？?]|怎么样|怎样|如何|咋样|多少|几度|会不会|要不要|有没有|是不是|能不能|需不需要"
    r"|查|看看|告诉我|啥|什么|哪|(.)不\1")
#: Remarks rather than questions: exclamations, complaints, past events.
_REMARK_RE = re.compile(r"[了啊呀哦哇吧！!]|太|真|好[冷热晒闷]|死了|受不了|讨厌|不想")
_FOLLOWUP_HEAD = re.compile(r"^(?:那么|那|还有|再看看|再查查?|看看|查查?|换成|换)\s*")
_FOLLOWUP_TAIL = re.compile(r"(?:的?呢|怎么样|咋样|如何|的?天气|天气如何|会怎样|会怎么样)?"
                            r"[\s？?。.!！~～…,，]*$")
_PUNCT = re.compile(r"[\s？?。.!！~～…,，、:：;；\"'“”‘’()（）]+")


@dataclass
class Question:
    text: str
    mentions: list[Mention] = field(default_factory=list)
    spots: list[Spot] = field(default_factory=list)
    days: DayQuery = field(default_factory=DayQuery)
    weather_word: bool = False
    question: bool = False
    followup: bool = False
    #: Little besides weather words, days, places and filler: the question is about weather.
    topical: bool = False
    #: A shop topic (发货, 快递, 退款...) is the point of the message, not the weather.
    off_topic: bool = False


def understand(text: str, index: PlaceIndex, today: date, max_days: int = 7) -> Question:
    text = unicodedata.normalize("NFKC", text).strip()  # full-width digits and marks -> ASCII
    q = Question(text=text)
    weather_spans = [m.span() for m in _WEATHER_RE.finditer(text)]
    q.weather_word = bool(weather_spans)
    # Multi-character weather words never hold a place name; single ones may (凉山, 雨城, 晴隆).
    masked = [span for span in weather_spans if span[1] - span[0] > 1]
    # Places first, so a day word cannot start inside one (昆明天气); then places again with the
    # days masked, so a place cannot borrow a day word's character (今天水温 holds no 天水).
    places_first = index.find(text, mask=masked)
    q.days = parse_days(text, today, max_days, protect=[(m.start, m.end) for m in places_first])
    q.mentions = index.find(text, mask=q.days.spans + masked)
    seen: set[str] = set()
    for mention in q.mentions:
        if mention.place.adcode in seen:
            continue
        seen.add(mention.place.adcode)
        place = mention.place
        q.spots.append(Spot(key=place.key, name=index.display_name(place), lat=place.lat, lon=place.lon))
        if len(q.spots) == MAX_PLACES:
            break
    q.followup = _is_followup(text, q)
    q.question = _is_question(text, q, weather_spans)
    q.off_topic = bool(_OFF_TOPIC_RE.search(text))
    rest = _blank(text, weather_spans + q.days.spans + [(m.start, m.end) for m in q.mentions])
    rest = _FILLER_RE.sub("", _PUNCT.sub("", rest))
    q.topical = len(rest) <= TOPICAL_REST
    return q


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    chars = list(text)
    for start, end in spans:
        for i in range(start, min(end, len(chars))):
            chars[i] = " "
    return "".join(chars)


def _is_followup(text: str, q: Question) -> bool:
    """Only places and days, in a follow-up frame: 那上海呢？ 后天呢 广州 那明天杭州怎么样."""
    if not (q.mentions or q.days.found):
        return False
    core = _blank(text, [(m.start, m.end) for m in q.mentions] + q.days.spans)
    core = _FOLLOWUP_TAIL.sub("", _FOLLOWUP_HEAD.sub("", core.strip()))
    core = _PUNCT.sub("", core)
    core = re.sub(r"[和跟与还有的也]", "", core)
    return core == ""


def _is_question(text: str, q: Question, weather_spans: list[tuple[int, int]]) -> bool:
    if _QUESTION_RE.search(text):
        return True
    if _REMARK_RE.search(text):
        return False
    # A terse query: little besides weather words, places and days ("明天下雨", "上海天气").
    rest = _PUNCT.sub("", _blank(text, weather_spans + q.days.spans
                                 + [(m.start, m.end) for m in q.mentions]))
    return len(rest) <= 3

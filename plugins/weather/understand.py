"""Reading a weather question: places, days, and whether it is a question at all.

``understand(text, index, today)`` returns a ``Question``; the plugin then decides with the
conversation context (see ``Plugin.skillbot_handle`` and docs/weather.md):

* ``weather_word``: the text names weather (天气, 下雨, 冷, 几度...);
* ``question``: it asks something (吗/呢/？, 怎么样, 多少, 冷不冷, 会不会...) or is a terse query
  ("上海天气", "明天下雨") rather than a remark ("天气太冷了我不想上班");
* ``followup``: it is only a place and/or a day, optionally wrapped in 那...呢 / ...怎么样
  ("那上海呢？", "后天呢", "广州"), which only means weather right after a weather answer;
* ``place_and_day``: a follow-up shape naming both a place and a day ("上海明天", "Chengdu
  tomorrow", "hangzhou mingtian"): nothing but where and when is asked, so it is a weather
  question even with no weather word and no answer before it;
* ``topical``: almost nothing is left besides weather words, days, places and filler, so a
  question without a place is still about the weather ("今天外面冷吗", not "雨衣尺码偏大吗");
* ``off_topic``: a shop topic is the point ("台风天还发货吗", "下雨天快递会延迟吗"): a shop word
  in the clause that holds a weather word or the question (a clause of its own is context:
  "快递说明天到，北京明天会下雪吗" asks the weather);
* ``clause_topical``: some clause with a weather word holds little else (places, days, filler):
  "哈尔滨冰雪大世界什么时候开放" names a place and 雪 but asks about something else;
* ``about_weather``: a question about weather as a subject, not a forecast ("台风是怎么形成的",
  "天气预报是怎么做出来的", "为什么会下雨", "降温了怎么保暖"), weather as the premise of another
  question when no place or day is named ("天气热了吃什么好"), about the climate (a season or a
  habit and no day: "上海冬天冷不冷"), or asking where ("云南哪里最凉快"): the skill leaves it
  to the chat model.

What to wear or do on a named day (羽绒服, 晒被子, 洗车, 爬山: ``WEATHER_DEPENDENT``) counts as a
weather word in a question that holds nothing else ("明天适合洗车吗"; not "我明天跑步能减肥吗").

The text is normalised first (``normalize.py``: traditional characters, full-width forms,
emoji, pinyin and English place, day and weather words). Three rules keep ordinary words out:

* a one-character weather word (冷, 热, 风, 雨...) counts only where jieba cuts it alone or in a
  weather-shaped word (好冷, 风大, 冷不冷), not inside another word (热门, 风险, 雪糕, 冷笑话);
  a longer one that is also part of other words (太阳, 高温: ``BOUNDED``) only where jieba cuts
  it whole (not 太阳能);
* a place name counts only at jieba word boundaries (上高速 holds no 上高县, 去看牡丹花 no
  牡丹区), unless a weather cue follows it (上高会下雨吗, 晴隆明天天气);
* a typed neighbour of 天气 or 下雨 (天汽, 天器, 下鱼: any two common characters that sound tian
  qi or xia yu, see data/sound_alikes.tsv) is a weather word only when the message also names a
  place or a day; a province or city name typed by sound (深证, 杭洲) is a place only in a
  message with a weather word, and with a weather cue right after it (深证天气, 广洲会下雨吗).

The Chinese words below are what the skill *reads*; everything it says is in templates.
"""
from __future__ import annotations

import csv
import functools
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable

from .dates import DayQuery, parse_days
from .normalize import normalize
from .places import Mention, PlaceIndex
from .service import Spot

SOUND_ALIKES = Path(__file__).parent / "data" / "sound_alikes.tsv"
#: Question words of the sound-alike table (its other words are weather words), read only with
#: their last character typed by sound (怎么洋).
QUESTION_ALIKES = frozenset({"怎么样"})

MAX_PLACES = 3
#: Times a text is scanned again for a place name hidden by a dropped one (早上杭州).
MAX_RESCANS = 2
#: At most this many characters may be left once weather words, days, places and filler are
#: removed, for a question without a place to count as a weather question.
TOPICAL_REST = 3
#: At most this many characters may be left in some clause holding a weather word for a question
#: that names a place to count (``clause_topical``). Laxer than ``TOPICAL_REST``: it vetoes a
#: question that names a place and a weather word only when the clause clearly has a topic of
#: its own (哈尔滨冰雪大世界什么时候开放 leaves 8), not a chatty one (想问问那边天气冷不冷).
CLAUSE_REST = 5

#: Words that make a message about the weather (the router's keywords are the same family).
WEATHER_WORDS = (
    "天气", "气温", "温度", "预报", "下雨", "下雪", "降雨", "降雪", "降温", "升温", "回升", "雨", "雪",
    "冷", "热", "凉", "暖和", "风", "刮风", "风力", "大风", "台风", "晴", "阴天", "多云", "雾", "霾",
    "雾霾", "带伞", "打伞", "雨伞", "几度", "多少度", "湿度", "冰雹", "雷阵雨", "沙尘", "紫外线",
    "寒潮", "空气质量", "空气", "pm2.5", "aqi",
    # phenomena and measures a forecast gives: thunder, visibility, frost, the day's range
    "打雷", "雷电", "雷雨", "能见度", "霜冻", "结冰", "温差", "体感", "高温", "低温",
    "出太阳", "太阳", "闷", "闷热", "潮湿", "湿", "晒",
    # amounts of rain and snow (下暴雨: the 下 goes with them)
    "暴雨", "大雨", "中雨", "小雨", "暴雪", "大雪", "中雪", "小雪", "雨夹雪", "冻雨",
    "下暴雨", "下大雨", "下中雨", "下小雨", "下暴雪", "下大雪", "下小雪",
    # Cantonese (after traditional -> simplified): 落雨 rain, 凍/冻 cold, 打风 typhoon signal,
    # 带遮 take an umbrella
    "落雨", "落雪", "冻", "打风", "翻风", "天文台", "回南天", "几多度", "带遮",
)
#: One-character weather words that count only inside a longer weather-shaped word (晒不晒, 好晒,
#: 湿不湿), never alone (晒单, 衣服湿了).
SHAPED_ONLY = frozenset({"晒", "湿"})
#: Longer weather words that are also part of other words (太阳能, 高温杀菌): they count only where
#: jieba cuts them as a word of their own.
BOUNDED = frozenset({"太阳", "高温", "低温", "大雪", "小雪", "体感", "空气"})
#: Things people do or wear whose answer is the forecast: clothing, chores that need sun or dry
#: air, outdoor plans ("明天要穿羽绒服吗", "周末能晒被子吗", "明天适合洗车吗", "杭州明天适合爬山吗").
#: They ask the weather only in a question that names a day and holds little else.
WEATHER_DEPENDENT = (
    r"羽绒服|棉袄|棉衣|大衣|外套|毛衣|秋裤|棉裤|保暖内衣|短袖|短裤|裙子|衬衫|卫衣|风衣|冲锋衣|帽子"
    r"|围巾|手套|雨衣|雨鞋|雨靴|穿什么|穿啥|穿几件|穿多少|穿多厚|怎么穿|厚衣服|薄衣服"
    r"|洗车|晒被子|晒被|晒衣服|晾衣服|晾被子|洗衣服|晒太阳"
    r"|爬山|登山|出去玩|出游|郊游|踏青|野餐|露营|钓鱼|跑步|晨跑|夜跑|骑车|骑行|户外|海边|看海"
    r"|放风筝|看日出|看日落|日出|日落|看星星|赏雪|看雪|滑雪|出海|下海")
_DEPENDENT_RE = re.compile(WEATHER_DEPENDENT)
#: Verbs jieba may glue to such a word (戴帽子, 穿大衣): the word still counts.
_WEAR_VERBS = frozenset("穿戴带去")
#: At most this many characters may be left besides such words, weather words, days, places and
#: filler for them to ask the weather: 明天适合洗车吗 leaves none, 明天跑步能减肥吗 leaves 减肥.
DEPENDENT_REST = 1
#: Weather words that measure anything (水的沸点是多少度): alone they ask the weather only with a
#: place, a day or the open air (外面几度) named, or right after a weather answer.
MEASURES = frozenset({"几度", "多少度", "几多度"})
_MEASURE_CONTEXT_RE = re.compile(r"外面|室外|户外|出门|外头")
#: One-character weather words inside a longer jieba token count only when every other
#: character of the token is one of these (好冷, 风大, 冷不冷, 有雨), so 热门, 风险, 雪糕 and 冷笑话
#: are not weather.
WEATHER_SHAPE = frozenset("好很太真超挺蛮巨贼特最更不没有大小中暴阵下刮降变转多少吗了啊吧呢么嘛呀"
                          "天气冷热凉风雨雪晴雾霾阴寒炎闷冰微强快死空浪朗夹雷冻湿干爽暖会落紧淋晒")
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
    r"|多少|几|度|大|小|高|低|强|弱|不|最|穿|外套|秋裤|毛衣|短袖|衣服|戴|口罩|变化|严重|厉害"
    r"|适合|合适|还是|去|很|非常|特别|比较|一点|级|看到|看得到|看见"
    # voice input and chat openers: 那个我想问一下就是明天上海那边会不会下雨啊
    r"|那个|就是说|就是|然后|嗯|喂|你好|您好|谢谢|麻烦|想问|问一下|问问|那边|我")
_QUESTION_RE = re.compile(
    r"[吗嘛么呢？?]|怎么样|怎样|如何|咋样|多少|几度|会不会|要不要|有没有|是不是|能不能|需不需要"
    r"|查|看看|告诉我|啥|什么|哪|几[件级层]|(.)不\1"
    r"|点样|点呀|咩|乜|(.)唔\2|有冇|系咪"  # Cantonese
    r"|\b(?:is|are|will|what|whats|how|hows|does|do|should|can|any)\b")
#: Filler of Cantonese and English weather questions (after normalisation, which has turned the
#: English place, day and weather words into Chinese already).
_FILLER_EXTRA_RE = re.compile(
    r"点样|点呀|咩|乜嘢|会唔会|系咪|有冇|唔|啲|嘅|喺|出街"
    r"|\b(?:is|are|it|in|at|for|of|the|a|an|will|be|there|what|whats|how|hows|like|does|do|i|"
    r"need|should|going|to|get|any|s|me|tell|check|please|outside|out|very|so|on|district|city"
    r"|county|area|downtown)\b")
#: A question about weather as a subject, not about the forecast: how it forms, why, what it
#: means, how forecasts are made, records, what to do about it; or a language task on weather
#: words (translate, write a poem). The chat model answers those.
_ABOUT_WEATHER_RE = re.compile(
    r"为什么|为啥|为何|怎么形成|如何形成|形成的|怎么产生|如何产生|产生的|怎么来的|是怎么(?!样)"
    r"|是如何|原理|成因|原因|什么是|什么叫|啥是|啥叫|什么意思|区别|危害|科普|定义|含义"
    r"|做出来|怎么预测|如何预测|准不准|准确率|英文|英语|怎么说|怎么读|分几级|几个等级|等级划分|世界上|全世界"
    r"|全球|地球上|历史上|有史以来|纪录|(?:做|干)什么的|干嘛的|什么机构"
    r"|怎么(?![样了啦啊呀回])[\u4e00-\u9fff]"  # 怎么 + a verb asks how to do something (怎么穿), not how it is
    r"|注意什么|注意事项|怎么办|如何预防|怎么预防|怎么防"  # advice: what to do about the weather
    r"|翻译|translate|写一[首篇段句个]|造句|作文|诗|歌词|成语|谚语|俗语"  # language tasks
    r"|\b(?:why|cause[sd]?|form(?:s|ed)?|means?|meaning|difference|explain)\b")  # the same in English
#: A season or a habit instead of a day: the climate, not a forecast ("上海冬天冷不冷",
#: "深圳一般几月下雨", "哈尔滨的年平均气温"); counts only when no day is named.
_CLIMATE_RE = re.compile(r"[春夏秋冬][天季]|四季|每年|常年|历年|往年|年平均|平均(?:气温|温度)|一般|通常"
                         r"|一年|全年|年均"
                         r"|\b(?:spring|summer|autumn|fall|winter|usually|normally|average|every year)\b")
#: A question whose answer is a place ("云南哪里最凉快", "中国哪个城市最冷"): no forecast answers it.
_WHERE_RE = re.compile(r"哪里|哪儿|哪边|什么地方|哪个(?:城市|地方|省|国家|区)")
#: What may follow 了 after a weather word for it to stay the question (下雨了吗, 冷了没, 好冷了啊).
_PREMISE_STOP = frozenset("吗嘛么呢没吧啊呀哦哈,，.。!！?？~～… ")
#: A weather condition named as a kind of day (下雨天, 雾霾天, 台风天): without a place or a day
#: the question is what to do on such days ("雾霾天戴什么口罩好"), not a forecast.
_CONDITION_DAY_RE = re.compile(r"(?:下雨|下雪|雾霾|台风|刮风|大风|暴雨|雨|雪|霾)天(?!气)"
                               r"|(?:闷热|炎热|酷热|高温|低温|寒冷|严寒|阴冷|湿冷|潮湿|干燥|下雨|下雪|这种|这样的)的?天气(?=.)")
#: Verbs whose object is a thing, not a place: a place name right after one (看牡丹, 买长安,
#: 喝青岛) is that thing unless a weather or day word follows it directly (看北京明天天气).
_THING_VERBS = frozenset("看赏买卖吃喝种养拍摘采送玩听唱读写画学穿戴用开")
#: What may follow a place name that jieba does not cut as a word, for it to count anyway
#: (上高会下雨吗, 晴隆明天天气, 凤凰古城, 北京西站): the end, punctuation, a question word, a word that
#: continues a place (古城, 机场, 附近...), or the start of a weather word or a day word (checked
#: separately). The name must still start where jieba starts a word (凤凰古城 holds no 古城区).
_CUE_AFTER = re.compile(r"[\s的]*(?:$|[?？!！。.,，、~～…呢吗会有要冷热]"
                        r"|古城|古镇|岛|机场|景区|火车站|高铁站|[东西南北]?站|市区|县城|城区|那边|这边|一带|附近|地区)")
#: What may stand between places named together (北京和上海天气): one weather word after the
#: last of them is about all of them.
_TOGETHER = " \t\u3000的和跟与、,，及还有"
#: Skipped between a place name and its cue.
_SPACES = " \t\u3000"
#: Remarks rather than questions: exclamations, complaints, past events.
_REMARK_RE = re.compile(r"[了啊呀哦哇吧！!]|太|真|好[冷热晒闷]|死了|受不了|讨厌|不想")
_FOLLOWUP_HEAD = re.compile(r"^(?:那么|那|还有|再看看|再查查?|看看|查查?|换成|换|and|what about|how about)\s*")
_FOLLOWUP_TAIL = re.compile(r"(?:的?呢|怎么样|咋样|如何|的?天气|天气如何|会怎样|会怎么样)?"
                            r"[\s？?。.!！~～…,，]*$")
_PUNCT = re.compile(r"[\s？?。.!！~～…,，、:：;；\"'“”‘’()（）]+")
#: What ends a clause (not spaces: English questions are written with them): punctuation, or
#: a question particle followed by more text (people leave the comma out: 深圳股票涨了吗天气怎么样).
_CLAUSE_END = re.compile(r"[？?。!！~～…,，;；\n]+|(?<=[吗呢啊呀吧])(?=[\u4e00-\u9fff])"
                         r"|因为|所以|然后|但是|不过|而且")


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
    #: Only a place and a day (上海明天, Chengdu tomorrow): a weather question with no weather word.
    place_and_day: bool = False
    #: Some clause holding a weather word holds little else (see ``topical``).
    clause_topical: bool = False
    #: A question about weather as a subject (台风是怎么形成的), not a forecast.
    about_weather: bool = False
    #: The only weather words are measures (几度, 多少度) with no place, day or open air named:
    #: weather only right after a weather answer (水的沸点是多少度 is not).
    measure_only: bool = False

    def describe(self) -> str:
        """What the reading found, in a line (the scorer's slot ``reading``, shown by ``run.py route``)."""
        parts = [f"places {','.join(s.name for s in self.spots)}" if self.spots else "no place",
                 "days " + ("now" if self.days.current and not self.days.dates else
                            ",".join(d.isoformat() for d in self.days.dates) or "past/beyond")
                 if self.days.found else "no day"]
        for flag in ("weather_word", "question", "followup", "place_and_day", "topical",
                     "clause_topical", "off_topic", "about_weather", "measure_only"):
            if getattr(self, flag):
                parts.append(flag)
        return "; ".join(parts)


def understand(text: str, index: PlaceIndex, today: date, max_days: int = 7,
               cut: Callable[[str], list[str]] | None = None) -> Question:
    """Read ``text``. ``cut`` is a jieba cut (the plugin gives the bot's segmenter's): without
    one, word boundaries are not checked (every name and one-character weather word counts)."""
    text = _typed_questions(normalize(text, index))
    q = Question(text=text)
    cuts = _WordCuts(text, cut)
    # Multi-character weather words never hold a place name; single ones may (凉山, 雨城, 晴隆).
    found_words = _weather_words(text, cuts)
    masked = [span for span in found_words if span[1] - span[0] > 1]
    # A one-character word stands for the weather-shaped word it is in (好冷, 雨淋, 冷不冷).
    weather_spans = [cuts.token_of(*span) if span[1] - span[0] == 1 else span for span in found_words]
    loose_days = parse_days(text, today, max_days).spans
    cue_starts = {start for start, _ in weather_spans + loose_days}

    def grounded(mentions: list[Mention]) -> list[Mention]:
        kept = []
        for m in mentions:
            if m.qualified:
                kept.append(m)
            elif m.start > 0 and text[m.start - 1] in _THING_VERBS:
                if _strong_cue_after(text, m.end, cue_starts):
                    kept.append(m)
            elif cuts.whole(m.start, m.end) or (cuts.starts(m.start)
                                                 and _cue_after(text, m.end, cue_starts)):
                kept.append(m)
        return kept

    # Places first, so a day word cannot start inside one (昆明天气); then places again with the
    # days masked, so a place cannot borrow a day word's character (今天水温 holds no 天水).
    def find(mask: list[tuple[int, int]]) -> list[Mention]:
        # The scan is leftmost-longest, so a name that fails the word-boundary rules may hide
        # one that starts inside it (早上杭州: 上杭 is found first, then dropped): the first
        # character of a dropped name is masked and the text scanned again.
        kept: list[Mention] = []
        for _ in range(MAX_RESCANS + 1):
            found = index.find(text, mask=mask)
            good = grounded(found)
            kept += [m for m in good if not _overlaps((m.start, m.end), [(k.start, k.end) for k in kept])]
            dropped = [m for m in found if m not in good]
            if not dropped:
                break
            mask = mask + [(m.start, m.start + 1) for m in dropped]
        return sorted(kept, key=lambda m: m.start)

    places_first = find(masked)
    q.days = parse_days(text, today, max_days, protect=[(m.start, m.end) for m in places_first])
    q.mentions = find(q.days.spans + masked)
    if q.mentions or q.days.named:
        taken = q.days.spans + [(m.start, m.end) for m in q.mentions] + weather_spans
        alikes = [span for span in _sound_alikes(text) if not _overlaps(span, taken)]
        weather_spans += alikes
        cue_starts |= {start for start, _ in alikes}
    if q.days.named:
        # What to wear or whether to go out on a named day asks the forecast (明天要穿羽绒服吗):
        # such words count as weather words when the message is a question.
        # Such words count only as whole words (跑步机, 洗车店 are not), in a question that
        # holds nothing else (明天跑步能减肥吗, 周末去爬山带什么吃的 ask something else).
        found = weather_spans + q.days.spans + [(k.start, k.end) for k in q.mentions]
        dependent = [m.span() for m in _DEPENDENT_RE.finditer(text)
                     if (cuts.whole(*m.span()) or (text[m.start() - 1:m.start()] in _WEAR_VERBS
                                                   and cuts.whole(m.start() - 1, m.end())))
                     and not _overlaps(m.span(), found)]
        if dependent and (_QUESTION_RE.search(text) or "还是" in text) and len(
                _rest(_blank(text, found + dependent))) <= DEPENDENT_REST:
            weather_spans += dependent
            cue_starts |= {start for start, _ in dependent}
    if weather_spans and not q.mentions:
        # A place name typed by sound (深证天气) counts only with a weather word in the message, a
        # weather cue right after it, and no place typed right (安吉...想去竹海 is not 珠海).
        taken = q.days.spans + masked
        q.mentions = sorted(q.mentions + [
            m for m in index.find_alikes(text, mask=taken)
            if not _overlaps((m.start, m.end), weather_spans) and cuts.starts(m.start)
            and _cue_after(text, m.end, cue_starts)],
            key=lambda m: m.start)
    q.weather_word = bool(weather_spans)
    # 多少度 alone measures anything (水的沸点是多少度): it asks the weather of a place, a day,
    # the open air, or right after a weather answer (the plugin knows that).
    q.measure_only = bool(weather_spans) and not (
        q.mentions or q.days.named or _MEASURE_CONTEXT_RE.search(text)
        or any(text[a:b] not in MEASURES for a, b in weather_spans))
    q.mentions = _asked(text, q.mentions, {start for start, _ in weather_spans})
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
    q.place_and_day = q.followup and bool(q.spots) and q.days.named
    q.question = _is_question(text, q, weather_spans)
    # Weather as a premise (天气热了吃什么好, 天冷了养什么花): a weather word, 了, then more
    # that is not a particle: the question is what to do about it, when no place or day is named.
    premise = any(text[end:end + 1] == "了" and end + 1 < len(text) and text[end + 1] not in _PREMISE_STOP
                  for _, end in weather_spans)
    q.about_weather = bool(q.weather_word and (
        _ABOUT_WEATHER_RE.search(text) or _WHERE_RE.search(text)
        or (not q.days.named and _CLIMATE_RE.search(text))
        or (not q.spots and not q.days.named and (premise or _CONDITION_DAY_RE.search(text)))))
    blanked = _blank(text, weather_spans + q.days.spans + [(m.start, m.end) for m in q.mentions])
    q.topical = len(_rest(blanked)) <= TOPICAL_REST
    clauses = _clauses(text)
    if len(clauses) == 1:  # most messages: the clause is the text
        q.clause_topical = bool(weather_spans) and len(_rest(blanked)) <= CLAUSE_REST
        q.off_topic = bool(_OFF_TOPIC_RE.search(text))
        return q
    shop = bool(_OFF_TOPIC_RE.search(text))
    for start, end in clauses:
        weather_here = any(start <= a < end for a, _ in weather_spans)
        if weather_here and not q.clause_topical:
            q.clause_topical = len(_rest(blanked[start:end])) <= CLAUSE_REST
        if shop and not q.off_topic:
            clause = text[start:end]
            q.off_topic = bool((weather_here or _QUESTION_RE.search(clause)) and _OFF_TOPIC_RE.search(clause))
    return q


def _weather_words(text: str, cuts: "_WordCuts") -> list[tuple[int, int]]:
    """Spans of the weather words that count; a word that does not count (高温 in 最高温度, cut
    最高/温度) may hide one starting inside it, so the scan goes on from its second character."""
    spans, pos = [], 0
    while (m := _WEATHER_RE.search(text, pos)) is not None:
        if _counts(m, cuts):
            spans.append(m.span())
            pos = m.end()
        else:
            pos = m.start() + 1
    return spans


def _counts(match: re.Match, cuts: "_WordCuts") -> bool:
    """Does a weather word found in the text count? One character: alone or weather-shaped
    (see ``WEATHER_SHAPE``); a ``BOUNDED`` word: cut as a word of its own."""
    word = match.group().lower()
    if len(word) == 1:
        if word in SHAPED_ONLY:  # in a longer weather-shaped word, or asked A不A (晒不晒)
            i = match.start()
            asked = f"{word}不{word}" in (match.string[i:i + 3], match.string[max(i - 2, 0):i + 1])
            return asked or (cuts.weather_char(i) and cuts.token_of(i, i + 1) != (i, i + 1))
        return cuts.weather_char(match.start())
    return word not in BOUNDED or cuts.whole(match.start(), match.end())


def _rest(blanked: str) -> str:
    """What is left of a text whose weather words, days and places are blanked, once filler and
    punctuation go: the message's own topic, if it has one."""
    return _FILLER_RE.sub("", _PUNCT.sub("", _FILLER_EXTRA_RE.sub("", blanked)))


def _clauses(text: str) -> list[tuple[int, int]]:
    """(start, end) of each clause: the text cut at punctuation that ends one."""
    spans, start = [], 0
    for m in _CLAUSE_END.finditer(text):
        if m.start() > start:
            spans.append((start, m.start()))
        start = m.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def _asked(text: str, mentions: list[Mention], weather_starts: set[int]) -> list[Mention]:
    """The places the weather is asked for: when some places are followed by a weather word
    (alone or named together: 北京和上海天气) and others are not, the others are context
    ("明天从上海飞成都，成都天气怎么样" asks for 成都)."""
    if len(mentions) < 2:
        return mentions
    spans = {m.start: m.end for m in mentions}
    asked = []
    for m in mentions:
        pos = m.end
        while pos < len(text):
            if text[pos] in _TOGETHER:
                pos += 1
            elif pos in spans:
                pos = spans[pos]
            else:
                break
        if pos in weather_starts:
            asked.append(m)
    return asked if asked else mentions


def _overlaps(span: tuple[int, int], others: list[tuple[int, int]]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in others)


def _cue_after(text: str, end: int, cue_starts: set[int]) -> bool:
    """A weather cue right after a place name: end of text, punctuation, 会/有/要/冷..., or the
    start of a weather word or a day word (spaces and 的 skipped)."""
    pos = end
    while pos < len(text) and text[pos] in _SPACES + "的":
        pos += 1
    return pos in cue_starts or bool(_CUE_AFTER.match(text, pos))


def _strong_cue_after(text: str, end: int, cue_starts: set[int]) -> bool:
    """A weather word or a day word right after a place name (spaces and 的 skipped)."""
    pos = end
    while pos < len(text) and text[pos] in _SPACES + "的":
        pos += 1
    return pos in cue_starts


@functools.lru_cache(maxsize=1)
def _sound_alike_re() -> re.Pattern:
    """Two characters that sound like a trigger word (天汽, 天器, 田七 for 天气), from the table
    built by data/build_sound_alikes.py; the trigger words themselves are left out."""
    positions: dict[str, dict[int, str]] = {}
    with SOUND_ALIKES.open(encoding="utf-8") as f:
        rows = csv.DictReader((line for line in f if not line.startswith("#")), delimiter="\t")
        for row in rows:
            positions.setdefault(row["word"], {})[int(row["position"])] = row["characters"]
    parts = []
    for word, chars in positions.items():
        if word in QUESTION_ALIKES:
            continue
        classes = "".join(f"[{re.escape(chars[i])}]" for i in sorted(chars))
        parts.append(f"(?!{re.escape(word)}){classes}")
    return re.compile("|".join(parts))


@functools.lru_cache(maxsize=1)
def _question_alike_re() -> re.Pattern:
    """怎么样 with its last character typed by sound (怎么洋, 怎么阳), ending a clause."""
    last: dict[str, str] = {}
    with SOUND_ALIKES.open(encoding="utf-8") as f:
        rows = csv.DictReader((line for line in f if not line.startswith("#")), delimiter="\t")
        for row in rows:
            if row["word"] in QUESTION_ALIKES and int(row["position"]) == len(row["word"]) - 1:
                last[row["word"]] = row["characters"].replace(row["word"][-1], "")
    parts = [f"{re.escape(word[:-1])}[{re.escape(chars)}]" for word, chars in last.items() if chars]
    return re.compile(f"(?:{'|'.join(parts)})(?=$|[\\s?？!！。.,，~～…呢啊呀吗])")


def _typed_questions(text: str) -> str:
    """The text with 怎么洋 read as 怎么样 (same length, so spans stay put)."""
    words = {word[:-1]: word for word in QUESTION_ALIKES}
    return _question_alike_re().sub(lambda m: words[m.group()[:-1]], text)


def _sound_alikes(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _sound_alike_re().finditer(text)]


class _WordCuts:
    """Where jieba cuts ``text`` into words, computed on first use."""

    def __init__(self, text: str, cut: Callable[[str], list[str]] | None) -> None:
        self.text = text
        self.cut = cut
        self._tokens: list[tuple[int, int]] | None = None

    @property
    def tokens(self) -> list[tuple[int, int]] | None:
        if self._tokens is None and self.cut is not None:
            pieces = self.cut(self.text)
            if "".join(pieces) != self.text.lower():  # a character changed length: trust no cut
                self.cut = None
                return None
            self._tokens, pos = [], 0
            for piece in pieces:
                self._tokens.append((pos, pos + len(piece)))
                pos += len(piece)
        return self._tokens

    def starts(self, start: int) -> bool:
        tokens = self.tokens
        return tokens is None or start in {s for s, _ in tokens}

    def whole(self, start: int, end: int) -> bool:
        """Does a word boundary fall at ``start`` and at ``end``?"""
        tokens = self.tokens
        if tokens is None:
            return True
        starts = {s for s, _ in tokens}
        return start in starts and (end == len(self.text) or end in starts)

    def token_of(self, start: int, end: int) -> tuple[int, int]:
        """The span of the word holding ``start:end`` (itself without a cut)."""
        for a, b in self.tokens or ():
            if a <= start and end <= b:
                return a, b
        return start, end

    def weather_char(self, pos: int) -> bool:
        """Is the one-character weather word at ``pos`` a word of its own or weather-shaped?"""
        for start, end in self.tokens or ():
            if start <= pos < end:
                return all(ch in WEATHER_SHAPE for ch in self.text[start:end])
        return True


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    chars = list(text)
    for start, end in spans:
        for i in range(start, min(end, len(chars))):
            chars[i] = " "
    return "".join(chars)


def _is_followup(text: str, q: Question) -> bool:
    """Only places and days, in a follow-up frame: 那上海呢？ 后天呢 广州 那明天杭州怎么样."""
    if not (q.mentions or q.days.named):
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
    # A terse query: little besides weather words, places, days and English function words
    # ("明天下雨", "上海天气", "weather in chengdu the day after tomorrow").
    rest = _PUNCT.sub("", _FILLER_EXTRA_RE.sub("", _blank(text, weather_spans + q.days.spans
                                                          + [(m.start, m.end) for m in q.mentions])))
    return len(rest) <= 3

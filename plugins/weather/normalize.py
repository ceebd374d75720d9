"""The weather skill's text normaliser: one canonical form before places and days are read.

``normalize(text, index)``:

* NFKD, accents dropped: full-width letters, digits and marks become ASCII (ＨＩ -> HI, ？ -> ?),
  pinyin with tone marks loses them (Běijīng -> Beijing);
* traditional -> simplified, character by character, from OpenCC's TSCharacters table
  (opencc-python-reimplemented ships it): 香港今日天氣點樣 -> 香港今日天气点样, 臺北 -> 台北;
* weather emoji become the word they show (🌧 -> 雨, ☀ -> 晴, 🌂 -> 雨伞; core's ``symbol_word``,
  from their Unicode names); other symbols and emoji go;
* latin words are read: place names in pinyin or English (beijing, Shang Hai, xi'an, Peking, Hong
  Kong; generated from the place table, see ``PlaceIndex.latin_word``), and pinyin and English
  day and weather words (jintian, mingtian, tianqi, tomorrow, weather, raining) are written in
  Chinese, so "shanghai jintian tianqi" reads 上海 今天 天气 and "Beijing weather tomorrow"
  reads 北京 天气 明天. Words are matched whole, alone or joined with their neighbours (Shang
  Hai, hong kong) or glued together (beijingtianqi); anything else is left as typed.

The core is getting a shared normaliser (issue 14); this one is kept small and in one place so
the two can be unified.
"""
from __future__ import annotations

import functools
import re
import unicodedata

from core import symbol_word
from core import t2s_table as core_t2s_table

from .places import PlaceIndex

#: Latin day and weather words (pinyin and English) and what they mean in Chinese. Keys are lower
#: case, letters only; several words are written joined ("day after tomorrow" -> dayaftertomorrow).
#: The English progressive means now: "is it raining" -> 在下雨 (read as current conditions).
LATIN_WORDS = {
    # days
    "jintian": "今天", "jinri": "今日", "today": "今天", "mingtian": "明天", "mingri": "明日",
    "tomorrow": "明天", "tmr": "明天", "tmrw": "明天", "tmw": "明天", "houtian": "后天", "dayaftertomorrow": "后天", "dahoutian": "大后天",
    "tonight": "今晚", "jinwan": "今晚", "thismorning": "今早", "tomorrowmorning": "明早",
    "yesterday": "昨天", "zuotian": "昨天", "now": "现在", "rightnow": "现在", "currently": "现在",
    "xianzai": "现在", "rn": "现在", "weekend": "周末", "thisweekend": "周末", "zhoumo": "周末",
    "nextweek": "下周", "xiazhou": "下周", "thisweek": "这周", "monday": "周一", "tuesday": "周二",
    "wednesday": "周三", "thursday": "周四", "friday": "周五", "saturday": "周六", "sunday": "周日",
    # weather
    "tianqi": "天气", "weather": "天气", "tianqiyubao": "天气预报", "weatherforecast": "天气预报",
    "forecast": "预报", "yubao": "预报", "rain": "下雨", "rains": "下雨", "raining": "在下雨",
    "rainy": "下雨", "xiayu": "下雨", "xiabuxiayu": "下不下雨", "snow": "下雪", "snowing": "在下雪",
    "snowy": "下雪", "xiaxue": "下雪", "temperature": "气温", "temperatures": "气温", "temp": "气温",
    "qiwen": "气温", "wendu": "温度", "hot": "热", "cold": "冷", "leng": "冷",
    "warm": "暖和", "wind": "风", "windy": "风", "sunny": "晴", "cloudy": "多云", "fog": "雾",
    "foggy": "雾", "haze": "雾霾", "smog": "雾霾", "typhoon": "台风", "taifeng": "台风",
    "humidity": "湿度", "humid": "湿度", "umbrella": "雨伞", "storm": "雷阵雨",
    "thunderstorm": "雷阵雨", "degrees": "度", "duoshaodu": "多少度", "jidu": "几度",
    "zenmeyang": "怎么样", "uv": "紫外线", "uvindex": "紫外线", "airquality": "空气质量",
    "pollution": "空气质量", "visibility": "能见度", "thunder": "打雷",
    # parts of the day (read as today when no other day is named, dates.py)
    "morning": "早上", "afternoon": "下午", "thisafternoon": "下午", "evening": "晚上",
    "thisevening": "今晚", "zaoshang": "早上", "shangwu": "上午", "xiawu": "下午", "wanshang": "晚上",
}
#: More English and pinyin weather questions: what to wear, how many degrees, air quality, re ma.
LATIN_WORDS.update({"wear": "穿什么", "howmanydegrees": "多少度", "kongqi": "空气",
                    "kongqizhiliang": "空气质量", "re": "热", "feng": "风", "dafeng": "大风",
                    "zhejitian": "这几天", "zheliangtian": "这两天"})
#: Spans of days in English (next 3 days, 7 day forecast).
LATIN_WORDS.update({"next": "未来", "day": "天", "days": "天", "nextfewdays": "未来几天",
                    "comingdays": "未来几天"})
#: Pinyin particles and little words of a weather question (chongqing zhe zhoumo hui xiayu ma).
LATIN_WORDS.update({"ma": "吗", "ne": "呢", "hui": "会", "huibuhui": "会不会", "zhe": "这",
                    "zheli": "这里", "nabian": "那边", "yaobuyao": "要不要", "daisan": "带伞"})
#: Pinyin "A bu A" questions of the weather adjectives (re bu re -> 热不热), typed apart or joined.
LATIN_WORDS.update({f"{py}bu{py}": f"{zh}不{zh}" for py, zh in
                    (("re", "热"), ("leng", "冷"), ("liang", "凉"), ("men", "闷"))})
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
LATIN_WORDS.update({f"next{day}": f"下周{'一二三四五六日'[i]}" for i, day in enumerate(_WEEKDAYS)})
LATIN_WORDS.update({f"this{day}": f"这周{'一二三四五六日'[i]}" for i, day in enumerate(_WEEKDAYS)})
#: Unicode categories dropped: symbols (emoji, ©, °), format and private-use characters,
#: combining marks (variation selectors, skin tones are Sk).
DROPPED = frozenset({"So", "Sk", "Cf", "Co", "Cs", "Mn", "Me"})
#: A latin word: letters, possibly with inner apostrophes (xi'an).
_LATIN = re.compile(r"[a-z]+(?:'[a-z]+)*")
#: What may separate latin words read as one name (Shang Hai, hong-kong).
_JOIN_GAP = re.compile(r"[ \t\-]*")
#: Most latin words read as one name or phrase (hong kong island, day after tomorrow).
MAX_JOINED = 4
#: A glued word (beijingtianqi) is split into at most this many known pieces.
MAX_PIECES = 3
#: Shortest piece of a glued word that may be a place (pinyin names have 2 syllables or more).
MIN_PLACE_PIECE = 4
#: Longer latin words are not split into pieces (no name and day glued together is this long).
MAX_GLUED = 40


@functools.lru_cache(maxsize=1)
def t2s_table() -> dict[int, str]:
    """Core's traditional -> simplified table (OpenCC's TSCharacters) as a ``str.translate`` table."""
    return {ord(source): target for source, target in core_t2s_table().items()}


def _symbols(text: str) -> str:
    out = []
    for ch in text:
        word = symbol_word(ch)
        if word is not None:
            out.append(word)
        elif unicodedata.category(ch) not in DROPPED:
            out.append(ch)
    return "".join(out)


def _key(word: str) -> str:
    if word.endswith("'s"):  # hangzhou's weather
        word = word[:-2]
    return word.replace("'", "")


def _meaning(key: str, index: PlaceIndex) -> str | None:
    return LATIN_WORDS.get(key) or index.latin_word(key)


def _split_glued(key: str, index: PlaceIndex) -> list[str] | None:
    """A glued word made of known pieces (beijingtianqi -> 北京, 天气), or None."""
    if len(key) > MAX_GLUED:
        return None
    best: dict[int, list[str]] = {0: []}
    for end in range(1, len(key) + 1):
        for start in range(max(0, end - 24), end):
            if start not in best or len(best[start]) >= MAX_PIECES:
                continue
            piece = key[start:end]
            meaning = LATIN_WORDS.get(piece)
            if meaning is None and len(piece) >= MIN_PLACE_PIECE:
                meaning = index.latin_word(piece)
            if meaning is not None and (end not in best or len(best[end]) > len(best[start]) + 1):
                best[end] = best[start] + [meaning]
    pieces = best.get(len(key))
    return pieces if pieces and len(pieces) >= 2 else None


def read_latin(text: str, index: PlaceIndex) -> str:
    """Latin place, day and weather words written in Chinese; ``text`` is lower case."""
    words = list(_LATIN.finditer(text))
    if not words:
        return text
    out: list[str] = []
    pos = 0
    i = 0
    while i < len(words):
        found = None
        for j in range(min(len(words), i + MAX_JOINED), i, -1):
            gaps_ok = all(_JOIN_GAP.fullmatch(text[words[k].end():words[k + 1].start()])
                          for k in range(i, j - 1))
            if not gaps_ok:
                continue
            meaning = _meaning("".join(_key(w.group()) for w in words[i:j]), index)
            if meaning is not None:
                found = (j, meaning)
                break
        if found is None:
            pieces = _split_glued(_key(words[i].group()), index)
            if pieces is not None:
                found = (i + 1, " ".join(pieces))
        if found is None:
            i += 1
            continue
        j, meaning = found
        out.append(text[pos:words[i].start()])
        out.append(meaning)
        pos = words[j - 1].end()
        i = j
    out.append(text[pos:])
    return "".join(out)


def normalize(text: str, index: PlaceIndex) -> str:
    """The canonical form of a weather message (see the module docstring)."""
    text = unicodedata.normalize("NFKD", text).replace("\u2019", "'")
    text = unicodedata.normalize("NFC", _symbols(text.translate(t2s_table()))).lower()
    return read_latin(text, index).strip()

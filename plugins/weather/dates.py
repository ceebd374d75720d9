"""Which day a weather question is about, relative to "today" in China (Asia/Shanghai, UTC+8).

``parse_days(text, today)`` finds every day expression and returns a ``DayQuery``:

* 今天/今日/今儿/今早/今晚/今夜, 明天/明日/明早/明晚, 后天, 大后天, 明后天 (two days);
  Cantonese 今日, 听日/听朝 (tomorrow), 后日 (the day after), 琴日/寻日 (yesterday), 今朝;
  northern 今儿, 明儿, 后儿;
* 昨天/前天 and dates before today are *past*;
* 周末: the coming Saturday and Sunday (on Saturday: today and tomorrow; on Sunday: today);
  这周末/本周末 the same, 下周末 the weekend after that;
* 周X / 星期X / 礼拜X (X = 一..六, 日, 天): the next such day, today included;
  这周X/本周X: the day of the current Monday-to-Sunday week (may be past); 下周X: of next week;
* 下个月15号, 这个月20号 / 本月20号;
* explicit dates: 11月28日, 11月28号, 十一月二十八日, 11/28, 28号, 28日, 2026-11-28,
  2026/11/28, 2026年11月28日; a month-day without a year is this year's, unless that was up to
  180 days ago (then it is past) or longer ago (then next year's); a bare day of month is this
  month's, or next month's once it has passed;
* spans: 未来N天, 接下来N天, 最近N天, 这N天, N天内, N天天气/N天预报, 这几天 (3 days), 这周/本周 (until Sunday),
  下周 (next Monday to Sunday); N天后 is one day;
* 现在/此刻/目前/当前/这会儿/实时/此时, Cantonese 而家/宜家, and the progressive 在下雨 /
  正在下雪 / 落紧雨: current conditions;
* fixed-date holidays (元旦, 情人节, 五一, 国庆, 平安夜, 圣诞节...): their date, as a month-day;
* a part of the day or a moment soon (下午, 晚上, 后半夜, 一会儿, 待会儿) with no other day
  named: today ("下午会下雨吗"; "明天下午" is tomorrow).

Days beyond the forecast range are reported in ``beyond`` (the caller answers what it can and
says the rest is out of range); nothing is silently shifted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

#: China Standard Time. China has had no daylight saving since 1991, so a fixed offset is exact.
CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")

CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
             "七": 7, "八": 8, "九": 9}
WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "末": 7}


def china_now() -> datetime:
    return datetime.now(CHINA_TZ)


def cn_number(token: str) -> int | None:
    """Arabic or Chinese numerals up to 99 (28, 二十八, 十一, 两)."""
    if not token:
        return None
    if token.isdigit():
        return int(token)
    if "十" in token:
        tens, _, ones = token.partition("十")
        t = CN_DIGITS.get(tens, None) if tens else 1
        o = CN_DIGITS.get(ones, None) if ones else 0
        if t is None or o is None:
            return None
        return t * 10 + o
    if len(token) == 1:
        return CN_DIGITS.get(token)
    return None


@dataclass
class DayQuery:
    current: bool = False
    dates: list[date] = field(default_factory=list)  # within range, sorted, unique
    beyond: list[date] = field(default_factory=list)  # requested, later than the range
    past: bool = False
    weekend: bool = False
    spans: list[tuple[int, int]] = field(default_factory=list)

    #: The only day is today from a part of the day or a moment soon (下午, 一会儿): the day
    #: meant when the message asks the weather, but no day named (下午呢, 晚上空调开多少度).
    vague: bool = False

    @property
    def found(self) -> bool:
        return bool(self.current or self.dates or self.beyond or self.past)

    @property
    def named(self) -> bool:
        """A day named in its own right (not only a part of the day)."""
        return self.found and not self.vague


#: Holidays on a fixed date of the Gregorian calendar (month, day), read like 12月25日.
HOLIDAYS = {"元旦": (1, 1), "情人节": (2, 14), "妇女节": (3, 8), "植树节": (3, 12), "愚人节": (4, 1),
            "劳动节": (5, 1), "五一": (5, 1), "儿童节": (6, 1), "教师节": (9, 10), "国庆节": (10, 1),
            "国庆": (10, 1), "万圣节": (10, 31), "平安夜": (12, 24), "圣诞节": (12, 25), "圣诞": (12, 25)}
_HOLIDAY_RE = re.compile("|".join(sorted(HOLIDAYS, key=len, reverse=True)))
#: A part of the day or a moment soon: today, when no other day is named.
_DAYPART_RE = re.compile(r"后半夜|前半夜|半夜|凌晨|早上|早晨|上午|中午|下午|傍晚|晚上|夜里|夜间|白天"
                         r"|一会儿|一会|待会儿|待会|等会儿|等会|过会儿|过一会儿|过一会|稍后")
_NUM = r"(?:\d{1,2}|[零〇一二两三四五六七八九十]{1,3})"
_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("ymd", re.compile(r"(?<!\d)(?P<y>20\d{2})\s*[-/.年]\s*(?P<m>\d{1,2})\s*[-/.月]\s*(?P<d>\d{1,2})\s*[日号]?")),
    ("md", re.compile(rf"(?P<m>{_NUM})\s*月\s*(?P<d>{_NUM})\s*[日号]?")),
    ("md_slash", re.compile(r"(?<![\d/])(?P<m>1[0-2]|0?[1-9])/(?P<d>[0-3]?\d)(?![\d/])")),
    ("month_day", re.compile(rf"(?P<pre>下个?|这个?|本)月(?P<d>{_NUM})\s*[号日]")),
    ("range_week", re.compile(r"(?:未来|接下来|最近|近|今后)(?:一|1)?个?(?:周|星期|礼拜)")),
    ("range_n", re.compile(rf"(?:未来|接下来|最近|近|这|今后|往后)\s*(?P<n>{_NUM}|几)\s*(?:天|日)(?:内|之内|以内)?"
                           rf"|(?<![\d今明后昨前])(?P<n2>{_NUM})[\s-]*天(?=\s*(?:天气|预报))")),
    ("range_in", re.compile(rf"(?P<n>{_NUM})\s*天(?:内|之内|以内)")),
    ("after_n", re.compile(rf"(?P<n>{_NUM})\s*天(?:以后|之后|后)")),
    ("weekend", re.compile(r"(?P<pre>下下|下个|下|这个|这|本)?(?:周末|礼拜六日|星期六日)")),
    ("weekday", re.compile(r"(?P<pre>下下个?|下个|下|这个|这|本|上个|上)?(?:周|星期|礼拜)(?P<w>[一二三四五六日天])(?!气)")),
    ("week", re.compile(r"(?P<pre>下个|下|这个|这|本)(?:周|星期|礼拜)(?![一二三四五六日末]|天(?!气))")),
    ("rel", re.compile(r"大后天|明后两?天|后天|明天|明日|明儿|明早|明晚|今天|今日|今儿|今早|今晚|今夜"
                       r"|昨天|昨日|昨晚|前天|当天|听日|听朝|今朝|琴日|寻日"
                       r"|(?<![今以之然最此日])后[日儿](?![子常])")),
    ("day", re.compile(r"(?:(?<![\d月/\-年周期拜])(?P<d>\d{1,2})\s*[号日]"
                       rf"|(?<![\d月周期拜零〇一二两三四五六七八九十])(?P<cd>{_NUM})号)"
                       r"(?![线楼院门口房车位床路元])")),
    ("holiday", _HOLIDAY_RE),
    ("now", re.compile(r"现在|此刻|目前|当前|这会儿|实时|此时|眼下|当下|而家|宜家|落紧"
                       r"|正在(?=下[雨雪]|刮风|落雨|打雷)|(?<![现存正])在(?=下[雨雪]|刮风|落雨|打雷)")),
]
_REL = {"大后天": [3], "明后天": [1, 2], "明后两天": [1, 2], "后天": [2], "明天": [1], "明日": [1],
        "明儿": [1], "明早": [1], "明晚": [1], "今天": [0], "今日": [0], "今儿": [0], "今早": [0],
        "今晚": [0], "今夜": [0], "当天": [0], "昨天": [-1], "昨日": [-1], "昨晚": [-1], "前天": [-2],
        # Cantonese (and Wu 今朝)
        "听日": [1], "听朝": [1], "后日": [2], "后儿": [2], "今朝": [0], "琴日": [-1], "寻日": [-1]}


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _day_of_month(today: date, day: int) -> date | None:
    """``day`` of this month, or of the next month that has it when it has passed."""
    y, m = today.year, today.month
    for _ in range(3):
        found = _safe_date(y, m, day)
        if found is not None and found >= today:
            return found
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return None


def parse_days(text: str, today: date, max_days: int = 7,
               protect: list[tuple[int, int]] = ()) -> DayQuery:
    """Every day expression in ``text``; ``max_days`` counts today (7 = today + 6 days).

    ``protect``: spans (place names) a day word must not start inside, so the 明天 hidden in
    昆明天气 is not read as tomorrow.
    """
    query = DayQuery()
    taken = [False] * len(text)
    wanted: list[date] = []
    monday = today - timedelta(days=today.weekday())

    def claim(match: re.Match) -> bool:
        if any(taken[match.start():match.end()]):
            return False
        if any(start < match.start() < end for start, end in protect):
            return False
        for i in range(match.start(), match.end()):
            taken[i] = True
        query.spans.append((match.start(), match.end()))
        return True

    for kind, pattern in _PATTERNS:
        for match in pattern.finditer(text):
            if not claim(match):
                continue
            g = match.groupdict()
            if kind == "ymd":
                try:
                    wanted.append(date(int(g["y"]), int(g["m"]), int(g["d"])))
                except ValueError:
                    query.spans.pop()
            elif kind in ("md", "md_slash", "holiday"):
                if kind == "holiday":
                    m, d = HOLIDAYS[match.group(0)]
                else:
                    m, d = cn_number(g["m"]), cn_number(g["d"])
                try:
                    this_year = date(today.year, m or 0, d or 0)
                except ValueError:
                    query.spans.pop()
                    continue
                if this_year < today and (today - this_year).days <= 180:
                    query.past = True
                else:
                    nxt = this_year if this_year >= today else _safe_date(today.year + 1, m, d)
                    if nxt is not None:
                        wanted.append(nxt)
            elif kind == "month_day":
                d = cn_number(g["d"])
                y, m = today.year, today.month
                if g["pre"].startswith("下"):
                    y, m = (y + 1, 1) if m == 12 else (y, m + 1)
                found = _safe_date(y, m, d) if d else None
                if found is None:
                    pass
                elif found < today:
                    query.past = True
                else:
                    wanted.append(found)
            elif kind == "range_week":
                wanted.extend(today + timedelta(days=i) for i in range(7))
            elif kind in ("range_n", "range_in"):
                n = 3 if g["n"] == "几" else cn_number(g["n"] or g.get("n2") or "")
                if n:
                    wanted.extend(today + timedelta(days=i) for i in range(n))
            elif kind == "after_n":
                n = cn_number(g["n"])
                if n is not None:
                    wanted.append(today + timedelta(days=n))
            elif kind == "weekend":
                query.weekend = True
                saturday = monday + timedelta(days=5)
                if g["pre"] in ("下", "下个"):
                    saturday += timedelta(days=7)
                elif g["pre"] == "下下":
                    saturday += timedelta(days=14)
                for d in (saturday, saturday + timedelta(days=1)):
                    if d >= today:
                        wanted.append(d)
            elif kind == "weekday":
                w = WEEKDAYS[g["w"]]
                pre = g["pre"] or ""
                if pre.startswith("下下"):
                    wanted.append(monday + timedelta(days=14 + w))
                elif pre.startswith("下"):
                    wanted.append(monday + timedelta(days=7 + w))
                elif pre.startswith("上"):
                    query.past = True
                elif pre in ("这", "这个", "本"):
                    d = monday + timedelta(days=w)
                    if d < today:
                        query.past = True
                    else:
                        wanted.append(d)
                else:
                    wanted.append(today + timedelta(days=(w - today.weekday()) % 7))
            elif kind == "week":
                if (g["pre"] or "").startswith("下"):
                    start = monday + timedelta(days=7)
                    wanted.extend(start + timedelta(days=i) for i in range(7))
                else:
                    wanted.extend(today + timedelta(days=i) for i in range(7 - today.weekday()))
            elif kind == "rel":
                offsets = _REL[match.group(0)]
                for offset in offsets:
                    if offset < 0:
                        query.past = True
                    else:
                        wanted.append(today + timedelta(days=offset))
            elif kind == "day":
                d = int(g["d"]) if g["d"] else cn_number(g["cd"] or "")
                found = _day_of_month(today, d) if d and 1 <= d <= 31 else None
                if found is None:
                    query.spans.pop()
                    for i in range(match.start(), match.end()):
                        taken[i] = False
                else:
                    wanted.append(found)
            elif kind == "now":
                query.current = True

    named = bool(query.current or wanted or query.past)
    for match in _DAYPART_RE.finditer(text):  # part of the day named (明天下午), else today
        if claim(match) and not named:
            wanted.append(today)
            query.vague = True
    last = today + timedelta(days=max_days - 1)
    for d in sorted(set(wanted)):
        if d < today:
            query.past = True
        elif d > last:
            query.beyond.append(d)
        else:
            query.dates.append(d)
    query.spans.sort()
    return query

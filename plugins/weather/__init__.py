"""Weather skill: "明天北京会下雨吗", "上海天气", "那广州呢？", "周末杭州冷不冷", or a location.

Pieces: ``places`` (Chinese place names -> coordinates, bundled table), ``dates`` (which day),
``understand`` (question or remark, follow-up or not), ``providers`` (Open-Meteo, QWeather; more
come from other plugins through the hook ``skillbot_weather_providers`` this plugin adds, see
``hookspecs``), ``service`` (cache, single flight, timeout, stale-on-error), templates for
every word the user reads. How the pieces decide is described in docs/weather.md.

Decision rules in ``skillbot_handle``:

1. LOCATION event: remember the coordinates silently (``success``).
2. Location message: current conditions and today's forecast there.
3. Text without a weather word is declined unless it is a follow-up shape (那上海呢, 后天呢,
   广州) right after a weather answer (or the skill's own "which city?"); so is a shop topic
   that mentions weather ("台风天还发货吗") and a question about weather as a subject
   ("台风是怎么形成的", "天气预报是怎么做出来的"), and 多少度/几度 with no place, day or
   weather answer before ("水的沸点是多少度").
4. No place in the text: a remark ("天气太冷了我不想上班") or a question about something else
   ("雨衣尺码偏大吗") is declined so the fallback or another skill can answer; a weather
   question uses the remembered place (last asked, else last shared location) or asks which city.
5. No day in the text: a follow-up keeps the previous day(s); a new question means today with
   current conditions.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import jinja2
import pluggy

from core import (
    BotServices,
    Candidate,
    Check,
    Intent,
    LocationEvent,
    LocationMessage,
    MessageContext,
    SuccessReply,
    TextReply,
    hookimpl,
)

from . import hookspecs
from .config import Config
from .dates import DayQuery, china_now
from .places import PlaceIndex, default_index
from .providers import BUILT_IN, ProviderFactory, create_provider
from .service import Report, Spot, WeatherService
from .understand import Question, understand

PLUGIN_DIR = Path(__file__).parent
INTENT = "weather"
log = logging.getLogger("skillbot.weather")

KEYWORDS = {"天气": ["气温", "温度", "下雨", "下雪", "冷", "热", "闷热", "刮风", "风", "晴", "晴天",
                   "阴", "阴天", "雾", "雾霾", "带伞", "预报", "几度", "多少度", "降温", "升温",
                   "暴雨", "台风", "湿度", "风力", "雨", "雪", "天气预报", "紫外线", "空气质量",
                   "pm2.5",
                   # glued forms jieba keeps whole, where the single-character word is hidden
                   "冷不冷", "热不热", "晴不晴", "有雨", "有雪", "有风", "风大", "雨大", "雪大"]}
EXAMPLES = ["明天北京会下雨吗", "上海天气", "周末杭州冷不冷", "广州今天多少度", "后天深圳天气怎么样",
            "成都这周末会下雪吗", "海淀区明天刮风吗", "现在武汉气温多少", "下周三南京天气",
            "未来三天重庆天气预报", "明天出门要带伞吗", "今天冷不冷"]
#: Score of a message that is only places and/or days ("那上海呢？", "后天呢", "广州"): enough to
#: reach the skill, which keeps it only right after its own answer.
FOLLOWUP_SCORE = 0.7
#: Score of a weather question the skill's own reading recognises (weather word, place or day,
#: question, no shop topic), whatever jieba made of its words.
QUESTION_SCORE = 0.6


def _day_info(d: date, today: date) -> dict[str, Any]:
    return {"date": d.isoformat(), "offset": (d - today).days, "weekday": d.weekday(),
            "month": d.month, "day": d.day}


class Plugin:
    """One instance per bot; state (index, service, templates) lives here."""

    def __init__(self) -> None:
        self.config = Config()
        self.index: PlaceIndex | None = None
        self.service: WeatherService | None = None
        self.env: jinja2.Environment | None = None
        self.now: Callable[[], datetime] = china_now
        #: jieba's cut, for word boundaries (set at start-up from the bot's segmenter).
        self.cut: Callable[[str], list[str]] | None = None

    # ---- set-up ----------------------------------------------------------------------------

    @hookimpl
    async def skillbot_health(self, bot: BotServices, probe: bool) -> list[Check] | None:
        """run.py check: a one-day forecast for Beijing from the configured provider."""
        if not probe or self.service is None:
            return None
        name = f"weather provider {self.config.provider}"
        try:
            await asyncio.wait_for(self.service.provider.fetch(39.9042, 116.4074), self.config.timeout + 1)
        except asyncio.TimeoutError:
            return [Check(name, False, f"no forecast within {self.config.timeout + 1:g}s")]
        except Exception as exc:
            return [Check(name, False, f"{type(exc).__name__}: {exc}")]
        return [Check(name, True, f"a forecast from {getattr(self.service.provider, 'base_url', '?')}")]

    @hookimpl
    def skillbot_config_schema(self) -> type:
        return Config

    @hookimpl
    def skillbot_add_hookspecs(self, pm: pluggy.PluginManager) -> None:
        pm.add_hookspecs(hookspecs)

    @hookimpl
    def skillbot_weather_providers(self) -> dict[str, ProviderFactory]:
        return dict(BUILT_IN)

    @hookimpl
    async def skillbot_startup(self, bot: BotServices, config: Config) -> None:
        self.config = config
        self.index = default_index()  # loaded once per process, at start-up
        # Word boundaries come from the bot's segmenter (its added place names do not move
        # jieba's cuts around ordinary words: 上/高速, 牡丹花, 热门).
        self.cut = bot.segmenter.cut
        self.env = bot.templates(PLUGIN_DIR)
        factories = await self.providers(bot)
        provider = create_provider(config.provider, config, bot.http, factories)
        self.service = WeatherService(
            provider,
            bot.cache("weather", maxsize=config.cache_size, ttl=config.cache_ttl),
            bot.cache("weather_stale", maxsize=config.cache_size, ttl=config.stale_ttl),
            timeout=config.timeout, cache_ttl=config.cache_ttl, stale_ttl=config.stale_ttl,
            now=lambda: self.now())

    @staticmethod
    async def providers(bot: BotServices) -> dict[str, ProviderFactory]:
        """Every provider the enabled plugins give (``skillbot_weather_providers``); a name
        keeps the first plugin that gave it."""
        factories: dict[str, ProviderFactory] = {}
        owners: dict[str, str] = {}
        for result in await bot.hooks.call("skillbot_weather_providers", {}):
            for name, factory in (result.value or {}).items() if result.ok else ():
                if name in factories:
                    log.warning("weather provider %r from plugin %s ignored: plugin %s gave it first",
                                name, result.plugin, owners[name])
                    continue
                factories[name], owners[name] = factory, result.plugin
        return factories

    @hookimpl
    def skillbot_jieba_words(self) -> list[str]:
        return default_index().words(min_length=2)

    @hookimpl
    def skillbot_intents(self) -> list[Intent]:
        # The scorer reads the text against the places table as of today: pure for a given date.
        return [Intent(name=INTENT, keywords=KEYWORDS, examples=EXAMPLES, priority=10,
                       msg_types=["location"], events=["LOCATION"], scorer=self.score,
                       memo_key=lambda: self.now().date())]

    def score(self, text: str, tokens: list[str]) -> tuple[float, dict[str, Any]]:
        """The router's scorer, from the skill's own reading of the text.

        Follow-up shapes carry no weather word ("那上海呢？"), and jieba may glue a one-character
        weather word to its neighbour ("风大", "晴不晴"), which keywords then miss. Context-free
        (the router has no user): ``skillbot_handle`` still decides.
        """
        q = self.read(text)
        reading = {"reading": q.describe()}  # what decided, for run.py route and the simulator
        if q.off_topic or q.about_weather:
            return 0.0, reading
        if q.followup and not q.weather_word:
            return FOLLOWUP_SCORE, {"followup": True, **reading}
        if q.weather_word and q.question and ((q.spots and q.clause_topical) or (q.days.named and q.topical)):
            return QUESTION_SCORE, reading
        return 0.0, reading

    def read(self, text: str) -> Question:
        """The skill's reading of a text (places, days, question or not), as of ``self.now()``."""
        return understand(text, self.index or default_index(), self.now().date(),
                          self.config.forecast_days, cut=self.cut)

    # ---- answering ---------------------------------------------------------------------------

    @hookimpl
    async def skillbot_handle(self, ctx: MessageContext, candidate: Candidate) -> TextReply | SuccessReply | None:
        if candidate.name != INTENT or self.service is None:
            return None
        message = ctx.message
        if isinstance(message, LocationEvent):
            await ctx.remember(weather_location=Spot.at(message.latitude, message.longitude).to_dict())
            return SuccessReply(record=False)
        today = self.now().date()
        if isinstance(message, LocationMessage):
            return await self._answer_location(ctx, message, today)
        # The router's bound ([router] max_text_chars): reading a 60 KB text takes seconds.
        text = (message.text or "")[:ctx.bot.settings.router.max_text_chars].strip()
        if not text:
            return None
        question = self.read(text)
        reply = await self._answer_text(ctx, question, today)
        if reply is not None:
            await ctx.remember(weather_answered_at=time.time())
        return reply

    async def _answer_location(self, ctx: MessageContext, message: LocationMessage,
                               today: date) -> TextReply:
        label = (message.label or "").strip()
        name = label[:20]
        mentions = self.index.find(label) if label else []
        if mentions:
            name = self.index.display_name(mentions[-1].place)
        spot = Spot.at(message.latitude, message.longitude, name)
        await ctx.remember(weather_place=spot.to_dict(), weather_location=spot.to_dict(),
                           weather_days={"current": True, "dates": [today.isoformat()]},
                           weather_answered_at=time.time())
        return await self._forecast_reply([spot], [today], True, today, [], "current.j2", ctx=ctx)

    async def _answer_text(self, ctx: MessageContext, q: Question, today: date) -> Any:
        after_weather = self._after_weather(ctx)
        if q.off_topic or q.about_weather or not (
                q.weather_word or q.place_and_day or (q.followup and after_weather)):
            return None
        if q.measure_only and not after_weather:
            return None  # 水的沸点是多少度
        if q.weather_word and not (q.clause_topical or q.followup):
            return None  # 哈尔滨冰雪大世界什么时候开放: the weather word's clause asks something else
        framed = bool(re.match(r"^(那么|那|还有)", q.text)) or q.text.rstrip("？?。.!！ ").endswith("呢")
        # "那上海呢" / "后天呢" / "广州" continue the last answer; "上海天气" is a new question.
        is_followup = after_weather and (framed or (q.followup and not q.weather_word))
        spots = q.spots
        if not spots:
            if not (is_followup or (q.question and q.topical)):
                return None  # a remark, or another topic: leave it to the chat fallback
            remembered = (Spot.from_dict(ctx.slots.get("weather_place"))
                          or Spot.from_dict(ctx.slots.get("weather_location")))
            if remembered is None:
                await ctx.remember(weather_days=self._days_slot(q.days) if q.days.found else None)
                return self._text("ask_city.j2")
            spots = [remembered]

        current, dates = self._pick_days(ctx, q.days, is_followup, today)
        if not dates and not current:
            if q.spots:
                await ctx.remember(weather_place=q.spots[0].to_dict())
            first = q.days.beyond[0] if q.days.beyond else None
            return self._text("out_of_range.j2", past=q.days.past and not q.days.beyond,
                              first=_day_info(first, today) if first else None,
                              max_days=self.config.forecast_days)
        await ctx.remember(weather_place=spots[0].to_dict(),
                           weather_days={"current": current, "dates": [d.isoformat() for d in dates]})
        template = "current.j2" if q.days.current else "forecast.j2"
        return await self._forecast_reply(spots, dates, current, today, q.days.beyond, template, ctx=ctx)

    def _pick_days(self, ctx: MessageContext, days: DayQuery, is_followup: bool,
                   today: date) -> tuple[bool, list[date]]:
        if days.found:
            dates = list(days.dates)
            if days.current and today not in dates:
                dates.insert(0, today)
            return days.current, dates
        if is_followup:
            stored = ctx.slots.get("weather_days")
            if isinstance(stored, dict):
                last = today + timedelta(days=self.config.forecast_days - 1)
                kept = []
                for iso in stored.get("dates") or []:
                    try:
                        d = date.fromisoformat(iso)
                    except (TypeError, ValueError):
                        continue
                    if today <= d <= last:
                        kept.append(d)
                if kept or stored.get("current"):
                    return bool(stored.get("current")), kept or [today]
        return True, [today]

    @staticmethod
    def _days_slot(days: DayQuery) -> dict[str, Any]:
        return {"current": days.current, "dates": [d.isoformat() for d in days.dates]}

    @staticmethod
    def _after_weather(ctx: MessageContext) -> bool:
        """Was the bot's previous answer this skill's (a forecast or its "which city?")?

        The history holds text exchanges; answers to location messages are not in it, so the
        skill also stamps ``weather_answered_at`` and compares it with the last assistant turn.
        """
        stamp = ctx.slots.get("weather_answered_at")
        stamp = stamp if isinstance(stamp, (int, float)) else None
        for turn in reversed(ctx.history):
            if turn.role == "assistant":
                return turn.intent == INTENT or (stamp is not None and stamp > turn.at)
        return stamp is not None

    async def _forecast_reply(self, spots: list[Spot], dates: list[date], current: bool,
                              today: date, beyond: list[date], template: str,
                              ctx: MessageContext | None = None) -> TextReply:
        assert self.service is not None
        reports: list[Report] = await asyncio.gather(
            *(self.service.report(spot, dates, current) for spot in spots))
        if ctx is not None and any(r.failed for r in reports):  # counted by core.operations.metrics
            ctx.extra.setdefault("provider_failures", []).append(
                {"plugin": "weather", "provider": self.service.provider.name})
        if all(r.empty for r in reports):
            return self._text("apology.j2", place=spots[0].name if len(spots) == 1 else "")
        rendered = []
        for r in reports:
            if r.empty:
                continue
            days = []
            for day in r.days:
                info = _day_info(date.fromisoformat(day["date"]), today)
                days.append({**day, **info})
            rendered.append({
                "place": r.spot.name, "current": r.current, "days": days,
                "missing": [_day_info(date.fromisoformat(m), today) for m in r.missing],
                "stale_age": r.stale_age, "failed": r.failed,
            })
        return self._text(template, reports=rendered,
                          beyond=[_day_info(d, today) for d in beyond],
                          max_days=self.config.forecast_days)

    def _text(self, template: str, **values: Any) -> TextReply:
        assert self.env is not None
        text = self.env.get_template(template).render(**values)
        text = re.sub(r"\n{3,}", "\n\n", text).strip()
        return TextReply(text)

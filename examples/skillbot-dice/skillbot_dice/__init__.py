"""Dice rolling for Skillbot: "掷骰子", "掷两个骰子", "扔3个骰子", "摇一下骰子"."""
from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

from core import Intent, TextReply, hookimpl

from .config import Config

HERE = Path(__file__).parent
INTENT = "dice.roll"
NUMERALS = {"一": 1, "两": 2, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
PATTERN = r"(?:掷|扔|摇|投|丢)(?:一下|一把)?(?P<count>\d+|[一两二三四五六七八九十])?(?:个|颗|枚)?骰子"


def dice_count(text: str) -> int:
    match = re.search(PATTERN, text)
    count = match.group("count") if match else None
    if not count:
        return 1
    return int(count) if count.isdigit() else NUMERALS[count]


class Plugin:
    def __init__(self) -> None:
        self.config = Config()
        self.random = random.Random()
        self.templates: Any = None

    @hookimpl
    def skillbot_config_schema(self) -> type:
        return Config

    @hookimpl
    def skillbot_startup(self, bot: Any, config: Config) -> None:
        self.config = config
        self.templates = bot.templates(HERE)

    @hookimpl
    def skillbot_intents(self) -> list[Intent]:
        return [Intent(INTENT, keywords=["骰子"], patterns=[PATTERN], examples=["掷骰子", "扔两个骰子"],
                       priority=5)]

    @hookimpl
    def skillbot_handle(self, ctx: Any, candidate: Any) -> Any:
        if candidate.name != INTENT:
            return None
        count = dice_count(ctx.message.text)
        if count > self.config.max_dice:
            text = self.templates.get_template("too_many.j2").render(max_dice=self.config.max_dice)
            return TextReply(text.strip())
        rolls = [self.random.randint(1, self.config.sides) for _ in range(count)]
        text = self.templates.get_template("roll.j2").render(rolls=rolls, total=sum(rolls))
        return TextReply(text.strip())

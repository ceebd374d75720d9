"""Greets new followers (including scan-to-subscribe with a scene) and answers menu clicks from settings."""
from __future__ import annotations

from pathlib import Path

from core import ClickEvent, Intent, SubscribeEvent, TextReply, hookimpl

from .config import Config

HERE = Path(__file__).parent


class Plugin:
    def __init__(self) -> None:
        self.config = Config()
        self.bot = None

    @hookimpl
    def skillbot_config_schema(self) -> type:
        return Config

    @hookimpl
    def skillbot_startup(self, bot, config: Config) -> None:
        self.bot = bot
        self.config = config
        self.template = bot.templates(HERE).get_template("welcome.j2")

    @hookimpl
    def skillbot_intents(self) -> list[Intent]:
        intents = [Intent("welcome.subscribe", events=["subscribe"], priority=100)]
        if self.config.click_replies:
            intents.append(Intent("welcome.click", events=["CLICK"],
                                  event_keys=sorted(self.config.click_replies), priority=100))
        return intents

    @hookimpl
    def skillbot_handle(self, ctx, candidate):
        message = ctx.message
        if isinstance(message, SubscribeEvent):
            text = self.template.render(message=self.config.message, scene=message.scene,
                                        scene_messages=self.config.scene_messages)
            return TextReply(text.strip())
        if isinstance(message, ClickEvent) and message.key in self.config.click_replies:
            return TextReply(self.config.click_replies[message.key])
        return None

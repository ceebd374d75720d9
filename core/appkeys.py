"""Typed keys for what the aiohttp application keeps, and the holder of the running bot."""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .access.delivery import Delivery
    from .access.webhook import Gateway
    from .operations.metrics import Metrics
    from .processing.bot import Bot


class BotHolder:
    """The one place that holds the running bot. A settings reload swaps it here (``swap``) and
    everything else reads ``holder.bot`` when it needs the bot, so nobody keeps a stale one."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        #: Bots a reload replaced that are still finishing their messages (until ``retired``).
        self.retiring: list[Bot] = []

    def swap(self, new: Bot) -> Bot:
        """Make ``new`` the running bot; returns the one it replaces (now retiring)."""
        old, self.bot = self.bot, new
        self.retiring.append(old)
        return old

    def retired(self, old: Bot) -> None:
        """``old`` has stopped."""
        if old in self.retiring:
            self.retiring.remove(old)

    def live(self) -> list[Bot]:
        """The running bot and the retiring ones (their counts still change)."""
        return [self.bot, *self.retiring]


BOTS_KEY: web.AppKey[BotHolder] = web.AppKey("bots", BotHolder)
GATEWAY_KEY: web.AppKey["Gateway"] = web.AppKey("gateway")
DELIVERY_KEY: web.AppKey["Delivery"] = web.AppKey("delivery")
METRICS_KEY: web.AppKey["Metrics"] = web.AppKey("metrics")

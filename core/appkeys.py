"""Typed keys for what the aiohttp application keeps, the holder of the running bot, and the
official accounts the application serves."""
from __future__ import annotations

from dataclasses import dataclass
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


#: The default account's name in /metrics labels and the /healthz accounts section.
DEFAULT_ACCOUNT = "default"


@dataclass
class Account:
    """One ``[accounts.<name>]`` account: its webhook (with its own bot holder, delivery and
    metrics) when it is served, else ``error`` says why not (its table or its start-up failed)."""

    name: str
    path: str
    gateway: Gateway | None = None
    error: str | None = None

    @property
    def served(self) -> bool:
        return self.gateway is not None and self.error is None


class Accounts:
    """The accounts an application serves: the default one (top-level settings, at
    ``server.path``) and the named ones (``[accounts.<name>]``, at ``<server.path>/<name>``).
    A settings reload adds, replaces and removes named accounts here and nowhere else."""

    def __init__(self, default: Gateway) -> None:
        self.default = default
        self.named: dict[str, Account] = {}

    def served(self) -> list[tuple[str, Gateway]]:
        """(name, webhook) of every account answering now, the default one first."""
        return [(DEFAULT_ACCOUNT, self.default)] + [
            (name, account.gateway) for name, account in self.named.items()
            if account.served and account.gateway is not None]


BOTS_KEY: web.AppKey[BotHolder] = web.AppKey("bots", BotHolder)
GATEWAY_KEY: web.AppKey["Gateway"] = web.AppKey("gateway")
DELIVERY_KEY: web.AppKey["Delivery"] = web.AppKey("delivery")
METRICS_KEY: web.AppKey["Metrics"] = web.AppKey("metrics")
ACCOUNTS_KEY: web.AppKey[Accounts] = web.AppKey("accounts", Accounts)

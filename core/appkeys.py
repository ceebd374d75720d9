"""Typed keys for what the aiohttp application keeps."""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .access.webhook import Gateway
    from .processing.bot import Bot

BOT_KEY: web.AppKey["Bot"] = web.AppKey("bot")
GATEWAY_KEY: web.AppKey["Gateway"] = web.AppKey("gateway")

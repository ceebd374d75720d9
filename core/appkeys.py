"""Typed keys for what the aiohttp application keeps."""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .bot import Bot
    from .gateway import Gateway

BOT_KEY: web.AppKey["Bot"] = web.AppKey("bot")
GATEWAY_KEY: web.AppKey["Gateway"] = web.AppKey("gateway")

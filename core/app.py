"""The aiohttp application factory: ``create_app(settings) -> web.Application``."""
from __future__ import annotations

import logging
from typing import Any, AsyncIterator

from aiohttp import web

from .appkeys import BOT_KEY, GATEWAY_KEY
from .bot import Bot
from .gateway import Gateway
from .config import ConfigError
from .settings import Settings
from .wechat_api import AccessTokenManager, CustomerServiceSender, app_secret_from_env

log = logging.getLogger("skillbot.app")


@web.middleware
async def never_500(request: web.Request, handler: Any) -> web.StreamResponse:
    """A bug must not show WeChat users an error: log it and acknowledge with ``success``."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        if request.method == "POST" and request.path == request.app[BOT_KEY].settings.server.path:
            return web.Response(text="success", content_type="text/plain")
        return web.Response(status=503, text="temporarily unavailable", content_type="text/plain")


def setup_routes(app: web.Application, settings: Settings) -> None:
    from . import metrics, webui
    from .health import healthz

    gateway = app[GATEWAY_KEY]
    app.router.add_get(settings.server.path, gateway.handle_get)
    app.router.add_post(settings.server.path, gateway.handle_post)
    app.router.add_get("/healthz", healthz)
    metrics.setup_routes(app)  # /metrics, /readyz
    webui.setup_routes(app)  # /simulator (answers 404 unless [simulator] enabled)


def check_customer_service(settings: Settings) -> str:
    """The AppSecret for ``delivery.mode = "customer_service"``; stops start-up when it is missing."""
    secret = app_secret_from_env(settings.wechat.app_secret_env)
    if not settings.wechat.app_id or not secret:
        raise ConfigError("delivery.mode: customer_service needs wechat.app_id and the AppSecret in "
                          f"the environment variable named by wechat.app_secret_env ({settings.wechat.app_secret_env})")
    return secret


def customer_service_sender(bot: Bot) -> CustomerServiceSender:
    """The 客服 sender used when an answer misses WeChat's window."""
    settings = bot.settings
    secret = check_customer_service(settings)
    tokens = AccessTokenManager(bot.http, settings.delivery.api_base, settings.wechat.app_id, secret,
                                settings.delivery.token_endpoint, store=bot.token_store)
    return CustomerServiceSender(bot.http, tokens)


def create_app(settings: Settings, extra_plugins: dict[str, Any] | None = None,
               bot: Bot | None = None) -> web.Application:
    """Build the web application; the bot starts and stops with it (``cleanup_ctx``)."""
    if settings.delivery.mode == "customer_service":
        check_customer_service(settings)
    app = web.Application(middlewares=[never_500], client_max_size=settings.server.max_body_bytes + 1)
    bot = bot or Bot(settings, extra_plugins)
    app[BOT_KEY] = bot
    app[GATEWAY_KEY] = Gateway(bot)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await bot.start()
        if settings.delivery.mode == "customer_service":
            app[GATEWAY_KEY].push_sender = customer_service_sender(bot)
        yield
        await app[GATEWAY_KEY].coordinator.drain()
        # The running bot is gateway.bot: a settings reload may have replaced app[BOT_KEY].
        await app[GATEWAY_KEY].bot.stop()

    app.cleanup_ctx.append(lifecycle)
    setup_routes(app, settings)
    from .reload import setup_reload

    setup_reload(app)  # watch the settings file (server.reload_interval)
    return app

"""The aiohttp application factory ``create_app(settings) -> web.Application``, and the runner
that serves it (``run_webhook``) with HTTP the parser refuses answered quietly."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Callable

from aiohttp import __version__ as aiohttp_version, web
from aiohttp.http_exceptions import HttpProcessingError

from .access.delivery import Delivery, check_customer_service
from .access.webhook import Gateway
from .appkeys import ACCOUNTS_KEY, BOTS_KEY, DELIVERY_KEY, GATEWAY_KEY, METRICS_KEY, Account, Accounts, BotHolder
from .operations.metrics import Metrics
from .processing.bot import Bot
from .settings import Settings, account_path, account_settings, in_account
from .settings_schema import ConfigError

log = logging.getLogger("skillbot.app")


#: A client's malformed HTTP: aiohttp's parser refusing it, or a body that cannot be decoded.
CLIENT_HTTP_ERRORS = (HttpProcessingError, web.RequestPayloadError)
#: What a malformed request gets: never the parser's text, which quotes the request's bytes.
MALFORMED_BODY = "bad request"


def log_malformed(remote: str | None, exc: BaseException) -> None:
    """One warning line for a client's malformed HTTP (no traceback: it is not our bug), once per
    error: aiohttp meets an undecodable body again when it drains the connection."""
    if getattr(exc, "skillbot_logged", False):
        return
    exc.skillbot_logged = True  # type: ignore[attr-defined]
    log.warning("malformed HTTP request from %s refused: %s", remote, type(exc).__name__)


@web.middleware
async def never_500(request: web.Request, handler: Any) -> web.StreamResponse:
    """A bug must not show WeChat users an error: log it and acknowledge with ``success``.

    A body that cannot be decoded (a broken ``Content-Encoding``) is the client's mistake: 400.
    """
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except CLIENT_HTTP_ERRORS as exc:
        log_malformed(request.remote, exc)
        response = web.Response(status=400, text=MALFORMED_BODY, content_type="text/plain")
        response.force_close()  # the rest of the body cannot be read either
        return response
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        on_webhook = (request.path == request.app[BOTS_KEY].bot.settings.server.path
                      or "account" in request.match_info)
        if request.method == "POST" and on_webhook:
            return web.Response(text="success", content_type="text/plain")
        return web.Response(status=503, text="temporarily unavailable", content_type="text/plain")


def setup_routes(app: web.Application, settings: Settings) -> None:
    from .operations import console, metrics
    from .operations import simulator as webui
    from .operations.health import healthz

    gateway = app[GATEWAY_KEY]
    app.router.add_get(settings.server.path, gateway.handle_get)
    app.router.add_post(settings.server.path, gateway.handle_post)
    app.router.add_get("/healthz", healthz)
    metrics.setup_routes(app)  # /metrics, /readyz
    webui.setup_routes(app)  # /simulator (answers 404 unless [simulator] enabled)
    console.setup_routes(app)  # /admin (answers 404 unless server.admin_token is set)
    # Last, so that with server.path = "/" the accounts' route does not hide the pages above.
    accounts_path = f"{settings.server.path.rstrip('/')}/{{account}}"
    app.router.add_get(accounts_path, account_get)
    app.router.add_post(accounts_path, account_post)


def account_gateway(request: web.Request) -> Gateway:
    """The webhook of the account named in the path; 404 for no such account, 503 for one that
    is configured but not served (its settings or its start-up failed: see /healthz)."""
    account = request.app[ACCOUNTS_KEY].named.get(request.match_info["account"])
    if account is None:
        raise web.HTTPNotFound(text="not found")
    if not account.served or account.gateway is None:
        raise web.HTTPServiceUnavailable(text="account not served")
    return account.gateway


async def account_get(request: web.Request) -> web.StreamResponse:
    return await account_gateway(request).handle_get(request)


async def account_post(request: web.Request) -> web.StreamResponse:
    return await account_gateway(request).handle_post(request)


def build_account(base: Settings, name: str) -> Account:
    """Account ``name`` of ``base`` with its own bot (own plugin instances, own state under its
    own key prefix) and webhook; a broken table gives an account with ``error`` set, logged."""
    try:
        settings = account_settings(base, name)
        try:
            if settings.delivery.mode == "customer_service":
                check_customer_service(settings)
            gateway = build_webhook(Bot(settings))
        except ConfigError as exc:  # the plugins' schemas name keys of the account's tables
            raise in_account(name, exc) from None
    except ConfigError as exc:
        error = "; ".join(exc.errors)
        log.error("account %s is not served: %s", name, error)
        return Account(name, account_path(base, name), error=error)
    except Exception as exc:  # a plugin's schema hook that raises, say: this account only
        log.error("account %s is not served: building its bot failed", name, exc_info=exc)
        return Account(name, account_path(base, name),
                       error=f"building the bot failed ({type(exc).__name__}; the log has the traceback)")
    return Account(name, settings.server.path, gateway=gateway)


async def start_account(account: Account) -> None:
    """Start a served account's bot; a start-up failure leaves the account not served (logged)."""
    if account.gateway is None:
        return
    try:
        await account.gateway.bot.start()
    except Exception as exc:
        account.error = f"start-up failed: {exc}"
        log.error("account %s is not served: %s", account.name, account.error)


async def stop_account(account: Account) -> None:
    """Let an account finish the messages it is answering, then stop its bot."""
    if account.gateway is None:
        return
    await account.gateway.delivery.drain()
    if account.gateway.bot.started:
        await account.gateway.bot.stop()


def build_webhook(bot: Bot) -> Gateway:
    """The webhook for ``bot`` with its delivery and metrics (``.bots``, ``.delivery``,
    ``.metrics``). Wiring, one way: the webhook uses the delivery and the metrics, the delivery
    uses the metrics, and all of them read the running bot from one ``BotHolder``, which a
    settings reload swaps."""
    bots = BotHolder(bot)
    metrics = Metrics(bots)
    delivery = Delivery(bots, metrics)
    metrics.read_tries_from(delivery.coordinator.stats)
    return Gateway(bots, delivery, metrics)


def create_app(settings: Settings, extra_plugins: dict[str, Any] | None = None,
               bot: Bot | None = None) -> web.Application:
    """Build the web application; the bot starts and stops with it (``cleanup_ctx``)."""
    if settings.delivery.mode == "customer_service":
        check_customer_service(settings)
    app = web.Application(middlewares=[never_500], client_max_size=settings.server.max_body_bytes + 1)
    webhook = app[GATEWAY_KEY] = build_webhook(bot or Bot(settings, extra_plugins))
    bots, delivery = app[BOTS_KEY], app[DELIVERY_KEY] = webhook.bots, webhook.delivery
    app[METRICS_KEY] = webhook.metrics
    accounts = app[ACCOUNTS_KEY] = Accounts(webhook)
    for name in settings.accounts:
        accounts.named[name] = build_account(settings, name)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await bots.bot.start()
        await asyncio.gather(*(start_account(account) for account in accounts.named.values()))
        yield
        await asyncio.gather(*(stop_account(account) for account in list(accounts.named.values())))
        await delivery.drain()
        await bots.bot.stop()  # the running one: a settings reload may have replaced the first

    app.cleanup_ctx.append(lifecycle)
    setup_routes(app, settings)
    from .operations.reload import setup_reload

    reloader = setup_reload(app)  # watch the settings file (server.reload_interval)
    from .operations.operator_desk import OperatorDesk

    bots.bot.operator = OperatorDesk(bots, webhook.metrics, reloader)  # status, reload, plugins
    for account in accounts.named.values():  # each named account's own, bound to it
        if account.gateway is not None:
            account.gateway.bot.operator = OperatorDesk.for_account(account, reloader)
    return app


# ---- serving --------------------------------------------------------------------------------------

class WebhookRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, with requests its HTTP parser refuses (a request line over
    8 KiB, a bad header, an unknown ``Content-Encoding``) logged as one warning line and answered
    with a fixed body: aiohttp's own logs them at ERROR with a traceback and echoes its parser's
    text, which quotes the request."""

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if isinstance(exc, CLIENT_HTTP_ERRORS):
            peer = self.transport.get_extra_info("peername") if self.transport is not None else None
            log_malformed(peer[0] if isinstance(peer, (list, tuple)) and peer else None, exc)
            return
        super().log_exception(*args, **kw)

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if 400 <= status < 500:
            message = MALFORMED_BODY
        return super().handle_error(request, status, exc, message)


class WebhookServer(web.Server):
    """``web.Server`` whose connections are handled by ``WebhookRequestHandler``."""

    def __call__(self) -> web.RequestHandler:
        return WebhookRequestHandler(self, loop=self._loop, **self._kwargs)


class WebhookRunner(web.AppRunner):
    """``web.AppRunner`` serving through ``WebhookServer`` (same settings, same life cycle).

    This reaches into aiohttp (``_make_server``, the server's ``_loop`` and ``_kwargs``, as aiohttp
    3.14 has them). Should a later aiohttp change them, it serves with aiohttp's own server and says
    so once at start-up, instead of failing on every connection: requests are answered as before,
    only a malformed one gets aiohttp's 400 text and its log line."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        if isinstance(getattr(server, "_kwargs", None), dict) and hasattr(server, "_loop"):
            server.__class__ = WebhookServer  # the server aiohttp built, with our connection handler
        return server

    async def setup(self) -> None:
        await super().setup()
        if not isinstance(self.server, WebhookServer):
            log.warning("aiohttp %s: serving with its own connection handler; a malformed HTTP "
                        "request gets aiohttp's 400 text and log line", aiohttp_version)


def loop_factory(event_loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """``server.event_loop`` as ``asyncio.Runner``'s loop factory: uvloop's (for "uvloop", and for
    "auto" where it is installed) or None, asyncio's own."""
    if event_loop == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if event_loop == "uvloop":  # settings validation checked it; only a broken install gets here
            raise
        return None
    return uvloop.new_event_loop


def run_webhook(app: web.Application, host: str, port: int, reuse_port: bool | None = None,
                event_loop: str = "auto") -> None:
    """Serve ``app`` until SIGINT/SIGTERM, like ``web.run_app`` but through ``WebhookRunner``, on
    the event loop ``server.event_loop`` names (``loop_factory``)."""

    async def serve() -> None:
        runner = WebhookRunner(app, handle_signals=True, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, reuse_port=reuse_port).start()
            await asyncio.Event().wait()  # SIGINT/SIGTERM raise GracefulExit out of the loop
        finally:
            await runner.cleanup()

    factory = loop_factory(event_loop)
    log.info("event loop: %s", "uvloop" if factory is not None else "asyncio")
    try:
        with asyncio.Runner(loop_factory=factory) as loop_runner:
            loop_runner.run(serve())
    except (web.GracefulExit, KeyboardInterrupt):
        pass

"""A local stand-in for WeChat's token, customer-service (客服, typing indicator included), custom
menu, media and template message APIs, answering with the response shapes and error codes WeChat documents and sends.

Recorded shapes (WeChat's official documentation and real answers): ``{"errcode":0,"errmsg":"ok"}``;
``menu/get`` -> ``{"menu":{"button":[...]}}`` (46003 "menu no exist" without one);
``media/upload`` -> ``{"type","media_id","created_at"}``; ``material/add_material`` ->
``{"media_id","url"}``; ``message/template/send`` -> ``{"errcode":0,"errmsg":"ok","msgid":N}``;
40164 names the caller's IP in its errmsg."""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class WeChatAPIState:
    app_id: str = "wx_test_app_id"
    secret: str = "test_secret"
    expires_in: int = 7200
    current_token: str | None = None
    token_fetches: int = 0
    stable_calls: int = 0
    classic_calls: int = 0
    #: errcodes the next customer-service sends answer with, in order (then 0 = ok).
    send_errors: list[int] = field(default_factory=list)
    sent: list[dict] = field(default_factory=list)
    #: ``message/custom/typing`` calls: (touser, command), in order.
    typing: list[tuple[str, str]] = field(default_factory=list)
    #: errcodes the next calls of a management endpoint answer with, by endpoint name
    #: ("menu/create", "menu/get", "menu/delete", "media/upload", "material/add_material",
    #: "message/template/send"), in order (then normal service).
    api_errors: dict[str, list[int]] = field(default_factory=dict)
    #: The caller's IP as WeChat would see it, for 40164's errmsg.
    caller_ip: str = "203.0.113.7"
    #: errcodes the next token requests answer with (40164, 40013, 40125...), in order.
    token_errors: list[int] = field(default_factory=list)
    menu: dict | None = None
    menu_bodies: list[bytes] = field(default_factory=list)
    uploads: list[dict] = field(default_factory=list)
    templates: list[dict] = field(default_factory=list)
    rejected: list[tuple[int, dict]] = field(default_factory=list)
    _counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    def new_token(self) -> str:
        self.current_token = f"ACCESS_TOKEN_{next(self._counter)}"
        self.token_fetches += 1
        return self.current_token


STATE_KEY: web.AppKey["WeChatAPIState"] = web.AppKey("wechat_api_state")

ERRMSG = {40001: "invalid credential, access_token is invalid or not latest",
          40013: "invalid appid", 40125: "invalid appsecret",
          45015: "response out of time limit or subscription is canceled",
          45047: "out of response count limit", 48001: "api unauthorized",
          45009: "reach max api daily quota limit", 42001: "access_token expired",
          40016: "invalid button size", 40017: "invalid button type", 40018: "invalid button name size",
          45064: "no permission to use weapp in menu", 46003: "menu no exist",
          40007: "invalid media_id", 40004: "invalid media type", 40037: "invalid template_id",
          40003: "invalid openid", 47001: "data format error"}
MENU_TYPES = {"click", "view", "miniprogram", "scancode_push", "scancode_waitmsg", "pic_sysphoto",
              "pic_photo_or_album", "pic_weixin", "location_select", "media_id", "article_id",
              "article_view_limited"}


def error_body(code: int, ip: str) -> dict:
    if code == 40164:
        return {"errcode": 40164, "errmsg": f"invalid ip {ip} ipv6 ::ffff:{ip}, not in whitelist rid: 6568e0a1-1b2c3d4e"}
    return {"errcode": code, "errmsg": f"{ERRMSG.get(code, 'error')} rid: 6568e0a1-1b2c3d4e"}


def create_wechat_api_app(state: WeChatAPIState | None = None) -> web.Application:
    app = web.Application()
    state = state or WeChatAPIState()
    app[STATE_KEY] = state

    def credentials_error(appid: str | None, secret: str | None) -> web.Response | None:
        if appid != state.app_id:
            return web.json_response({"errcode": 40013, "errmsg": ERRMSG[40013]})
        if secret != state.secret:
            return web.json_response({"errcode": 40125, "errmsg": ERRMSG[40125]})
        return None

    async def stable_token(request: web.Request) -> web.Response:
        state.stable_calls += 1
        data = await request.json()
        if state.token_errors:
            return web.json_response(error_body(state.token_errors.pop(0), state.caller_ip))
        error = credentials_error(data.get("appid"), data.get("secret"))
        if error:
            return error
        token = state.current_token if state.current_token and not data.get("force_refresh") else state.new_token()
        return web.json_response({"access_token": token, "expires_in": state.expires_in})

    async def classic_token(request: web.Request) -> web.Response:
        state.classic_calls += 1
        if state.token_errors:
            return web.json_response(error_body(state.token_errors.pop(0), state.caller_ip))
        error = credentials_error(request.query.get("appid"), request.query.get("secret"))
        if error:
            return error
        return web.json_response({"access_token": state.new_token(), "expires_in": state.expires_in})

    async def custom_send(request: web.Request) -> web.Response:
        data = await request.json()
        if request.query.get("access_token") != state.current_token:
            state.rejected.append((40001, data))
            return web.json_response({"errcode": 40001, "errmsg": ERRMSG[40001]})
        if state.send_errors:
            code = state.send_errors.pop(0)
            if code:
                if code == 40001:
                    state.current_token = None  # the token really is dead now
                state.rejected.append((code, data))
                return web.json_response({"errcode": code, "errmsg": ERRMSG.get(code, "error")})
        state.sent.append(data)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def custom_typing(request: web.Request) -> web.Response:
        data = await request.json()
        if request.query.get("access_token") != state.current_token:
            return web.json_response({"errcode": 40001, "errmsg": ERRMSG[40001]})
        if data.get("command") not in ("Typing", "CancelTyping") or not data.get("touser"):
            return web.json_response({"errcode": 47001, "errmsg": ERRMSG[47001]})
        state.typing.append((data["touser"], data["command"]))
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    def refusal(request: web.Request, endpoint: str) -> web.Response | None:
        """The answer WeChat gives before doing anything: a bad token or a queued error code."""
        if request.query.get("access_token") != state.current_token:
            return web.json_response(error_body(40001, state.caller_ip))
        queued = state.api_errors.get(endpoint)
        if queued:
            code = queued.pop(0)
            if code in (40001, 42001):
                state.current_token = None  # the token really is dead now
            return web.json_response(error_body(code, state.caller_ip))
        return None

    def menu_error(menu: object) -> int:
        """WeChat's own checks of a menu (the byte limits are on UTF-8)."""
        buttons = menu.get("button") if isinstance(menu, dict) else None
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
            return 40016
        for button in buttons:
            if len(str(button.get("name", "")).encode()) > 16:
                return 40018
            subs = button.get("sub_button")
            if subs:
                if len(subs) > 5:
                    return 40023
                for sub in subs:
                    if sub.get("type") not in MENU_TYPES:
                        return 40024
                    if len(str(sub.get("name", "")).encode()) > 60:
                        return 40025
            elif button.get("type") not in MENU_TYPES:
                return 40017
        return 0

    async def menu_create(request: web.Request) -> web.Response:
        refused = refusal(request, "menu/create")
        if refused:
            return refused
        raw = await request.read()
        state.menu_bodies.append(raw)
        try:
            import json

            menu = json.loads(raw)
        except ValueError:
            return web.json_response(error_body(47001, state.caller_ip))
        code = menu_error(menu)
        if code:
            return web.json_response(error_body(code, state.caller_ip))
        state.menu = menu
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def menu_get(request: web.Request) -> web.Response:
        refused = refusal(request, "menu/get")
        if refused:
            return refused
        if state.menu is None:
            return web.json_response(error_body(46003, state.caller_ip))
        return web.json_response({"menu": state.menu})

    async def menu_delete(request: web.Request) -> web.Response:
        refused = refusal(request, "menu/delete")
        if refused:
            return refused
        state.menu = None
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def upload(request: web.Request, endpoint: str) -> web.Response:
        refused = refusal(request, endpoint)
        if refused:
            return refused
        kind = request.query.get("type", "")
        if kind not in ("image", "voice", "video", "thumb"):
            return web.json_response(error_body(40004, state.caller_ip))
        form = await request.post()
        media = form.get("media")
        if not isinstance(media, web.FileField):
            return web.json_response(error_body(40004, state.caller_ip))
        content = media.file.read()
        description = form.get("description")
        number = len(state.uploads) + 1
        media_id = f"{'MATERIAL' if endpoint.startswith('material') else 'MEDIA'}_{kind}_{number}"
        state.uploads.append({"endpoint": endpoint, "type": kind, "filename": media.filename,
                              "content": content, "description": description, "media_id": media_id})
        if endpoint == "media/upload":
            return web.json_response({"type": kind, "media_id": media_id, "created_at": int(time.time())})
        answer = {"media_id": media_id}
        if kind == "image":
            answer["url"] = f"http://mmbiz.qpic.cn/mmbiz_png/{media_id}/0?wx_fmt=png"
        return web.json_response(answer)

    async def media_upload(request: web.Request) -> web.Response:
        return await upload(request, "media/upload")

    async def add_material(request: web.Request) -> web.Response:
        return await upload(request, "material/add_material")

    async def template_send(request: web.Request) -> web.Response:
        refused = refusal(request, "message/template/send")
        if refused:
            return refused
        data = await request.json()
        if not str(data.get("touser", "")).startswith("o"):
            return web.json_response(error_body(40003, state.caller_ip))
        if not data.get("template_id"):
            return web.json_response(error_body(40037, state.caller_ip))
        state.templates.append(data)
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": 200228332 + len(state.templates)})

    app.router.add_post("/cgi-bin/menu/create", menu_create)
    app.router.add_get("/cgi-bin/menu/get", menu_get)
    app.router.add_get("/cgi-bin/menu/delete", menu_delete)
    app.router.add_post("/cgi-bin/media/upload", media_upload)
    app.router.add_post("/cgi-bin/material/add_material", add_material)
    app.router.add_post("/cgi-bin/message/template/send", template_send)
    app.router.add_post("/cgi-bin/stable_token", stable_token)
    app.router.add_get("/cgi-bin/token", classic_token)
    app.router.add_post("/cgi-bin/message/custom/send", custom_send)
    app.router.add_post("/cgi-bin/message/custom/typing", custom_typing)
    return app

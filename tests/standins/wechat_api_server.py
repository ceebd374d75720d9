"""A local stand-in for WeChat's token and customer-service (客服) APIs, with their real error codes."""
from __future__ import annotations

import itertools
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
          45047: "out of response count limit", 48001: "api unauthorized"}


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
        error = credentials_error(data.get("appid"), data.get("secret"))
        if error:
            return error
        token = state.current_token if state.current_token and not data.get("force_refresh") else state.new_token()
        return web.json_response({"access_token": token, "expires_in": state.expires_in})

    async def classic_token(request: web.Request) -> web.Response:
        state.classic_calls += 1
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

    app.router.add_post("/cgi-bin/stable_token", stable_token)
    app.router.add_get("/cgi-bin/token", classic_token)
    app.router.add_post("/cgi-bin/message/custom/send", custom_send)
    return app

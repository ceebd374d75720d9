"""The web simulator's server side: off unless enabled, serves only local files, and sends each
message through the bot's real webhook (signed, encrypted in safe mode) on a real socket."""
from __future__ import annotations

import json
import logging
import re
import time

import pytest

from core import TextReply, hookimpl
from core.access.crypto import sha1_signature
from core.access.messages import message_key
from core.app import create_app
from core.appkeys import DELIVERY_KEY, GATEWAY_KEY
from core.operations.wechat_client import WeChatSigner, text_xml
from core.settings import deep_merge
from core.testing import build_settings

ON = {"simulator": {"enabled": True}}


class Echo:
    @hookimpl
    def skillbot_fallback(self, ctx):
        return TextReply("回声：" + ctx.message.text) if ctx.message.text else None


async def page_token(client) -> str:
    html = await (await client.get("/simulator")).text()
    return re.search(r'<meta name="simulator-token" content="([^"]+)"', html).group(1)


@pytest.fixture
def served(aiohttp_server, aiohttp_client):
    """The bot on a real loopback socket (the simulator posts to its own webhook over TCP)."""

    async def make(overrides: dict | None = None, mode: str = "plain"):
        settings = build_settings(deep_merge({"wechat": {"mode": mode}, "plugins": {"enabled": ["welcome"]}},
                                             overrides or {}))
        server = await aiohttp_server(create_app(settings, {"echo": Echo()}))
        client = await aiohttp_client(server)
        client.gateway = server.app[GATEWAY_KEY]
        client.delivery = server.app[DELIVERY_KEY]
        client.page_token = None
        if client.gateway.bot.settings.simulator.enabled:
            client.page_token = await page_token(client)

        async def sim_send(body, **kw):
            """POST to the send endpoint as the page does (JSON, its token, same origin)."""
            headers = {"X-Simulator-Token": client.page_token or "", **kw.pop("headers", {})}
            return await client.post("/simulator/api/send", json=body, headers=headers, **kw)

        client.sim_send = sim_send
        return client

    return make


async def test_everything_is_404_while_disabled(served):
    client = await served()
    for path in ("/simulator", "/simulator/static/simulator.js", "/simulator/api/info",
                 "/simulator/api/explain?key=msg:1"):
        assert (await client.get(path)).status == 404, path
    assert (await client.post("/simulator/api/send", json={"kind": "text", "text": "hi"})).status == 404


async def test_page_and_assets_are_local_files_only(served):
    client = await served(ON)
    page = await client.get("/simulator")
    html = await page.text()
    assert page.status == 200 and page.content_type == "text/html"
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith("/simulator/static/") for a in assets)
    for asset in assets:
        response = await client.get(asset)
        text = await response.text()
        assert response.status == 200, asset
        assert not re.search(r"https?://|//cdn|@import", text), f"{asset} loads something remote"
    for bad in ("../webui.py", "%2e%2e%2fwebui.py", ".hidden.js", "simulator.py", "nope.js"):
        assert (await client.get(f"/simulator/static/{bad}")).status == 404, bad


@pytest.mark.parametrize("mode", ["plain", "safe"])
async def test_send_goes_through_the_webhook_and_explains(served, mode):
    client = await served(ON, mode=mode)
    response = await client.sim_send({"kind": "text", "text": "你好", "user": "o_web"})
    result = await response.json()
    assert response.status == 200 and result["ok"]
    assert result["text"] == "回声：你好" and result["reply"]["ToUserName"] == "o_web"
    assert (result["plugin"], result["intent"]) == ("echo", "fallback")
    timings = result["explain"]["timings_ms"]
    assert {"verify", "parse", "inbound", "route", "fallback", "render", "total"} <= set(timings)
    assert result["tries"][0]["status"] == 200

    explain = await client.get("/simulator/api/explain", params={"key": result["key"]},
                               headers={"X-Simulator-Token": client.page_token})
    assert explain.status == 200 and (await explain.json())["plugin"] == "echo"
    assert (await client.get("/simulator/api/explain", params={"key": "msg:0"})).status == 404


async def test_events_location_and_voice(served):
    client = await served(deep_merge(ON, {"plugins": {"welcome": {"click_replies": {"MENU_HOURS": "9点到18点"}}}}))

    async def send(**body):
        response = await client.sim_send({"user": "o_ev", **body})
        assert response.status == 200
        return await response.json()

    assert "欢迎关注" in (await send(kind="subscribe"))["text"]
    assert (await send(kind="click", key="MENU_HOURS"))["text"] == "9点到18点"
    assert (await send(kind="subscribe", scene="store_1"))["intent"] == "welcome.subscribe"
    assert (await send(kind="voice", text="语音转文字"))["text"] == "回声：语音转文字"
    location = await send(kind="location", lat="39.9", lon="116.4")
    assert location["ok"] and location["reply"] is None  # nobody answers LOCATION: "success"
    unsupported = await send(kind="image")
    assert unsupported["text"]  # the configured reply to media nobody handles


@pytest.mark.parametrize("body", [{"kind": "fax"}, {"kind": "click"}, {"kind": "location", "lat": "north"}, []])
async def test_bad_requests_are_400(served, body):
    client = await served(ON)
    response = await client.sim_send(body)
    assert response.status == 400 and "error" in await response.json()


async def test_explain_with_the_admin_token_when_the_simulator_is_off(served):
    client = await served({"server": {"admin_token": "tok"}})
    response = await client.get("/simulator/api/explain", params={"key": "msg:1"})
    assert response.status == 401
    response = await client.get("/simulator/api/explain", params={"key": "msg:1"},
                                headers={"Authorization": "Bearer tok"})
    assert response.status == 404 and (await response.json())["error"] == "unknown key"


async def test_explanation_is_found_with_the_answer_record_too(served, redis_url):
    """With several workers another process may have answered: its record in Redis holds the
    explanation."""
    import uuid
    client = await served({**ON, "state": {"backend": "redis", "redis_url": redis_url,
                                           "key_prefix": f"webui:{uuid.uuid4().hex[:8]}:"}})
    result = await (await client.sim_send({"kind": "text", "text": "在吗"})).json()
    client.delivery.explanations.clear()  # as if a different worker had answered
    response = await client.get("/simulator/api/explain", params={"key": result["key"]},
                                headers={"X-Simulator-Token": client.page_token})
    found = await response.json()
    assert response.status == 200 and (found["plugin"], found["intent"]) == ("echo", "fallback")
    assert "route" in found["timings_ms"]


# ---- who may send and explain (issue 12, item 19) -----------------------------------------------

async def test_send_refuses_cross_site_and_non_json_and_tokenless_requests(served):
    client = await served(ON)
    body = {"kind": "text", "text": "你好", "user": "o_victim"}
    # A cross-site form or fetch without preflight can only send text/plain, urlencoded or multipart.
    plain = await client.post("/simulator/api/send", data=json.dumps(body),
                              headers={"Content-Type": "text/plain", "X-Simulator-Token": client.page_token})
    assert plain.status == 415
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site"}, {"Origin": "null"}):
        response = await client.sim_send(body, headers=headers)
        assert response.status == 403, headers
    for token in ("", "forged", client.page_token[:-1] + ("0" if client.page_token[-1] != "0" else "1")):
        response = await client.sim_send(body, headers={"X-Simulator-Token": token})
        assert response.status == 403, token
    origin = f"http://{client.server.host}:{client.server.port}"
    ok = await client.sim_send(body, headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"})
    assert ok.status == 200 and (await ok.json())["text"] == "回声：你好"
    assert client.gateway.bot.conversations is not None
    # the refused requests reached nobody: only one message was answered
    history = await client.gateway.bot.conversations.history("o_victim")
    assert [t.text for t in history if t.role == "user"] == ["你好"]


async def test_page_tokens_expire_and_belong_to_this_bot(served):
    from core.operations.simulator import (
        PAGE_TOKEN_SECONDS,
        issue_page_token,
        page_token_nonce,
    )

    client = await served(ON)
    settings = client.gateway.bot.settings
    old = issue_page_token(settings, now=time.time() - PAGE_TOKEN_SECONDS - 5)
    assert page_token_nonce(settings, old) is None
    assert (await client.sim_send({"kind": "text", "text": "hi"}, headers={"X-Simulator-Token": old})).status == 403
    other = build_settings({"wechat": {"token": "another-account"}})
    assert page_token_nonce(other, client.page_token) is None
    assert page_token_nonce(settings, client.page_token) is not None
    assert await page_token(client) != client.page_token  # one per page load


async def test_explain_shows_a_real_users_message_to_nobody_but_the_owner(served):
    """A real user's message (sent by WeChat, not the page) is not explained to a passer-by, nor
    to a page that did not send it; the page gets its own, the admin token and a request signed
    with the account's token (run.py chat --url) get any."""
    client = await served(deep_merge(ON, {"server": {"admin_token": "adm"}}))
    settings = client.gateway.bot.settings
    signer = WeChatSigner(settings.wechat.resolved_token())
    real = signer.sign(text_xml("我的电话是13800138000，住在幸福路8号", from_user="o_real", msg_id=4242))
    assert (await client.post(settings.server.path, params=real.params, data=real.body)).status == 200
    key = message_key("o_real", "4242")
    assert key in client.delivery.explanations

    async def explain(key, headers=None, params=None):
        return await client.get("/simulator/api/explain", params={"key": key, **(params or {})},
                                headers=headers or {})

    assert (await explain(key)).status == 404
    assert (await explain(key, {"X-Simulator-Token": client.page_token})).status == 404
    mine = await (await client.sim_send({"kind": "text", "text": "页面发的", "user": "o_page"})).json()
    assert (await explain(mine["key"], {"X-Simulator-Token": client.page_token})).status == 200
    another_page = await page_token(client)
    assert (await explain(mine["key"], {"X-Simulator-Token": another_page})).status == 404
    assert (await explain(mine["key"])).status == 404

    found = await explain(key, {"Authorization": "Bearer adm"})
    assert found.status == 200 and "13800138000" in "".join((await found.json())["route"]["tokens"])
    query = signer.query()
    signed = {"timestamp": query["timestamp"], "nonce": query["nonce"],
              "signature": sha1_signature(signer.token, query["timestamp"], query["nonce"], key)}
    assert (await explain(key, params=signed)).status == 200
    assert (await explain("msg:1", params=signed)).status == 404  # the signature covers the key
    stale = dict(signed, timestamp=str(int(query["timestamp"]) - 3600))
    stale["signature"] = sha1_signature(signer.token, stale["timestamp"], stale["nonce"], key)
    assert (await explain(key, params=stale)).status == 404


async def test_start_up_log_gives_the_url_and_says_it_is_open(served, caplog):
    caplog.set_level(logging.INFO, logger="skillbot.simulator")
    await served(deep_merge(ON, {"server": {"host": "0.0.0.0", "port": 8123}}))
    said = [r for r in caplog.records if r.name == "skillbot.simulator"]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    text = said[0].getMessage()
    assert "http://127.0.0.1:8123/simulator" in text and "anyone" in text and "all interfaces" in text
    caplog.clear()
    await served()
    assert not [r for r in caplog.records if r.name == "skillbot.simulator"]


async def test_filter_hits_are_explained_as_fields_not_python_reprs(served):
    client = await served(deep_merge(ON, {"plugins": {"enabled": ["filter", "welcome"]}}))
    result = await (await client.sim_send({"kind": "text", "text": "你是傻逼", "user": "o_f"})).json()
    [block] = [b for b in result["explain"]["blocks"] if b["plugin"] == "filter"]  # skillbot_explain
    assert block["title"] == "敏感词命中" and block["summary"] == "1 处"
    assert block["items"] == ["「傻逼」（用户消息，拦截）"]
    hits = block["data"]["hits"]
    assert hits and all(isinstance(h, dict) for h in hits)
    assert {"word", "category", "action", "direction"} <= set(hits[0])
    assert "Hit(" not in json.dumps(result["explain"], ensure_ascii=False)

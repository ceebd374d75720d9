"""The web simulator's server side: off unless enabled, serves only local files, and sends each
message through the bot's real webhook (signed, encrypted in safe mode) on a real socket."""
from __future__ import annotations

import re

import pytest

from core import TextReply, hookimpl
from core.app import create_app
from core.appkeys import GATEWAY_KEY
from core.testing import build_settings
from core.settings import deep_merge

ON = {"simulator": {"enabled": True}}


class Echo:
    @hookimpl
    def skillbot_fallback(self, ctx):
        return TextReply("回声：" + ctx.message.text) if ctx.message.text else None


@pytest.fixture
def served(aiohttp_server, aiohttp_client):
    """The bot on a real loopback socket (the simulator posts to its own webhook over TCP)."""

    async def make(overrides: dict | None = None, mode: str = "plain"):
        settings = build_settings(deep_merge({"wechat": {"mode": mode}, "plugins": {"enabled": ["welcome"]}},
                                             overrides or {}))
        server = await aiohttp_server(create_app(settings, {"echo": Echo()}))
        client = await aiohttp_client(server)
        client.gateway = server.app[GATEWAY_KEY]
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
    response = await client.post("/simulator/api/send", json={"kind": "text", "text": "你好", "user": "o_web"})
    result = await response.json()
    assert response.status == 200 and result["ok"]
    assert result["text"] == "回声：你好" and result["reply"]["ToUserName"] == "o_web"
    assert (result["plugin"], result["intent"]) == ("echo", "fallback")
    timings = result["explain"]["timings_ms"]
    assert {"verify", "parse", "inbound", "route", "fallback", "render", "total"} <= set(timings)
    assert result["tries"][0]["status"] == 200

    explain = await client.get("/simulator/api/explain", params={"key": result["key"]})
    assert explain.status == 200 and (await explain.json())["plugin"] == "echo"
    assert (await client.get("/simulator/api/explain", params={"key": "msg:0"})).status == 404


async def test_events_location_and_voice(served):
    client = await served(deep_merge(ON, {"plugins": {"welcome": {"click_replies": {"MENU_HOURS": "9点到18点"}}}}))

    async def send(**body):
        response = await client.post("/simulator/api/send", json={"user": "o_ev", **body})
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
    response = await client.post("/simulator/api/send", json=body)
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
    result = await (await client.post("/simulator/api/send", json={"kind": "text", "text": "在吗"})).json()
    client.gateway.explanations.clear()  # as if a different worker had answered
    response = await client.get("/simulator/api/explain", params={"key": result["key"]})
    found = await response.json()
    assert response.status == 200 and (found["plugin"], found["intent"]) == ("echo", "fallback")
    assert "route" in found["timings_ms"]

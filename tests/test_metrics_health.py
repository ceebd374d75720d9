"""/healthz (liveness), /readyz (readiness with the state backend and plugins' services via
``skillbot_health``), and ``core.operations.health.probe_http`` against a local server."""
from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from core import hookimpl
from core.operations.health import Check, probe_http


class Reports:
    """A plugin that depends on a service and reports its state through ``skillbot_health``."""

    def __init__(self, ok: bool = True):
        self.ok = ok
        self.probes: list[bool] = []

    @hookimpl
    def skillbot_health(self, bot, probe):
        self.probes.append(probe)
        return [Check("upstream demo", self.ok, "circuit closed" if self.ok else "circuit open"),
                {"name": "second service", "ok": True, "detail": "as a dict"}]


class Broken:
    @hookimpl
    def skillbot_health(self, bot, probe):
        raise RuntimeError("health code bug")


class Slow:
    @hookimpl
    async def skillbot_health(self, bot, probe):
        await asyncio.sleep(30)


async def test_readyz_reports_state_and_plugin_services(wechat):
    reports = Reports()
    h = await wechat(enabled=["welcome"], plugins={"reports": reports})
    response = await h.client.get("/readyz")
    body = await response.json()
    assert response.status == 200 and body["status"] == "ok"
    names = {c["name"]: c for c in body["checks"]}
    assert names["state"]["ok"] and names["state"]["detail"].startswith("memory")
    assert names["upstream demo"]["plugin"] == "reports" and names["second service"]["ok"]
    assert reports.probes == [False]  # readiness never asks plugins to do I/O

    reports.ok = False
    body = await (await h.client.get("/readyz")).json()
    assert body["status"] == "degraded"  # still 200: the bot answers, politely
    assert not {c["name"]: c for c in body["checks"]}["upstream demo"]["ok"]


async def test_a_failing_or_hanging_health_hook_is_a_failed_check(wechat):
    h = await wechat(enabled=["welcome"], plugins={"broken": Broken(), "slow": Slow()})
    response = await h.client.get("/readyz")
    body = await response.json()
    assert response.status == 200 and body["status"] == "degraded"
    failed = {c["plugin"]: c for c in body["checks"] if not c["ok"]}
    assert set(failed) == {"broken", "slow"}
    assert "health code bug" not in str(body)  # no exception text leaks


async def test_health_details_need_the_admin_token(wechat):
    h = await wechat(enabled=["welcome"], plugins={"reports": Reports()},
                     overrides={"server": {"admin_token": "tok"}})
    for path in ("/healthz", "/readyz"):
        response = await h.client.get(path)
        body = await response.json()
        assert response.status == 200 and set(body) == {"status"}, path  # probes still work
        body = await (await h.client.get(path, headers={"Authorization": "Bearer tok"})).json()
        assert len(body) > 1, path
    body = await (await h.client.get("/healthz", headers={"Authorization": "Bearer tok"})).json()
    assert body["state"] == "memory" and body["reload"]["last_error"] is None


async def test_probe_http_tells_reachable_refused_and_down(aiohttp_server):
    async def ok(request):
        return web.json_response({"data": []})

    async def refused(request):
        return web.json_response({"error": {"code": "invalid_api_key"}}, status=401)

    async def missing(request):
        return web.Response(status=404)

    async def broken(request):
        return web.Response(status=502, text="<html>bad gateway</html>")

    async def hangs(request):
        await asyncio.sleep(5)
        return web.Response()

    app = web.Application()
    for path, handler in [("/ok", ok), ("/refused", refused), ("/missing", missing),
                          ("/broken", broken), ("/hangs", hangs)]:
        app.router.add_get(path, handler)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as session:
        results = {path: await probe_http(session, str(server.make_url(path)), name=path, timeout=0.5)
                   for path in ("/ok", "/refused", "/missing", "/broken", "/hangs")}
        closed = server.port
        await server.close()
        down = await probe_http(session, f"http://127.0.0.1:{closed}/ok", name="down", timeout=1)
    assert results["/ok"].ok and "HTTP 200" in results["/ok"].detail
    assert not results["/refused"].ok and "credentials" in results["/refused"].detail
    assert results["/missing"].ok  # the server answers; the path is just not there
    assert not results["/broken"].ok and "502" in results["/broken"].detail
    assert not results["/hangs"].ok and "no answer" in results["/hangs"].detail
    assert not down.ok

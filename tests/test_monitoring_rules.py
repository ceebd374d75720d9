"""docs/deploy: the Prometheus alerting rules pass ``promtool check rules``, the Grafana dashboard's
queries are valid PromQL, and every metric, label and label value they name is in a live bot's
``/metrics`` after real messages through the webhook."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from core import hookimpl
from core.app import create_app
from core.operations.reload import RELOADER_KEY
from core.settings import PROJECT_ROOT, load_settings
from core.operations.wechat_client import WeChatSigner, text_xml
from core.testing import write_settings
from tests.standins.openai_server import OpenAIStandIn, server_error
from tests.standins.weather_server import WeatherStandIn
from tests.test_metrics import parse_exposition

DEPLOY = PROJECT_ROOT / "docs" / "deploy"
ALERTS = DEPLOY / "alerts.yml"
DASHBOARD = DEPLOY / "grafana-dashboard.json"

#: Labels Prometheus adds at scrape time, and its own per-target series.
SCRAPE_LABELS = {"instance", "job"}
PROMETHEUS_SERIES = {"up"}
#: Label values the rules select that this test's bot cannot produce, with the reason.
NOT_PRODUCED_HERE = {
    ("skillbot_message_outcomes_total", "outcome", "error"): "needs the pipeline itself to fail",
    ("skillbot_state_up", "backend", "redis"): "the test bot keeps its state in memory",
}

_SELECTOR = re.compile(r"\b(skillbot_[a-z0-9_]+|up)\b\s*(\{[^}]*\})?")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def promtool() -> str:
    path = shutil.which("promtool")
    if path:
        return path
    reason = "promtool is not installed (Debian: apt-get install prometheus)"
    if os.environ.get("SKILLBOT_REQUIRE_PROMTOOL"):
        pytest.fail(reason + "; SKILLBOT_REQUIRE_PROMTOOL is set")
    pytest.skip(reason)


def alert_rules() -> list[dict]:
    data = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    """Every PromQL query of the dashboard, Grafana's variables given concrete values."""
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for variable in board["templating"]["list"]:
        match = re.fullmatch(r"label_values\((\w+), *(\w+)\)", variable.get("definition", ""))
        if match:
            queries.append(f"count by ({match[2]}) ({match[1]})")
    return [q.replace("$__rate_interval", "5m").replace("$instance", ".*") for q in queries]


def check_rules_file(tmp_path, name: str, rules: list[dict]) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"groups": [{"name": "check", "rules": rules}]}), encoding="utf-8")
    done = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_alert_rules_pass_promtool():
    done = subprocess.run([promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def test_promtool_refuses_a_broken_rule(tmp_path):
    """The check above can fail: an unbalanced expression is refused."""
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"alert": "Broken", "expr": "sum(rate(skillbot_messages_total[5m])"}]}]}), encoding="utf-8")
    done = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0


def test_dashboard_queries_are_valid_promql(tmp_path):
    queries = dashboard_queries()
    assert len(queries) >= 20
    rules = [{"record": f"skillbot:dashboard_query_{i}", "expr": q} for i, q in enumerate(queries)]
    assert f"SUCCESS: {len(rules)} rules found" in check_rules_file(tmp_path, "dashboard.yml", rules)


def test_alerts_cover_what_operators_must_hear_about():
    exprs = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    for rule in alert_rules():
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
    wanted = {  # what the alert is about -> a metric its expression must read
        "SkillbotErrorRate": 'outcome="error"', "SkillbotFallbackRate": "fallback",
        "SkillbotSlowAnswers": 'stage="pipeline"', "SkillbotModelProviderFailing": "skillbot_model_attempts_total",
        "SkillbotWeatherProviderFailing": 'plugin="weather"', "SkillbotRedisDegraded": "skillbot_state_up",
        "SkillbotSettingsReloadRejected": 'result="rejected"'}
    for alert, needle in wanted.items():
        assert needle in exprs[alert], alert
    assert re.search(r"> 4\.5\b", exprs["SkillbotSlowAnswers"])  # inside WeChat's 5 s window


# ---- the live bot --------------------------------------------------------------------------------

class Crasher:
    """A plugin whose inbound filter raises on one word, so plugin failures are counted."""

    @hookimpl
    def skillbot_inbound_filter(self, ctx):
        if ctx.message.text == "崩溃测试":
            raise RuntimeError("a plugin failure for the monitoring test")
        return None


@pytest.fixture
async def live_metrics(aiohttp_client, aiohttp_server, tmp_path):
    """/metrics of a bot that answered FAQ, weather and model questions, met a failing weather
    provider and model, a failing plugin, a filtered word, a bad signature and a rejected reload."""
    weather = WeatherStandIn()
    weather_server = await aiohttp_server(weather.app())
    async with OpenAIStandIn() as llm:
        path = write_settings(tmp_path / "settings.toml", {
            "server": {"reload_interval": 0},
            "plugins": {"weather": {"base_url": str(weather_server.make_url("")).rstrip("/"), "timeout": 1.0},
                        "llm": {"providers": [llm.provider("standin")], "circuit_breaker_failures": 5}}})
        settings = load_settings(path)
        app = create_app(settings, {"crasher": Crasher()})
        client = await aiohttp_client(app)
        signer = WeChatSigner(settings.wechat.resolved_token(), "plain", "", settings.wechat.app_id)

        async def say(text: str, user: str = "o_monitor") -> str:
            request = signer.sign(text_xml(text, from_user=user))
            response = await client.post(settings.server.path, params=request.params, data=request.body)
            assert response.status == 200
            fields = signer.open_reply(await response.text())
            return fields["Content"] if fields else ""

        assert "在线时间" in await say("营业时间是几点到几点")
        assert "北京" in await say("北京今天天气怎么样", user="o_weather")
        weather.mode = "error500"
        await say("上海明天天气怎么样", user="o_weather_2")  # a polite apology, counted as a failure
        assert await say("讲个笑话", user="o_llm") == "回声：讲个笑话"
        llm.state.default = server_error(500)
        await say("再讲一个", user="o_llm")
        await say("你这个脑残", user="o_filter")
        await say("崩溃测试", user="o_crash")
        bad = signer.sign(text_xml("你好"))
        bad.params["signature"] = "0" * 40
        assert (await client.post(settings.server.path, params=bad.params, data=bad.body)).status == 403
        path.write_text("[server\nport = 1", encoding="utf-8")
        assert (await app[RELOADER_KEY].check()).outcome == "rejected"
        response = await client.get("/metrics")
        assert response.status == 200
        return parse_exposition(await response.text())


def selectors(expr: str):
    """(metric, [(label, op, value)]) for every metric the expression reads."""
    for match in _SELECTOR.finditer(expr):
        yield match[1], _MATCHER.findall(match[2] or "")


async def test_every_metric_and_label_in_rules_and_dashboard_is_in_metrics(live_metrics):
    observed: dict[str, dict[str, set[str]]] = {}
    for name, labels in live_metrics:
        family = observed.setdefault(name, {})
        for label, value in labels:
            family.setdefault(label, set()).add(value)
    sources = [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()]
    sources += [(f"dashboard query {i}", q) for i, q in enumerate(dashboard_queries())]
    problems = []
    for where, expr in sources:
        names = set()
        for name, matchers in selectors(expr):
            if name in PROMETHEUS_SERIES:
                continue
            names.add(name)
            if name not in observed:
                problems.append(f"{where}: {name} is not in /metrics")
                continue
            for label, op, value in matchers:
                if label in SCRAPE_LABELS:
                    continue
                if label not in observed[name]:
                    problems.append(f"{where}: {name} has no label {label}")
                elif op == "=" and value not in observed[name][label] \
                        and (name, label, value) not in NOT_PRODUCED_HERE:
                    problems.append(f"{where}: {name}{{{label}=\"{value}\"}} never appears "
                                    f"(seen: {sorted(observed[name][label])})")
        known = set().union(*(observed.get(n, {}).keys() for n in names)) | SCRAPE_LABELS | {"le"}
        for grouping in _GROUPING.findall(expr):
            for label in filter(None, (part.strip() for part in grouping.split(","))):
                if label not in known:
                    problems.append(f"{where}: groups by {label}, which none of its metrics has")
    assert not problems, "\n".join(problems)


async def test_the_added_provider_failure_metric_counts_weather_failures(live_metrics):
    failures = {dict(labels)["provider"]: value for (name, labels), value in live_metrics.items()
                if name == "skillbot_provider_failures_total" and dict(labels).get("plugin") == "weather"}
    assert failures == {"open-meteo": 1.0}

"""Several official accounts in one deployment: each ``[accounts.<name>]`` is served at
``/wechat/<name>`` with its own token, mode, plugins, FAQ and state, beside the default account;
one account's traffic, rate limit, broken settings or reload never touch another's.

Everything goes through real HTTP (aiohttp's test server on a socket), signed (and encrypted in
safe mode) the way WeChat does it."""
from __future__ import annotations

import re
import tomllib

import pytest

from core.app import create_app
from core.appkeys import ACCOUNTS_KEY, GATEWAY_KEY
from core.operations.reload import RELOADER_KEY
from core.operations.wechat_client import WeChatSigner, text_xml
from core.settings import PROJECT_ROOT, account_settings, load_settings, settings_from_dict
from core.settings_schema import ConfigError

SHOP_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
CLINIC_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"
QUESTION = "你们的营业时间是什么时候"
SHOP_ANSWER = "小店每天九点到晚上十点营业。"
CLINIC_ANSWER = "诊所周一至周五早上八点开门。"
DEFAULT_ANSWER = "总部工作日九点上班。"
NO_ANSWER = "抱歉，我暂时没有理解您的意思，可以换个说法试试。"


def faq_file(folder, name: str, answer: str) -> str:
    path = folder / f"faq-{name}.toml"
    path.write_text(f"""
[[entry]]
id = "hours"
questions = ["你们的营业时间是什么时候", "几点开门", "几点营业"]
answer = "{answer}"
""", encoding="utf-8")
    return str(path)


def write_settings(path, folder, shop_extra: str = "", clinic_extra: str = "", extra: str = "",
                   state: str = "", server: str = "") -> None:
    path.write_text(f"""
[server]
reload_interval = 0
{server}
[wechat]
token = "defaulttoken"
mode = "plain"
[delivery]
try_budget = 1.0
hold_seconds = 2.0
[ratelimit]
burst = 1000
{state}
[plugins]
enabled = ["faq"]
entry_points = false
[plugins.faq]
path = "{faq_file(folder, 'default', DEFAULT_ANSWER)}"
reload_interval = 0
{extra}

[accounts.shop.wechat]
token = "shoptoken"
app_id = "wx_shop"
encoding_aes_key = "{SHOP_KEY}"
mode = "plain"
[accounts.shop.plugins.faq]
path = "{faq_file(folder, 'shop', SHOP_ANSWER)}"
{shop_extra}

[accounts.clinic.wechat]
token = "clinictoken"
app_id = "wx_clinic"
encoding_aes_key = "{CLINIC_KEY}"
mode = "safe"
[accounts.clinic.plugins.faq]
path = "{faq_file(folder, 'clinic', CLINIC_ANSWER)}"
{clinic_extra}
""", encoding="utf-8")


SIGNERS = {
    "default": WeChatSigner("defaulttoken"),
    "shop": WeChatSigner("shoptoken", "plain", SHOP_KEY, "wx_shop"),
    "clinic": WeChatSigner("clinictoken", "safe", CLINIC_KEY, "wx_clinic"),
}
PATHS = {"default": "/wechat", "shop": "/wechat/shop", "clinic": "/wechat/clinic"}


async def say(client, account: str, text: str, user: str = "o_user", signer: WeChatSigner | None = None,
              path: str | None = None) -> tuple[int, str]:
    """Post ``text`` to ``account``'s webhook; (status, reply text or the body)."""
    signer = signer or SIGNERS[account]
    request = signer.sign(text_xml(text, from_user=user, to_user=f"gh_{account}"))
    response = await client.post(path or PATHS[account], params=request.params, data=request.body)
    body = await response.text()
    if response.status != 200:
        return response.status, body
    fields = signer.open_reply(body)
    return 200, (fields or {}).get("Content", body)


@pytest.fixture
async def deployment(aiohttp_client, tmp_path):
    """(client, app, settings path) of a deployment with the default account, shop and clinic."""

    async def make(**kw):
        path = tmp_path / "settings.toml"
        write_settings(path, tmp_path, **kw)
        app = create_app(load_settings(path))
        return await aiohttp_client(app), app, path

    return make


async def test_two_accounts_with_different_modes_and_faqs_answer_side_by_side(deployment):
    client, app, _ = await deployment()
    assert await say(client, "shop", QUESTION) == (200, SHOP_ANSWER)
    assert await say(client, "clinic", QUESTION) == (200, CLINIC_ANSWER)  # encrypted both ways
    assert await say(client, "default", QUESTION) == (200, DEFAULT_ANSWER)
    # Each account's own mode: the safe account refuses plaintext, the plain one takes it.
    plain_to_clinic = WeChatSigner("clinictoken")
    assert (await say(client, "clinic", QUESTION, signer=plain_to_clinic))[0] == 400
    # Each account's own token: shop's signature is worthless at clinic's and the default's paths.
    assert (await say(client, "clinic", QUESTION, signer=SIGNERS["shop"]))[0] == 403
    assert (await say(client, "default", QUESTION, signer=SIGNERS["shop"]))[0] == 403
    assert (await say(client, "shop", QUESTION, signer=SIGNERS["default"]))[0] == 403
    # An account nobody configured is not found.
    assert (await say(client, "shop", QUESTION, path="/wechat/nobody"))[0] == 404
    # One bot per account, each with its own plugin instance.
    accounts = app[ACCOUNTS_KEY]
    bots = [accounts.default.bot, accounts.named["shop"].gateway.bot, accounts.named["clinic"].gateway.bot]
    faqs = [bot.pm.get_plugin("faq") for bot in bots]
    assert len({id(bot) for bot in bots}) == 3 and len({id(faq) for faq in faqs}) == 3


async def test_an_accounts_rate_limit_and_conversation_are_its_own(deployment):
    client, app, _ = await deployment(shop_extra="[accounts.shop.ratelimit]\nburst = 2\nrate = 0.01")
    user = "o_same_person"
    assert await say(client, "shop", QUESTION, user) == (200, SHOP_ANSWER)
    assert await say(client, "shop", QUESTION, user) == (200, SHOP_ANSWER)
    status, text = await say(client, "shop", QUESTION, user)
    assert status == 200 and text == "您发送消息太频繁了，请稍后再试。"
    # The same OpenID at the other accounts is not limited: their buckets are their own.
    for _ in range(3):
        assert await say(client, "clinic", QUESTION, user) == (200, CLINIC_ANSWER)
        assert await say(client, "default", QUESTION, user) == (200, DEFAULT_ANSWER)
    clinic_bot = app[ACCOUNTS_KEY].named["clinic"].gateway.bot
    shop_bot = app[ACCOUNTS_KEY].named["shop"].gateway.bot
    clinic_history = await clinic_bot.conversations.history(user)
    assert [t.text for t in clinic_history if t.role == "assistant"] == [CLINIC_ANSWER] * 3
    assert all(t.text != CLINIC_ANSWER for t in await shop_bot.conversations.history(user))


async def test_a_broken_account_is_reported_and_not_served_while_the_others_answer(deployment):
    client, app, _ = await deployment(
        extra='[accounts.broken.wechat]\ntoken = "x"\nmode = "fast"\n[accounts.broken.plugins.faq]\nthreshold = 7')
    status, body = await say(client, "shop", QUESTION, path="/wechat/broken")
    assert status == 503 and "Traceback" not in body
    assert await say(client, "shop", QUESTION) == (200, SHOP_ANSWER)
    assert await say(client, "clinic", QUESTION) == (200, CLINIC_ANSWER)
    health = await (await client.get("/healthz")).json()
    assert health["status"] == "degraded"
    broken = health["accounts"]["broken"]
    assert broken["status"] == "not served" and broken["path"] == "/wechat/broken"
    assert "accounts.broken.wechat.mode" in broken["error"]
    assert health["accounts"]["shop"]["status"] == health["accounts"]["clinic"]["status"] == "ok"
    ready = await (await client.get("/readyz")).json()
    assert ready["status"] == "degraded" and ready["accounts"]["broken"]["status"] == "not served"
    assert ready["accounts"]["shop"]["checks"][0] == {"name": "state", "ok": True,
                                                      "detail": "memory (one process)", "plugin": ""}


async def test_a_plugin_table_broken_in_one_account_stops_only_that_account(deployment):
    client, app, _ = await deployment(clinic_extra="threshold = 7")
    assert await say(client, "shop", QUESTION) == (200, SHOP_ANSWER)
    assert (await say(client, "clinic", QUESTION))[0] == 503
    error = app[ACCOUNTS_KEY].named["clinic"].error
    assert error is not None and "accounts.clinic.plugins.faq.threshold" in error


async def test_metrics_and_health_carry_the_account(deployment):
    client, app, _ = await deployment()
    await say(client, "shop", QUESTION)
    await say(client, "shop", QUESTION, user="o_other")
    await say(client, "clinic", QUESTION)
    text = await (await client.get("/metrics")).text()
    assert text.count("# TYPE skillbot_messages_total counter") == 1  # one family, labelled samples
    assert 'skillbot_messages_total{account="shop",type="text",intent="faq",plugin="faq"} 2' in text
    assert 'skillbot_messages_total{account="clinic",type="text",intent="faq",plugin="faq"} 1' in text
    assert 'skillbot_start_time_seconds{account="default"}' in text
    health = await (await client.get("/healthz")).json()
    assert health["status"] == "ok"
    assert {name: a["path"] for name, a in health["accounts"].items()} == PATHS
    ready = await (await client.get("/readyz")).json()
    assert ready["status"] == "ok" and set(ready["accounts"]) == set(PATHS)


async def test_reloading_one_accounts_table_rebuilds_only_that_account(deployment, tmp_path):
    client, app, path = await deployment()
    accounts = app[ACCOUNTS_KEY]
    default_bot, clinic_bot = app[GATEWAY_KEY].bot, accounts.named["clinic"].gateway.bot
    shop_bot = accounts.named["shop"].gateway.bot
    new_faq = tmp_path / "faq-shop-new.toml"
    new_faq.write_text('[[entry]]\nid = "hours"\nquestions = ["你们的营业时间是什么时候"]\n'
                       'answer = "新店全天营业。"\n', encoding="utf-8")
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace(str(tmp_path / "faq-shop.toml"), str(new_faq)), encoding="utf-8")
    reloader = app[RELOADER_KEY]
    result = await reloader.check()
    assert result.outcome == "unchanged" and result.accounts == {"shop": "applied"}
    assert await say(client, "shop", QUESTION) == (200, "新店全天营业。")
    assert accounts.named["shop"].gateway.bot is not shop_bot
    assert app[GATEWAY_KEY].bot is default_bot and accounts.named["clinic"].gateway.bot is clinic_bot
    await reloader.drain()
    assert not shop_bot.started and default_bot.started and clinic_bot.started

    # A broken edit of one account: that account keeps its running settings, the others go on.
    running = accounts.named["shop"].gateway.bot
    path.write_text(path.read_text(encoding="utf-8").replace(
        "[accounts.shop.plugins.faq]", "[accounts.shop.plugins.faq]\nthreshold = 9"), encoding="utf-8")
    result = await reloader.check()
    assert result.accounts == {"shop": "rejected"}
    assert accounts.named["shop"].gateway.bot is running
    assert await say(client, "shop", QUESTION) == (200, "新店全天营业。")
    assert await say(client, "clinic", QUESTION) == (200, CLINIC_ANSWER)
    health = await (await client.get("/healthz")).json()
    assert "accounts.shop.plugins.faq.threshold" in health["accounts"]["shop"]["reload"]["last_error"]
    assert health["reload"]["last_error"] is None  # the default account was not touched

    # A change to the top-level tables reaches every account (they inherit it).
    path.write_text(path.read_text(encoding="utf-8").replace("threshold = 9\n", "").replace(
        "burst = 1000", "burst = 999"), encoding="utf-8")
    result = await reloader.check()
    assert result.outcome == "applied" and result.accounts == {"shop": "applied", "clinic": "applied"}
    assert app[GATEWAY_KEY].bot is not default_bot
    assert accounts.named["clinic"].gateway.bot is not clinic_bot
    assert await say(client, "clinic", QUESTION) == (200, CLINIC_ANSWER)


async def test_reload_adds_fixes_and_removes_accounts(deployment, tmp_path):
    client, app, path = await deployment(extra='[accounts.late.wechat]\ntoken = "latetoken"\nmode = "fast"')
    reloader = app[RELOADER_KEY]
    late = WeChatSigner("latetoken")
    assert (await say(client, "shop", QUESTION, signer=late, path="/wechat/late"))[0] == 503
    path.write_text(path.read_text(encoding="utf-8").replace('mode = "fast"', 'mode = "plain"'), encoding="utf-8")
    assert (await reloader.check()).accounts == {"late": "applied"}
    # It inherits the top-level plugins and FAQ, not another account's token.
    assert await say(client, "shop", QUESTION, signer=late, path="/wechat/late") == (200, DEFAULT_ANSWER)
    text = path.read_text(encoding="utf-8")
    clinic_table = text[text.index("[accounts.clinic.wechat]"):]
    path.write_text(text.replace(clinic_table, ""), encoding="utf-8")
    clinic_bot = app[ACCOUNTS_KEY].named["clinic"].gateway.bot
    assert (await reloader.check()).accounts == {"clinic": "removed"}
    assert (await say(client, "clinic", QUESTION))[0] == 404
    await reloader.drain()
    assert not clinic_bot.started
    assert await say(client, "shop", QUESTION) == (200, SHOP_ANSWER)


def test_account_settings_merge_over_the_top_level_and_keep_their_own_identity(tmp_path):
    path = tmp_path / "settings.toml"
    write_settings(path, tmp_path, shop_extra="[accounts.shop.router]\nthreshold = 0.5")
    base = load_settings(path)
    shop = account_settings(base, "shop")
    assert shop.server.path == "/wechat/shop" and shop.account == "shop"
    assert shop.router.threshold == 0.5 and base.router.threshold == 0.35
    assert shop.delivery.try_budget == 1.0  # inherited
    assert shop.plugin_tables["faq"]["reload_interval"] == 0  # inherited key of an overridden table
    assert shop.plugin_tables["faq"]["path"].endswith("faq-shop.toml")
    assert shop.state.key_prefix == "skillbot:account:shop:"
    # The identity is never inherited: an account without its own token has none.
    base.accounts["bare"] = {"wechat": {"mode": "plain"}}
    with pytest.raises(ConfigError) as bare:
        account_settings(base, "bare")
    assert bare.value.errors == ["accounts.bare.wechat.token is empty"]
    base.accounts["odd"] = {"server": {"port": 1}, "wechat": {"token": "t", "timestamp_window": "x"}}
    with pytest.raises(ConfigError) as odd:
        account_settings(base, "odd")
    assert odd.value.errors[0].startswith("accounts.odd.server: not set per account")
    assert odd.value.errors[1].startswith("accounts.odd.wechat.timestamp_window: expected an integer")
    with pytest.raises(ConfigError, match="account name"):
        account_settings(base, "default")


def test_a_deployment_without_accounts_is_unchanged(tmp_path):
    settings = load_settings(None, {"wechat": {"token": "t"}})
    app = create_app(settings)
    assert settings.accounts == {} and app[ACCOUNTS_KEY].named == {}
    assert [name for name, _ in app[ACCOUNTS_KEY].served()] == ["default"]


def test_the_example_account_in_settings_toml_is_valid_once_uncommented(monkeypatch):
    """settings.toml's commented [accounts.shop] example is what the docs say it is."""
    text = (PROJECT_ROOT / "settings.toml").read_text(encoding="utf-8")
    example = text[text.index("# [accounts.shop.wechat]"):]
    uncommented = "\n".join(re.sub(r"^# ?", "", line) for line in example.splitlines())
    shipped = tomllib.loads(text)
    data = {**shipped, **tomllib.loads(uncommented)}
    monkeypatch.setenv("SHOP_WECHAT_TOKEN", "shop-token-from-env")
    monkeypatch.setenv("SHOP_WECHAT_AES_KEY", SHOP_KEY)
    monkeypatch.setenv("WECHAT_TOKEN", "the-default-accounts-token")
    shop = account_settings(settings_from_dict(data, PROJECT_ROOT / "settings.toml"), "shop")
    assert shop.server.path == "/wechat/shop" and shop.wechat.mode == "safe"
    assert shop.wechat.resolved_token() == "shop-token-from-env"
    assert shop.plugins.enabled == ["filter", "welcome", "faq", "llm"]
    assert shop.plugin_tables["faq"]["path"] == "data/shop-faq.toml"
    assert shop.plugin_tables["faq"]["threshold"] == shipped["plugins"]["faq"]["threshold"]
    assert shop.plugin_tables["llm"]["persona"].startswith("你是小满优选")


async def test_a_defect_inside_an_accounts_webhook_is_acknowledged_not_a_500(deployment):
    client, app, _ = await deployment()

    async def broken(*args, **kwargs):
        raise RuntimeError("a defect")

    app[ACCOUNTS_KEY].named["shop"].gateway.delivery.on_try = broken
    status, body = await say(client, "shop", QUESTION)
    assert (status, body) == (200, "success")  # WeChat shows the user nothing, retries nothing
    assert await say(client, "clinic", QUESTION) == (200, CLINIC_ANSWER)


async def test_a_plugin_that_breaks_while_an_account_is_built_stops_only_that_account(deployment, tmp_path):
    folder = tmp_path / "extra_plugins" / "schema_crash"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(
        "from core import hookimpl\n\n\nclass Plugin:\n    @hookimpl\n    def skillbot_config_schema(self):\n"
        "        raise KeyError('a bug in the plugin')\n", encoding="utf-8")
    client, app, _ = await deployment(extra=f'[accounts.shop.plugins]\nenabled = ["faq", "schema_crash"]\n'
                                            f'paths = ["{tmp_path / "extra_plugins"}"]')
    assert (await say(client, "shop", QUESTION))[0] == 503
    assert "building the bot failed (KeyError" in app[ACCOUNTS_KEY].named["shop"].error
    assert await say(client, "clinic", QUESTION) == (200, CLINIC_ANSWER)


def test_each_named_account_keeps_its_data_in_its_own_folder(tmp_path, monkeypatch):
    """The FAQ question log and the console's records live in the data folder: two accounts
    sharing one would show one account's users' questions in the other's console."""
    monkeypatch.setenv("SKILLBOT_DATA_DIR", str(tmp_path / "data"))
    base = settings_from_dict({"accounts": {"shop": {"wechat": {"token": "t1"}},
                                            "clinic": {"wechat": {"token": "t2"}}}})
    shop, clinic = account_settings(base, "shop"), account_settings(base, "clinic")
    assert base.data_dir == tmp_path / "data"
    assert shop.data_dir == tmp_path / "data" / "accounts" / "shop"
    assert clinic.data_dir == tmp_path / "data" / "accounts" / "clinic"

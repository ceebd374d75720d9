"""``run.py chat --account``, ``run.py plugins --account`` and ``run.py check`` with several
accounts, run as an operator runs them (subprocesses)."""
from __future__ import annotations

import json

from core.app import create_app
from core.appkeys import GATEWAY_KEY
from core.operations.chat_console import signer_for
from core.operations.reload import RELOADER_KEY
from core.operations.wechat_client import text_xml
from core.settings import account_settings, load_settings
from tests.test_accounts import CLINIC_ANSWER, QUESTION, SHOP_ANSWER, write_settings
from tests.test_cli import run_py

SHOP_PLUGINS = '[accounts.shop.plugins]\nenabled = ["smalltalk", "faq"]'


async def test_chat_talks_to_the_named_account(tmp_path):
    path = tmp_path / "settings.toml"
    write_settings(path, tmp_path)
    code, out, err = await run_py("chat", QUESTION, "--account", "clinic", "--settings", str(path))
    assert code == 0, err
    assert out.splitlines()[0] == f"bot> {CLINIC_ANSWER}"
    code, out, err = await run_py("chat", QUESTION, "--account", "shop", "--settings", str(path))
    assert code == 0 and out.splitlines()[0] == f"bot> {SHOP_ANSWER}", err
    code, out, err = await run_py("chat", QUESTION, "--account", "nobody", "--settings", str(path))
    assert code == 2 and "accounts.nobody: no such account (accounts: clinic, shop)" in err


async def test_plugins_lists_the_named_accounts_plugins(tmp_path):
    path = tmp_path / "settings.toml"
    write_settings(path, tmp_path, extra=SHOP_PLUGINS)
    code, out, err = await run_py("plugins", "--account", "shop", "--json", "--settings", str(path))
    assert code == 0, err
    listing = json.loads(out)
    assert listing["account"] == "shop"
    assert [row["name"] for row in listing["plugins"] if row["enabled"]] == ["smalltalk", "faq"]
    code, out, err = await run_py("plugins", "--settings", str(path))
    assert code == 0, err
    assert "accounts: clinic, shop (run.py plugins --account NAME)" in out


async def test_check_checks_every_account_and_names_a_broken_ones_key(tmp_path):
    path = tmp_path / "settings.toml"
    write_settings(path, tmp_path, clinic_extra="threshold = 7")
    code, out, err = await run_py("check", "--settings", str(path))
    assert code == 2, out + err
    lines = out.splitlines()
    assert "OK    [shop] plugins: every plugin started" in lines
    assert any(line.startswith("FAIL  [clinic] plugins: accounts.clinic.plugins.faq.threshold") for line in lines)
    assert "OK    plugins: every plugin started" in lines  # the default account's


async def test_an_app_serving_one_account_reloads_that_account(aiohttp_client, tmp_path):
    """What ``run.py chat --account`` serves: a reload keeps to that account's settings."""
    path = tmp_path / "settings.toml"
    write_settings(path, tmp_path)
    settings = account_settings(load_settings(path), "clinic")
    app = create_app(settings)
    client = await aiohttp_client(app)
    path.write_text(path.read_text(encoding="utf-8") + "\n# touched\n", encoding="utf-8")
    assert (await app[RELOADER_KEY].check()).outcome == "applied"
    signer = signer_for(app[GATEWAY_KEY].bot.settings)
    request = signer.sign(text_xml(QUESTION))
    response = await client.post("/wechat/clinic", params=request.params, data=request.body)
    assert signer.open_reply(await response.text())["Content"] == CLINIC_ANSWER
    assert app[GATEWAY_KEY].bot.settings.account == "clinic"

"""Settings: the shipped file loads, every key is commented, bad values stop start-up naming the key."""
from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from core.bot import Bot
from core.config import ConfigError
from core.settings import PROJECT_ROOT, load_settings, settings_from_dict

SHIPPED = PROJECT_ROOT / "settings.toml"


def test_shipped_settings_load_and_need_no_service():
    settings = load_settings(SHIPPED)
    assert settings.state.backend == "memory"
    assert settings.wechat.mode == "plain"
    Bot(settings)  # every enabled plugin is found and its table validates


def test_every_shipped_key_has_a_comment_with_its_default():
    missing = []
    for number, line in enumerate(SHIPPED.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "[")):
            continue
        if re.match(r"^[A-Za-z_][\w]*\s*=", stripped) and ("#" not in stripped or "default" not in stripped.split("#", 1)[1]):
            missing.append(f"line {number}: {stripped}")
    assert not missing, "keys without a '# ... default' comment:\n" + "\n".join(missing)


@pytest.mark.parametrize("data,where", [
    ({"server": {"port": "eighty"}}, "server.port"),
    ({"server": {"prot": 80}}, "server.prot"),
    ({"wechat": {"mode": "secure"}}, "wechat.mode"),
    ({"wechat": {"mode": "safe", "app_id": "wx1", "encoding_aes_key": "short"}}, "wechat"),
    ({"delivery": {"try_budget": "fast"}}, "delivery.try_budget"),
    ({"serverr": {}}, "serverr"),
    ({"plugins": {"enabled": ["welcome", "nosuchplugin"]}}, "nosuchplugin"),
    ({"plugins": {"enabled": ["welcome"], "welcome": {"mesage": "hi"}}}, "plugins.welcome.mesage"),
    ({"plugins": {"enabled": ["welcome"], "welcome": {"click_replies": {"A": 1}}}}, "plugins.welcome.click_replies.A"),
    ({"plugins": {"enabled": ["welcome"], "wetaher": {}}}, "plugins.wetaher"),
])
def test_invalid_values_name_the_key(data, where):
    with pytest.raises(ConfigError) as info:
        Bot(settings_from_dict(data))
    assert where in str(info.value)


def test_int_accepted_for_float_but_bool_is_not_a_number():
    assert settings_from_dict({"delivery": {"try_budget": 4}}).delivery.try_budget == 4.0
    with pytest.raises(ConfigError):
        settings_from_dict({"server": {"port": True}})


def test_env_overrides_token_and_key(monkeypatch):
    monkeypatch.setenv("WECHAT_TOKEN", "from-env")
    monkeypatch.setenv("WECHAT_ENCODING_AES_KEY", "k" * 43)
    settings = settings_from_dict({"wechat": {"mode": "safe", "app_id": "wx1"}})
    assert settings.wechat.resolved_token() == "from-env"
    assert settings.wechat.resolved_aes_key() == "k" * 43


def test_disabled_plugin_table_is_accepted_and_plugin_blocked():
    bot = Bot(settings_from_dict({"plugins": {"enabled": ["welcome"], "weather": {"timeout": 1.0}}}))
    assert bot.pm.is_blocked("weather") and not bot.pm.is_blocked("welcome")


def test_plugin_order_is_the_enabled_order():
    bot = Bot(settings_from_dict({"plugins": {"enabled": ["welcome", "filter"], "entry_points": False}}))
    names = [impl.plugin_name for impl in bot.hooks.impls("skillbot_startup")]
    assert names.index("welcome") < names.index("filter")


def test_run_py_serves_with_overrides(tmp_path):
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = tmp_path / "s.toml"
    settings.write_text('[plugins]\nenabled = ["welcome"]\n', encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "run.py", "--settings", str(settings), "--host", "127.0.0.1",
                             "--port", str(port)], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        body = None
        for _ in range(100):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        assert body is not None and b'"ok"' in body
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert f"http://127.0.0.1:{port}/wechat" in out


def test_run_py_reports_bad_settings(tmp_path):
    settings = tmp_path / "s.toml"
    settings.write_text('[server]\nport = "x"\n', encoding="utf-8")
    result = subprocess.run([sys.executable, "run.py", "--settings", str(settings)], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "server.port" in result.stderr and "Traceback" not in result.stderr

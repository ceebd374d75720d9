"""Loading ``settings.toml`` into typed, validated settings (core sections and each plugin's table)."""
from __future__ import annotations

import copy
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .config import ConfigError, from_table

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ServerSettings:
    host: str = "0.0.0.0"
    port: int = 8080
    path: str = "/wechat"
    max_body_bytes: int = 64 * 1024
    #: Token protecting /healthz details and /metrics ("" = open).
    admin_token: str = ""
    #: Seconds between checks of the settings file for changes (0 = no hot reload).
    reload_interval: float = 2.0

    def validate(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError("path must start with '/'")
        if not 0 < self.port < 65536:
            raise ValueError("port must be 1..65535")
        if self.reload_interval < 0:
            raise ValueError("reload_interval must be >= 0 (0 = off)")


@dataclass
class WeChatSettings:
    token: str = "skillbot"
    token_env: str = "WECHAT_TOKEN"
    app_id: str = ""
    app_secret_env: str = "WECHAT_APP_SECRET"
    encoding_aes_key: str = ""
    encoding_aes_key_env: str = "WECHAT_ENCODING_AES_KEY"
    mode: Literal["plain", "compatible", "safe"] = "plain"
    timestamp_window: int = 300

    def resolved_token(self) -> str:
        return (os.environ.get(self.token_env) if self.token_env else None) or self.token

    def resolved_aes_key(self) -> str:
        env = os.environ.get(self.encoding_aes_key_env, "") if self.encoding_aes_key_env else ""
        return env or self.encoding_aes_key

    def validate(self) -> None:
        if not self.resolved_token():
            raise ValueError("token is empty")
        if self.mode != "plain":
            if not self.app_id:
                raise ValueError(f"app_id is required in {self.mode} mode")
            key = self.resolved_aes_key()
            if len(key) != 43:
                raise ValueError(f"encoding_aes_key must have 43 characters in {self.mode} mode")


@dataclass
class PipelineSettings:
    plugin_timeout: float = 3.0
    fallback_timeout: float = 50.0
    no_answer_reply: str = "抱歉，我暂时没有理解您的意思，可以换个说法试试。"
    error_reply: str = "抱歉，服务开小差了，请稍后再试。"
    truncation_marker: str = "…（内容过长，已截断）"
    unsupported_reply: str = "收到啦！目前我只能看懂文字和位置消息哦。"
    templates_dir: str = "templates"


@dataclass
class DeliverySettings:
    mode: Literal["passive", "customer_service"] = "passive"
    try_budget: float = 4.5
    hold_seconds: float = 8.0
    record_ttl: float = 300.0
    pending_ttl: float = 86400.0
    pending_reply: str = "正在思考中，请稍候发送任意消息获取回答。"
    pending_prefix: str = ""
    continue_words: list[str] = field(default_factory=lambda: ["继续", "更多"])
    continue_hint: str = "（回复「继续」查看更多）"
    token_endpoint: Literal["stable", "classic"] = "stable"
    api_base: str = "https://api.weixin.qq.com"


@dataclass
class ConversationSettings:
    max_turns: int = 10
    max_chars: int = 2000
    idle_seconds: float = 1800.0
    max_users: int = 100_000


@dataclass
class RouterSettings:
    threshold: float = 0.35
    margin: float = 0.05
    max_text_chars: int = 500


@dataclass
class StateSettings:
    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "skillbot:"


@dataclass
class RateLimitSettings:
    enabled: bool = True
    rate: float = 0.5
    burst: int = 10
    reply: str = "您发送消息太频繁了，请稍后再试。"

    def validate(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")


@dataclass
class LoggingSettings:
    level: str = "INFO"
    json: bool = False
    trace_hooks: bool = False


@dataclass
class SimulatorSettings:
    #: Serve the web simulator at /simulator and its debug endpoints (development only: anyone
    #: who reaches it can talk to the bot as any user).
    enabled: bool = False


@dataclass
class PluginsSettings:
    #: Plugins to load, in priority order (earlier = called earlier within the same stage).
    enabled: list[str] = field(default_factory=lambda: ["filter", "welcome", "smalltalk", "faq", "weather", "llm"])
    #: Extra folders to search for plugin folders, besides the project's plugins/.
    paths: list[str] = field(default_factory=list)
    #: Also load plugins advertised by installed packages (entry point group skillbot.plugins).
    entry_points: bool = True


@dataclass
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    wechat: WeChatSettings = field(default_factory=WeChatSettings)
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    conversation: ConversationSettings = field(default_factory=ConversationSettings)
    router: RouterSettings = field(default_factory=RouterSettings)
    state: StateSettings = field(default_factory=StateSettings)
    ratelimit: RateLimitSettings = field(default_factory=RateLimitSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    simulator: SimulatorSettings = field(default_factory=SimulatorSettings)
    plugins: PluginsSettings = field(default_factory=PluginsSettings)
    #: Each enabled plugin's raw table; validated by the plugin's schema when plugins load.
    plugin_tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Where the settings came from (relative paths in settings resolve against its folder).
    source: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    #: The overrides applied over the file (command line, tests), re-applied on a hot reload.
    overrides: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source else PROJECT_ROOT

    def resolve_path(self, value: str | Path) -> Path:
        path = Path(value)
        return path if path.is_absolute() else (self.base_dir / path)


CORE_SECTIONS = {
    "server": ServerSettings, "wechat": WeChatSettings, "pipeline": PipelineSettings,
    "delivery": DeliverySettings, "conversation": ConversationSettings, "router": RouterSettings,
    "state": StateSettings, "ratelimit": RateLimitSettings, "logging": LoggingSettings,
    "simulator": SimulatorSettings,
}
PLUGINS_KEYS = {"enabled", "paths", "entry_points"}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def settings_from_dict(data: dict[str, Any], source: Path | None = None) -> Settings:
    """Validate the core sections; plugin tables are kept raw for their plugins to validate."""
    unknown = sorted(set(data) - set(CORE_SECTIONS) - {"plugins"})
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown section (known: {', '.join(sorted(CORE_SECTIONS))}, plugins)")
    values: dict[str, Any] = {}
    for name, cls in CORE_SECTIONS.items():
        if name in data and not isinstance(data[name], dict):
            raise ConfigError(f"{name}: expected a table")
        values[name] = from_table(cls, data.get(name), name)
    plugins_table = data.get("plugins", {})
    if not isinstance(plugins_table, dict):
        raise ConfigError("plugins: expected a table")
    core_keys = {k: v for k, v in plugins_table.items() if k in PLUGINS_KEYS}
    tables = {k: v for k, v in plugins_table.items() if k not in PLUGINS_KEYS}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"plugins.{name}: expected a table")
    values["plugins"] = from_table(PluginsSettings, core_keys, "plugins")
    return Settings(**values, plugin_tables=tables, source=source, raw=data)


def load_settings(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Read a settings file (or none: embedded defaults), apply overrides, validate."""
    data: dict[str, Any] = {}
    source = None
    if path is not None:
        source = Path(path).resolve()
        try:
            with open(source, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"settings file not found: {source}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source.name}: not valid TOML: {exc}") from None
    if overrides:
        data = deep_merge(data, overrides)
    settings = settings_from_dict(data, source)
    settings.overrides = copy.deepcopy(overrides or {})
    return settings

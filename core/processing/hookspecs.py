"""The plugin contract: every hook a Skillbot plugin can implement, grouped by pipeline stage.

Async rule: any hook implementation may be ``async def`` (except the two registration hooks,
``skillbot_config_schema`` and ``skillbot_add_hookspecs``, which run before any event loop work).
The core never lets pluggy collect coroutines; it walks the implementations itself in pluggy's
order (``tryfirst`` first, ``trylast`` last, then the plugin ``priority`` from settings), awaits
each result that is awaitable, and applies the stop rule written on the spec: ``firstresult=True``
stops at the first non-None result, every other hook calls every implementation. The caller
(``core.processing.plugin_manager.HookCaller``) reads that option from the spec and offers one
typed method per hook. A failing or slow implementation is logged and skipped: one plugin never
breaks a reply.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Protocol

import pluggy

if TYPE_CHECKING:
    import aiohttp
    import jinja2

    from ..access.replies import Reply
    from ..operations.health import Check
    from ..operations.metrics import Counter, Histogram
    from ..operations.operator_desk import BotStatus, OperatorOutcome, PluginInfo
    from ..settings import Settings
    from ..state.cache import Cache
    from ..state.conversation import ConversationStore
    from .context import Explanation, MessageContext
    from .intents import Candidate, Intent
    from .plugin_manager import HookCaller
    from .embeddings import EmbeddingService
    from .segmenter import Segmenter

PROJECT = "skillbot"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class OperatorServices(Protocol):
    """The operator's services (``bot.operator``; None when the bot runs without an app):
    implemented by ``core/operations/operator_desk.py``, used by the admin plugin. Each account's
    bot has its own, bound to that account (a named account's status, plugins and switches are its
    own)."""

    def status(self) -> BotStatus:
        """Uptime, settings file, reloads, enabled plugins, mode, state, messages answered."""
        ...

    def plugins(self) -> list[PluginInfo]:
        """Every plugin found or enabled: name, enabled, priority, origin."""
        ...

    async def reload(self) -> OperatorOutcome:
        """Apply the settings file now (validated first; refused settings leave the bot as it was)."""
        ...

    async def set_plugin_enabled(self, name: str, enabled: bool,
                                 protected: tuple[str, ...] = ()) -> OperatorOutcome:
        """Switch a plugin on (at the end of the account's ``plugins.enabled``; a named account's
        is ``[accounts.<name>.plugins] enabled``) or off in the settings file, then reload;
        refused settings put the file back."""
        ...


class BotServices(Protocol):
    """What a plugin may use of the running bot (the ``bot`` argument, ``ctx.bot``).

    ``settings``: the validated settings; ``http``: the shared ``aiohttp.ClientSession`` (the core
    opens and closes it); ``conversations``: per-user history and slots; ``configs``: every
    plugin's validated settings by plugin name; ``segmenter``: the bot's jieba segmenter (term
    weights, ``add_words``); ``hooks``: the hook caller, for hooks a plugin added itself
    (``await bot.hooks.call("skillbot_weather_providers", {})``); ``embeddings``: the embedding
    service (``await bot.embeddings.embed_query(text)``, ``await bot.embeddings.embed_set(texts,
    kind)``; core/processing/embeddings.py); ``cache_dir``: a folder for computed data
    (``paths.cache_dir``); ``operator``: the operator's services (status, reload, plugin
    switches) when the bot runs in an app, else None.
    """

    settings: Settings
    http: aiohttp.ClientSession
    conversations: ConversationStore
    configs: dict[str, Any]
    segmenter: Segmenter
    hooks: HookCaller
    embeddings: EmbeddingService
    cache_dir: Path
    operator: OperatorServices | None

    def cache(self, name: str, maxsize: int = 1024, ttl: float = 600) -> Cache:
        """A named cache shared by everything in this bot that asks for the same name."""
        ...

    def templates(self, plugin_dir: str | Path) -> jinja2.Environment:
        """Jinja2 templates: the operator's override folder first, then ``plugin_dir/templates``."""
        ...

    def tokenize(self, text: str) -> list[str]:
        """jieba tokens of ``text`` as the router sees them."""
        ...

    async def media_id(self, file: str | Path, kind: str = "image") -> str:
        """The media_id for an ``ImageReply``/``VoiceReply``/``VideoReply`` from a file (relative
        to the settings file's folder): uploaded once, cached until shortly before it expires."""
        ...

    async def send_template(self, openid: str, template_id: str, data: dict[str, str], url: str = "") -> int:
        """Send a template message; returns WeChat's msgid, raises ``WeChatAPIError``."""
        ...


# ---- set-up ------------------------------------------------------------------------------------

@hookspec
def skillbot_config_schema() -> type | None:
    """Return the dataclass that validates this plugin's ``[plugins.<name>]`` table.

    Called once per plugin while settings are loaded (synchronous). Each field is a setting; its
    default is the default. Unknown keys and values of the wrong type stop start-up with the key
    named. A ``validate(self)`` method on the dataclass may raise ``ValueError`` for finer checks.
    Every implementation is called.
    """


@hookspec
def skillbot_add_hookspecs(pm: pluggy.PluginManager) -> None:
    """Add hooks of this plugin's own: ``pm.add_hookspecs(my_hookspecs_module)``.

    Called once per plugin when the plugin manager is built, after every plugin is registered and
    before unknown hook names are refused (synchronous). Other plugins then implement the new
    hooks like any other, in any order of ``plugins.enabled``. Every implementation is called.
    """


@hookspec
def skillbot_startup(bot: BotServices, config: Any) -> None:
    """Prepare the plugin: open clients, load data, build indexes. May be async.

    ``config`` is this plugin's validated settings (an instance of its schema, or ``{}``).
    Called once per plugin instance at start-up. A settings reload builds fresh plugin instances:
    the new ones start with the new config before the old ones shut down, so keep state on
    ``self``, not in module globals. A plugin that raises here stops start-up (or rejects the
    reload) with its name in the message. Every implementation is called.
    """


@hookspec
def skillbot_shutdown(bot: BotServices) -> None:
    """Release what ``skillbot_startup`` opened. May be async. Every implementation is called."""


@hookspec
def skillbot_jieba_words() -> list[str | tuple[str, int, str]]:
    """Return words to add to jieba's dictionary at start-up so segmentation keeps them whole.

    Items are ``"word"`` or ``(word, freq, tag)`` tuples. Every implementation is called.
    """


@hookspec
def skillbot_intents() -> list[Intent]:
    """Return the ``Intent`` objects this plugin's skills handle.

    Called at start-up (and after a settings reload); every implementation is called and the
    router scores all declared intents for each message.
    """


# ---- stage 1: inbound filter --------------------------------------------------------------------

@hookspec(firstresult=True)
def skillbot_inbound_filter(ctx: MessageContext) -> Reply | None:
    """Inspect (and possibly rewrite ``ctx.message.text``) before routing.

    Return a ``Reply`` to stop the message here (it never reaches skills or the fallback), or None
    to let it through. Stops at the first non-None result.
    """


# ---- stage 2-3: routing and skills ---------------------------------------------------------------

@hookspec(firstresult=True)
def skillbot_handle(ctx: MessageContext, candidate: Candidate) -> Reply | None:
    """Answer the message as the intent in ``candidate`` (a ``Candidate``: intent, score, slots).

    Called only on the plugin that declared ``candidate.intent``, for each router candidate above
    the threshold in rank order. Return a ``Reply`` to answer, or None to decline and let the next
    candidate (and finally the fallback) try. Stops at the first non-None result.
    """


# ---- stage 4: fallback ---------------------------------------------------------------------------

@hookspec(firstresult=True)
def skillbot_fallback(ctx: MessageContext) -> Reply | None:
    """Answer what no skill answered (the LLM lives here). Return a ``Reply`` or None.

    A ``StreamedReply`` (text that arrives over time, sentence by sentence; any reply hook may
    return one) lets the delivery show its first sentences inside WeChat's window and deliver the
    rest later (docs/delivery.md). Stops at the first non-None result. When every fallback returns None the core answers text
    with the configured ``pipeline.no_answer_reply`` and events with ``success``.
    """


# ---- a service for other plugins: the configured model ------------------------------------------

@hookspec(firstresult=True)
def skillbot_ask_model(messages: list[dict[str, Any]], timeout: float) -> str | None:
    """Ask the configured chat model once, for a plugin that needs a model's words (the FAQ's
    assist picking among close entries, the knowledge skill answering from passages).

    ``messages`` is an OpenAI-format chat (``[{"role": "system", "content": ...}, {"role":
    "user", ...}]``), sent as it is, without the user's history; ``timeout`` bounds the whole
    call in seconds, failover included. Return the model's answer text (reasoning blocks removed,
    Markdown as the model wrote it), or None when there is no model, no provider answered in
    time, or the answer was refused or empty. Called by a plugin through ``await
    bot.hooks.ask_model(messages, timeout)``; implemented by the llm plugin with its providers,
    failover and circuit breakers. Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def skillbot_stream_model(messages: list[dict[str, Any]], timeout: float) -> AsyncIterator[str] | None:
    """Ask the configured chat model for an answer that is read as it is written, for a plugin
    that answers a user with it (the knowledge skill answering from passages).

    ``messages`` as for ``skillbot_ask_model``. Return at once (no request yet) an async
    iterator of the answer's pieces: WeChat plain text (reasoning and Markdown removed) in whole
    sentences or paragraphs, each with the whitespace after it, then any note the model's plugin
    adds (an answer cut at its length limit or interrupted); or None when there is no model.
    ``timeout`` bounds the wait for the first piece in seconds, failover included; after it the
    answer is bounded by the implementation's own limits. The iterator ends without any piece when
    no provider answered in time (the caller answers without the model), and ends early, never
    raising, when the answer breaks off. Called by a plugin through ``await
    bot.hooks.stream_model(messages, timeout)``, whose iterator also ends (logged) when the
    implementation's raises or its first piece is over a second late; the caller may close it
    (``aclose``) to stop the request. Implemented by the llm plugin.
    Stops at the first non-None result.
    """


# ---- stage 5: outbound filter --------------------------------------------------------------------

@hookspec
def skillbot_outbound_filter(ctx: MessageContext, reply: Reply) -> Reply | None:
    """Check a reply before it is sent. Return a replacement ``Reply``, or None to keep it.

    Every implementation is called in order; each sees the reply the previous one produced. A
    ``StreamedReply`` is checked piece by piece, each as a ``TextReply``; a replacement with
    ``record=False`` (a block) ends the streamed text after it.
    """


# ---- after the reply -----------------------------------------------------------------------------

@hookspec
def skillbot_message_done(ctx: MessageContext, reply: Reply) -> None:
    """Observe a finished message (metrics, audit). Every implementation is called; results ignored."""


@hookspec
def skillbot_explain(ctx: MessageContext) -> Explanation | None:
    """Return this plugin's block of the message's explanation (``run.py chat``, the simulator).

    An ``Explanation(title, summary, items, data)`` about what the plugin did with this message
    (the model that answered, the filter's hits), or None when it has nothing to say. Called
    after ``skillbot_message_done``; every implementation is called.
    """


# ---- operations ----------------------------------------------------------------------------------

@hookspec
def skillbot_health(bot: BotServices, probe: bool) -> list[Check] | None:
    """Report the services this plugin depends on (model providers, weather APIs...).

    Return a list of ``core.Check`` (name, ok, detail), or None when there is nothing to report.
    ``probe=False`` is asked on every ``GET /readyz``: answer from what the plugin already knows
    (circuit breakers, the last error) without any I/O. ``probe=True`` is asked by ``run.py
    check``: reach each service now with a small request (``core.probe_http``) and report what
    happened. Every implementation is called; one that raises or times out is reported as a
    failed check named after its plugin.
    """


@hookspec
def skillbot_metrics() -> list[Counter | Histogram]:
    """Return the metric families this plugin keeps (``core.Counter``, ``core.Histogram``).

    Called once after start-up; ``GET /metrics`` renders them after the core's own, without
    knowing what they count. The plugin updates them itself (in its pipeline hooks). Counts of a
    bot replaced by a settings reload are added to the new bot's families of the same name, so a
    counter never goes back. Every implementation is called.
    """

"""Skillbot core: everything a plugin author imports comes from here.

    from core import hookimpl, Intent, TextReply

Plugins import nothing else from ``core`` (tests/test_plugin_contract.py checks the built-in ones):
the contract (``hookimpl``, ``hookspec`` for hooks of a plugin's own, ``BotServices`` and the
``OperatorServices`` it may carry), WeChat's API errors (``WeChatAPIError``), messages
and replies, routing types, the context and its ``Explanation`` blocks, health checks, metric
families, and the few helpers a skill needs (settings tables, similarity scoring, the text
normaliser, ``hash_user`` for logs, ``patched_model_file`` for a plugin's own patch of the local
model).
"""
from .access.messages import (
    ClickEvent,
    Event,
    ImageMessage,
    LinkMessage,
    LocationEvent,
    LocationMessage,
    MassSendJobFinishEvent,
    Message,
    ScanEvent,
    ShortVideoMessage,
    SubscribeEvent,
    TemplateSendJobFinishEvent,
    TextMessage,
    UnknownEvent,
    UnknownMessage,
    UnsubscribeEvent,
    VideoMessage,
    ViewEvent,
    VoiceMessage,
)
from .access.replies import (
    Article,
    ImageReply,
    MusicReply,
    NewsReply,
    Reply,
    StreamedReply,
    SuccessReply,
    TextReply,
    VideoReply,
    VoiceReply,
    reply_text,
)
from .access.wechat_api import WeChatAPIError
from .operations.health import Check, probe_http
from .operations.logs import hash_user
from .operations.metrics import Counter, Histogram
from .operations.operator_desk import BotStatus, OperatorOutcome, PluginInfo
from .operations.plugin_commands import PluginCommand
from .processing.context import Explanation, MessageContext
from .processing.hookspecs import BotServices, OperatorServices, hookimpl, hookspec
from .processing.intents import Candidate, Intent, RouteResult
from .processing.local_weights import patched_model_file
from .processing.normalizer import normalize_text, symbol_word, t2s_table
from .processing.router import (
    KEYWORD_BASE,
    SimilarityIndex,
    load_general_questions,
    noisy_or,
)
from .settings import PROJECT_ROOT, resolve_path
from .settings_schema import ConfigError, from_table
from .state.cache import Cache
from .state.conversation import Turn

__all__ = [
    "hookimpl", "hookspec", "BotServices", "OperatorServices", "BotStatus", "PluginInfo",
    "OperatorOutcome", "PluginCommand", "WeChatAPIError", "hash_user", "MessageContext", "Explanation", "Turn",
    "Intent", "Candidate", "RouteResult",
    "Check", "probe_http", "Counter", "Histogram", "Cache",
    "from_table", "ConfigError", "PROJECT_ROOT", "resolve_path", "SimilarityIndex", "noisy_or", "patched_model_file",
    "KEYWORD_BASE", "load_general_questions",
    "normalize_text", "symbol_word", "t2s_table",
    "Message", "Event", "TextMessage", "ImageMessage", "VoiceMessage", "VideoMessage",
    "ShortVideoMessage", "LocationMessage", "LinkMessage", "UnknownMessage", "SubscribeEvent",
    "UnsubscribeEvent", "ScanEvent", "LocationEvent", "ClickEvent", "ViewEvent",
    "TemplateSendJobFinishEvent", "MassSendJobFinishEvent", "UnknownEvent",
    "Reply", "TextReply", "ImageReply", "VoiceReply", "VideoReply", "MusicReply", "NewsReply",
    "Article", "SuccessReply", "StreamedReply", "reply_text",
]

"""Skillbot core: everything a plugin author imports comes from here.

    from core import hookimpl, Intent, TextReply
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
    SuccessReply,
    TextReply,
    VideoReply,
    VoiceReply,
    reply_text,
)
from .processing.context import MessageContext
from .processing.hookspecs import hookimpl
from .processing.intents import Candidate, Intent, RouteResult
from .state.conversation import Turn

__all__ = [
    "hookimpl", "MessageContext", "Turn", "Intent", "Candidate", "RouteResult",
    "Message", "Event", "TextMessage", "ImageMessage", "VoiceMessage", "VideoMessage",
    "ShortVideoMessage", "LocationMessage", "LinkMessage", "UnknownMessage", "SubscribeEvent",
    "UnsubscribeEvent", "ScanEvent", "LocationEvent", "ClickEvent", "ViewEvent",
    "TemplateSendJobFinishEvent", "MassSendJobFinishEvent", "UnknownEvent",
    "Reply", "TextReply", "ImageReply", "VoiceReply", "VideoReply", "MusicReply", "NewsReply",
    "Article", "SuccessReply", "reply_text",
]

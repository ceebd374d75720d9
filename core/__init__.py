"""Skillbot core: everything a plugin author imports comes from here.

    from core import hookimpl, Intent, TextReply
"""
from .context import MessageContext
from .conversation import Turn
from .hookspecs import hookimpl
from .intents import Candidate, Intent, RouteResult
from .messages import (
    ClickEvent, Event, ImageMessage, LinkMessage, LocationEvent, LocationMessage,
    MassSendJobFinishEvent, Message, ScanEvent, ShortVideoMessage, SubscribeEvent,
    TemplateSendJobFinishEvent, TextMessage, UnknownEvent, UnknownMessage, UnsubscribeEvent,
    VideoMessage, ViewEvent, VoiceMessage,
)
from .replies import (
    Article, ImageReply, MusicReply, NewsReply, Reply, SuccessReply, TextReply, VideoReply,
    VoiceReply, reply_text,
)

__all__ = [
    "hookimpl", "MessageContext", "Turn", "Intent", "Candidate", "RouteResult",
    "Message", "Event", "TextMessage", "ImageMessage", "VoiceMessage", "VideoMessage",
    "ShortVideoMessage", "LocationMessage", "LinkMessage", "UnknownMessage", "SubscribeEvent",
    "UnsubscribeEvent", "ScanEvent", "LocationEvent", "ClickEvent", "ViewEvent",
    "TemplateSendJobFinishEvent", "MassSendJobFinishEvent", "UnknownEvent",
    "Reply", "TextReply", "ImageReply", "VoiceReply", "VideoReply", "MusicReply", "NewsReply",
    "Article", "SuccessReply", "reply_text",
]

"""The per-message context every hook receives (message, id, tokens, route, timings), and the
explanation block a plugin adds to a message's explanation."""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..access.messages import Message
from ..state.conversation import Turn
from .intents import RouteResult

if TYPE_CHECKING:
    from .bot import Bot

log = logging.getLogger("skillbot.message")


def new_message_id() -> str:
    """A short id that ties a message's log lines together; not a secret, so it comes from the
    process's pseudo-random generator (reseeded in every forked worker), not a system call."""
    return f"{random.getrandbits(32):08x}"


@dataclass
class Explanation:
    """A plugin's block in a message's explanation, shown by ``run.py chat`` and the simulator.

    title: a short heading ("model", "filter"); summary: one line for the terminal; items: one
    line each, listed under the heading in the simulator (and by ``run.py chat --verbose``);
    data: plain JSON values (str, int, float, bool, lists and dicts of them) shown as JSON.
    The core renders every block alike and never reads what is inside.
    """

    title: str
    summary: str = ""
    items: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values only (the explanation is stored with the answer record, in Redis
        too): anything else a plugin put in ``data`` becomes its text."""
        return {"title": str(self.title), "summary": str(self.summary),
                "items": [str(item) for item in self.items], "data": _plain(self.data)}


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


@dataclass
class MessageContext:
    """Everything a plugin needs about the message being answered.

    bot: the running ``Bot`` (settings, HTTP session, stores, templates).
    message: the typed inbound message; ``message.text`` is what skills should read.
    id: a short id that appears in every log line about this message.
    tokens: jieba tokens of ``message.text``, computed once by the router and shared.
    route: the router's ``RouteResult`` (None for messages the router did not see).
    history: the user's recent turns, oldest first, loaded before the pipeline runs.
    slots: the user's skill memory (``await ctx.remember(place="北京")`` to update it).
    extra: free space for plugins to pass data along the pipeline (key it by your plugin's name).
    explanations: the plugins' ``Explanation`` blocks (plugin name, block), collected after the
        reply through ``skillbot_explain``.
    """

    bot: "Bot"
    message: Message
    id: str = field(default_factory=new_message_id)
    tokens: list[str] = field(default_factory=list)
    route: RouteResult | None = None
    history: list[Turn] = field(default_factory=list)
    slots: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    explanations: list[tuple[str, Explanation]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    #: The stage the pipeline is in ("inbound", "route", "skill"...), for logs.
    stage: str = ""

    @property
    def user(self) -> str:
        return self.message.from_user

    @property
    def log(self) -> logging.LoggerAdapter:
        return logging.LoggerAdapter(log, {"msg_id": self.id})

    async def remember(self, **values: Any) -> None:
        """Store skill memory for this user (e.g. the last place asked about)."""
        self.slots.update(values)
        await self.bot.conversations.update_slots(self.user, **values)

    def timed(self, stage: str) -> StageTimer:
        """``with ctx.timed("route"):`` adds the block's time to ``timings[stage]`` (ms)."""
        return StageTimer(self, stage)

    @property
    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000


class StageTimer:
    """The context manager ``MessageContext.timed`` returns (a class: a few of these run for
    every message, and a generator-based one costs several times as much)."""

    __slots__ = ("ctx", "stage", "start")

    def __init__(self, ctx: MessageContext, stage: str) -> None:
        self.ctx = ctx
        self.stage = stage
        self.start = 0.0

    def __enter__(self) -> None:
        self.start = time.perf_counter()
        self.ctx.stage = self.stage

    def __exit__(self, *_exc: object) -> None:
        timings = self.ctx.timings
        timings[self.stage] = timings.get(self.stage, 0.0) + (time.perf_counter() - self.start) * 1000

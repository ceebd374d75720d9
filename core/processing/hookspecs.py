"""The plugin contract: every hook a Skillbot plugin can implement, grouped by pipeline stage.

Async rule: any hook implementation may be ``async def``. The core never lets pluggy collect
coroutines; it walks the implementations itself in pluggy's order (``tryfirst`` first,
``trylast`` last, then the plugin ``priority`` from settings), awaits each result that is
awaitable, and applies the stop rule written on each hook. A failing or slow implementation is
logged and skipped: one plugin never breaks a reply.
"""
from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "skillbot"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---- set-up ------------------------------------------------------------------------------------

@hookspec
def skillbot_config_schema() -> type | None:
    """Return the dataclass that validates this plugin's ``[plugins.<name>]`` table.

    Called once per plugin while settings are loaded. Each field is a setting; its default is the
    default. Unknown keys and values of the wrong type stop start-up with the key named. A
    ``validate(self)`` method on the dataclass may raise ``ValueError`` for finer checks.
    """


@hookspec
def skillbot_startup(bot: Any, config: Any) -> None:
    """Prepare the plugin: open clients, load data, build indexes. May be async.

    ``config`` is this plugin's validated settings (an instance of its schema, or ``{}``).
    Called once per plugin instance at start-up. A settings reload builds fresh plugin instances:
    the new ones start with the new config before the old ones shut down, so keep state on
    ``self``, not in module globals. A plugin that raises here stops start-up (or rejects the
    reload) with its name in the message.
    """


@hookspec
def skillbot_shutdown(bot: Any) -> None:
    """Release what ``skillbot_startup`` opened. May be async. Every implementation is called."""


@hookspec
def skillbot_jieba_words() -> list:
    """Return words to add to jieba's dictionary at start-up so segmentation keeps them whole.

    Items are ``"word"`` or ``(word, freq, tag)`` tuples. Every implementation is called.
    """


@hookspec
def skillbot_intents() -> list:
    """Return the ``Intent`` objects this plugin's skills handle.

    Called at start-up (and after a settings reload); every implementation is called and the
    router scores all declared intents for each message.
    """


# ---- stage 1: inbound filter --------------------------------------------------------------------

@hookspec
def skillbot_inbound_filter(ctx: Any) -> Any:
    """Inspect (and possibly rewrite ``ctx.message.text``) before routing.

    Return a ``Reply`` to stop the message here (it never reaches skills or the fallback), or None
    to let it through. Stops at the first non-None result.
    """


# ---- stage 2-3: routing and skills ---------------------------------------------------------------

@hookspec
def skillbot_handle(ctx: Any, candidate: Any) -> Any:
    """Answer the message as the intent in ``candidate`` (a ``Candidate``: intent, score, slots).

    Called only on the plugin that declared ``candidate.intent``, for each router candidate above
    the threshold in rank order. Return a ``Reply`` to answer, or None to decline and let the next
    candidate (and finally the fallback) try. Stops at the first non-None result.
    """


# ---- stage 4: fallback ---------------------------------------------------------------------------

@hookspec
def skillbot_fallback(ctx: Any) -> Any:
    """Answer what no skill answered (the LLM lives here). Return a ``Reply`` or None.

    Stops at the first non-None result. When every fallback returns None the core answers text
    with the configured ``pipeline.no_answer_reply`` and events with ``success``.
    """


# ---- stage 5: outbound filter --------------------------------------------------------------------

@hookspec
def skillbot_outbound_filter(ctx: Any, reply: Any) -> Any:
    """Check a reply before it is sent. Return a replacement ``Reply``, or None to keep it.

    Every implementation is called in order; each sees the reply the previous one produced.
    """


# ---- after the reply -----------------------------------------------------------------------------

@hookspec
def skillbot_message_done(ctx: Any, reply: Any) -> None:
    """Observe a finished message (metrics, audit). Every implementation is called; results ignored."""


# ---- operations ----------------------------------------------------------------------------------

@hookspec
def skillbot_health(bot: Any, probe: bool) -> Any:
    """Report the services this plugin depends on (model providers, weather APIs...).

    Return a list of ``core.operations.health.Check`` (name, ok, detail), or None when there is nothing to
    report. ``probe=False`` is asked on every ``GET /readyz``: answer from what the plugin already
    knows (circuit breakers, the last error) without any I/O. ``probe=True`` is asked by
    ``run.py check``: reach each service now with a small request (``core.operations.health.probe_http``)
    and report what happened. Every implementation is called; one that raises or times out is
    reported as a failed check named after its plugin.
    """

"""The operator's services a plugin may use (``bot.operator``): the bot's status, a settings
reload now, the plugin list, and switching a plugin on or off in the settings file.

Built by the app (``create_app``), one per account: the default account's and each named
account's (``[accounts.<name>]``) bot has its own, bound to that account, handed from bot to bot
across reloads; a bot run without an app (tests, ``run.py check``) has none. Switching a plugin
rewrites only that account's list in the settings file (the default account's ``plugins.enabled``,
a named account's ``[accounts.<name>.plugins] enabled``, added when missing; comments and
everything else stay), then reloads (for a named account only that account is rebuilt); when the
new settings are refused, the file is put back as it was and the refusal is returned.
"""
from __future__ import annotations

import json
import os
import re
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..processing.plugin_manager import discover_plugins

if TYPE_CHECKING:
    from ..appkeys import Account, BotHolder
    from .metrics import Metrics
    from .reload import SettingsReloader


@dataclass
class PluginInfo:
    name: str
    enabled: bool
    #: Position in ``plugins.enabled`` (1 first), None when disabled.
    priority: int | None
    #: "folder", "entry point", "code" (given in code) or "missing".
    origin: str


@dataclass
class OperatorOutcome:
    """What a reload or a plugin switch did. ``outcome``: "applied", "unchanged", "rejected"
    (the settings were refused; nothing changed) or "refused" (not attempted: ``reason`` says why,
    one of "no_settings_file", "unknown_plugin", "already", "protected", "not_rewritable": the
    file gives the account's plugin list in a way that cannot be rewritten in place)."""

    outcome: str
    reason: str = ""
    changed: list[str] = field(default_factory=list)


@dataclass
class BotStatus:
    started_at: float
    uptime_seconds: float
    settings_file: str | None
    reload_generation: int
    last_reload_error: str | None
    plugins_enabled: list[str]
    mode: str
    delivery: str
    state_backend: str
    state_status: str
    messages: int


class OperatorDesk:
    """``OperatorServices`` for one account of an app: reads the account's running bot from its
    holder, reloads through the app's reloader. ``account`` is the named account's name, "" for
    the default account."""

    def __init__(self, bots: BotHolder, metrics: Metrics, reloader: SettingsReloader | None,
                 account: str = "") -> None:
        self.bots = bots
        self.metrics = metrics
        self.reloader = reloader
        self.account = account

    @classmethod
    def for_account(cls, account: Account, reloader: SettingsReloader | None) -> OperatorDesk | None:
        """The services of named account ``account`` (None when it has no bot)."""
        if account.gateway is None:
            return None
        return cls(account.gateway.bots, account.gateway.metrics, reloader, account.name)

    def _reload_state(self) -> tuple[int, str | None]:
        """(reload generation, last reload error) of this account."""
        if self.reloader is None:
            return 0, None
        if not self.account:
            return self.reloader.generation, self.reloader.last_error
        own = self.reloader.account_status.get(self.account)
        return (own.generation, own.last_error) if own is not None else (0, None)

    def status(self) -> BotStatus:
        bot = self.bots.bot
        settings = bot.settings
        generation, last_error = self._reload_state()
        return BotStatus(
            started_at=self.metrics.started, uptime_seconds=time.time() - self.metrics.started,
            settings_file=str(settings.source) if settings.source else None,
            reload_generation=generation, last_reload_error=last_error,
            plugins_enabled=list(settings.plugins.enabled), mode=settings.wechat.mode,
            delivery=settings.delivery.mode, state_backend=settings.state.backend,
            state_status=bot.state.status,
            messages=int(sum(self.metrics.outcomes.values.values())))

    def plugins(self) -> list[PluginInfo]:
        bot = self.bots.bot
        enabled = list(bot.settings.plugins.enabled)
        available = discover_plugins(bot.settings)
        rows = [PluginInfo(name, True, i + 1, available[name].origin if name in available else
                           "code" if name in bot.extra_plugins else "missing")
                for i, name in enumerate(enabled)]
        rows += [PluginInfo(name, False, None, source.origin)
                 for name, source in sorted(available.items()) if name not in enabled]
        return rows

    async def reload(self) -> OperatorOutcome:
        if self.reloader is None:
            return OperatorOutcome("refused", "no_settings_file")
        old = self.bots.bot
        return self._outcome(await self.reloader.reload_now(), old)

    def _outcome(self, result: Any, old: Any) -> OperatorOutcome:
        """What a reload (``ReloadResult``) did to this account; ``old``: its bot before."""
        if not self.account or result.outcome == "rejected":  # the file itself was refused
            return OperatorOutcome(result.outcome, result.reason, result.changed)
        outcome = result.accounts.get(self.account, "unchanged")
        if outcome == "rejected":
            own = self.reloader.account_status.get(self.account) if self.reloader else None
            return OperatorOutcome("rejected", own.last_error or "" if own else "")
        if outcome != "applied":  # "removed": the account is gone from the file
            return OperatorOutcome(outcome)
        from .reload import changed_keys

        new = self.bots.bot
        return OperatorOutcome("applied", changed=changed_keys(old.settings.raw, new.settings.raw))

    async def set_plugin_enabled(self, name: str, enabled: bool,
                                 protected: tuple[str, ...] = ()) -> OperatorOutcome:
        """Add ``name`` to the end of the account's ``plugins.enabled`` or take it out, in the
        settings file, and reload. ``protected`` plugins cannot be switched off (the caller's own,
        say). A named account's list is ``[accounts.<name>.plugins] enabled``, written whole (its
        running list, inherited or its own, with the change)."""
        if self.reloader is None:
            return OperatorOutcome("refused", "no_settings_file")
        settings = self.bots.bot.settings
        current = list(settings.plugins.enabled)
        if enabled == (name in current):
            return OperatorOutcome("refused", "already")
        if not enabled and name in protected:
            return OperatorOutcome("refused", "protected")
        if enabled and name not in discover_plugins(settings):
            return OperatorOutcome("refused", "unknown_plugin")
        wanted = current + [name] if enabled else [n for n in current if n != name]
        path = self.reloader.path
        before = path.read_text(encoding="utf-8")
        table = f"accounts.{self.account}.plugins" if self.account else "plugins"
        try:
            text = with_enabled_plugins(before, wanted, table)
        except ValueError:
            return OperatorOutcome("refused", "not_rewritable")
        old, seen = self.bots.bot, self.reloader.seen_raw
        write_atomically(path, text)
        outcome = self._outcome(await self.reloader.reload_now(), old)
        if outcome.outcome != "applied":
            write_atomically(path, before)
            self.reloader.note_file_running(seen)  # the running settings are the old ones: nothing to apply
        return outcome


def write_atomically(path: Path, text: str) -> None:
    """Replace the file in one step, so a reload never reads half of it."""
    temporary = path.with_name(f".{path.name}.skillbot-tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


_SECTION = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$", re.M)
_ENABLED = re.compile(r"^([ \t]*enabled[ \t]*=[ \t]*)\[[^\]]*\]", re.M)


def _table_name(header: str) -> str:
    """A table header's dotted name with the spaces around its dots taken out."""
    return ".".join(part.strip() for part in header.split("."))


def _lookup(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def with_enabled_plugins(text: str, names: list[str], table: str = "plugins") -> str:
    """``text`` (a settings file) with ``<table>.enabled`` set to ``names`` (``table``:
    "plugins", or "accounts.<name>.plugins" for a named account); the table is added at the end
    when the file has no ``[<table>]``; the rest of the file, comments included, unchanged.
    Checked by reading the result back: ``ValueError`` when it could not be written so (the
    table given another way, as ``plugins = {...}`` inside its parent, say)."""
    value = json.dumps(names, ensure_ascii=False)
    sections = list(_SECTION.finditer(text))
    start = next((m for m in sections if _table_name(m.group(1)) == table), None)
    if start is None:
        result = text.rstrip("\n") + f"\n\n[{table}]\nenabled = {value}\n"
    else:
        end = next((m.start() for m in sections if m.start() > start.start()), len(text))
        body = text[start.end():end]
        found = _ENABLED.search(body)
        if found:
            body = body[:found.start()] + found.group(1) + value + body[found.end():]
        else:
            body = f"\nenabled = {value}" + body
        result = text[:start.end()] + body + text[end:]
    try:
        written = _lookup(tomllib.loads(result), f"{table}.enabled")
    except tomllib.TOMLDecodeError:
        written = None
    if written != names:
        raise ValueError(f"{table}.enabled could not be rewritten in the settings file")
    return result


def status_fields(status: BotStatus) -> dict[str, Any]:
    """The status as plain values (for templates and audit lines)."""
    return dict(vars(status))

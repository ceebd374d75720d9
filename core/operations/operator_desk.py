"""The operator's services a plugin may use (``bot.operator``): the bot's status, a settings
reload now, the plugin list, and switching a plugin on or off in the settings file.

Built by the app (``create_app``) and handed from bot to bot across reloads; a bot run without an
app (tests, ``run.py check``) has none. Switching a plugin rewrites only ``plugins.enabled`` in
the settings file (comments and everything else stay), then reloads; when the new settings are
refused, the file is put back as it was and the refusal is returned.
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
    from ..appkeys import BotHolder
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
    one of "no_settings_file", "unknown_plugin", "already", "protected")."""

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
    """``OperatorServices`` for one app: reads the running bot from the holder, reloads through
    the app's reloader."""

    def __init__(self, bots: BotHolder, metrics: Metrics, reloader: SettingsReloader | None) -> None:
        self.bots = bots
        self.metrics = metrics
        self.reloader = reloader

    def status(self) -> BotStatus:
        bot = self.bots.bot
        settings = bot.settings
        return BotStatus(
            started_at=self.metrics.started, uptime_seconds=time.time() - self.metrics.started,
            settings_file=str(settings.source) if settings.source else None,
            reload_generation=self.reloader.generation if self.reloader else 0,
            last_reload_error=self.reloader.last_error if self.reloader else None,
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
        result = await self.reloader.reload_now()
        return OperatorOutcome(result.outcome, result.reason, result.changed)

    async def set_plugin_enabled(self, name: str, enabled: bool,
                                 protected: tuple[str, ...] = ()) -> OperatorOutcome:
        """Add ``name`` to the end of ``plugins.enabled`` or take it out, in the settings file,
        and reload. ``protected`` plugins cannot be switched off (the caller's own, say)."""
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
        write_atomically(path, with_enabled_plugins(before, wanted))
        result = await self.reloader.reload_now()
        if result.outcome != "applied":
            write_atomically(path, before)
            self.reloader.note_file_running()  # the running settings are the old ones: nothing to apply
        return OperatorOutcome(result.outcome, result.reason, result.changed)


def write_atomically(path: Path, text: str) -> None:
    """Replace the file in one step, so a reload never reads half of it."""
    temporary = path.with_name(f".{path.name}.skillbot-tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


_SECTION = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$", re.M)
_ENABLED = re.compile(r"^([ \t]*enabled[ \t]*=[ \t]*)\[[^\]]*\]", re.M)


def with_enabled_plugins(text: str, names: list[str]) -> str:
    """``text`` (a settings file) with ``plugins.enabled`` set to ``names``; the rest of the file,
    comments included, unchanged. Checked by reading the result back."""
    value = json.dumps(names, ensure_ascii=False)
    sections = list(_SECTION.finditer(text))
    start = next((m for m in sections if m.group(1).strip() == "plugins"), None)
    if start is None:
        result = text.rstrip("\n") + f"\n\n[plugins]\nenabled = {value}\n"
    else:
        end = next((m.start() for m in sections if m.start() > start.start()), len(text))
        body = text[start.end():end]
        found = _ENABLED.search(body)
        if found:
            body = body[:found.start()] + found.group(1) + value + body[found.end():]
        else:
            body = f"\nenabled = {value}" + body
        result = text[:start.end()] + body + text[end:]
    if tomllib.loads(result).get("plugins", {}).get("enabled") != names:
        raise ValueError("plugins.enabled could not be rewritten in the settings file")
    return result


def status_fields(status: BotStatus) -> dict[str, Any]:
    """The status as plain values (for templates and audit lines)."""
    return dict(vars(status))

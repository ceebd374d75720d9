"""``run.py`` sub-commands that plugins bring, found the way plugin folders are found.

A plugin folder under the project's ``plugins/`` may hold ``commands.py`` with
``COMMAND = PluginCommand(...)``. The core adds it to ``run.py``'s sub-commands; when it runs,
the core loads the settings, starts a bot (so the command sees the plugins, stores, segmenter and
embedding model the webhook would) and hands that bot to ``run``. Nothing here names a plugin.
"""
from __future__ import annotations

import argparse
import importlib
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from ..settings import PROJECT_ROOT

log = logging.getLogger("skillbot.cli")


@dataclass(frozen=True)
class PluginCommand:
    """A ``run.py NAME ...`` sub-command of a plugin: ``add_arguments(parser)`` declares its
    arguments; ``await run(bot, args)`` does the work on a started bot and returns the exit code."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Any, argparse.Namespace], Awaitable[int]]


def find_plugin_commands() -> dict[str, tuple[str, PluginCommand]]:
    """Every plugin folder's ``COMMAND``, by command name: (plugin name, command)."""
    found: dict[str, tuple[str, PluginCommand]] = {}
    base = PROJECT_ROOT / "plugins"
    if not base.is_dir():
        return found
    for folder in sorted(base.iterdir()):
        if not (folder / "commands.py").is_file() or folder.name.startswith(("_", ".")):
            continue
        try:
            module = importlib.import_module(f"plugins.{folder.name}.commands")
        except Exception as exc:  # a broken plugin must not take the other commands down
            log.warning("plugin %s: its commands.py cannot be imported (%s)", folder.name, type(exc).__name__)
            continue
        command = getattr(module, "COMMAND", None)
        if isinstance(command, PluginCommand) and command.name not in found:
            found[command.name] = (folder.name, command)
    return found

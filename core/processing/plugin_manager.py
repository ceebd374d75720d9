"""Finding, loading and calling plugins: folders under plugins/ and the ``skillbot.plugins`` entry points.

Built-in plugins take exactly the same path as third-party ones; nothing here names a plugin.
"""
from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import logging
import os
import reprlib
import sys
import threading
import time
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable

import pluggy

from ..settings import PROJECT_ROOT, Settings
from ..settings_schema import ConfigError, from_table
from . import hookspecs

log = logging.getLogger("skillbot.plugins")
ENTRY_POINT_GROUP = "skillbot.plugins"

#: Results in trace lines are shortened (a plugin may return thousands of jieba words).
_trace_repr = reprlib.Repr()
_trace_repr.maxstring = _trace_repr.maxother = 300
_trace_repr.maxlist = _trace_repr.maxdict = _trace_repr.maxtuple = 12


def tracing(settings: Settings) -> bool:
    """Log every hook call and its result: ``logging.trace_hooks`` or ``SKILLBOT_TRACE=1``."""
    return settings.logging.trace_hooks or os.environ.get("SKILLBOT_TRACE") == "1"


@dataclass
class PluginSource:
    name: str
    origin: str  # "folder" or "entry point"
    location: str
    load: Callable[[], Any]


#: One lock per folder plugin module: an import still running in a thread that a hot reload gave
#: up on must finish (or fail) before anyone else may see its module.
_folder_locks: dict[str, threading.Lock] = {}
_folder_locks_guard = threading.Lock()


def _load_folder(name: str, folder: Path) -> Callable[[], Any]:
    def load() -> Any:
        if folder.parent == PROJECT_ROOT / "plugins":
            return importlib.import_module(f"plugins.{name}")
        module_name = f"skillbot_plugin_{name}"
        with _folder_locks_guard:
            lock = _folder_locks.setdefault(module_name, threading.Lock())
        with lock:
            if module_name in sys.modules:
                return sys.modules[module_name]
            spec = importlib.util.spec_from_file_location(module_name, folder / "__init__.py",
                                                          submodule_search_locations=[str(folder)])
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot import plugin folder {folder}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                # As the import system does: a module that failed is forgotten, so the next load
                # runs it again (and fails again) instead of handing out the half-made module.
                for loaded in [m for m in sys.modules if m == module_name or m.startswith(module_name + ".")]:
                    del sys.modules[loaded]
                raise
            return module
    return load


def load_plugin(source: PluginSource) -> Any:
    """Import a plugin and instantiate it; any failure, ``sys.exit()`` included, is a ``ConfigError``.

    The reason names the plugin and gives the first line of the exception (plugin code raised it
    at import, before any setting reached the plugin); the traceback goes to the log.
    """
    try:
        return instantiate(source.load())
    except (Exception, SystemExit, KeyboardInterrupt) as exc:  # a plugin must not end the process
        log.error("plugin %s (%s) failed to load", source.name, source.location, exc_info=exc,
                  extra={"msg_id": "-"})
        detail = (str(exc).splitlines() or [""])[0][:200]
        raise ConfigError(f"plugins.{source.name}: failed to load: {type(exc).__name__}"
                          + (f": {detail}" if detail else "")) from None


def discover_plugins(settings: Settings) -> dict[str, PluginSource]:
    """Every plugin available: folders (project plugins/ then ``plugins.paths``) and entry points."""
    found: dict[str, PluginSource] = {}
    folders = [PROJECT_ROOT / "plugins"] + [settings.resolve_path(p) for p in settings.plugins.paths]
    for base in folders:
        if not base.is_dir():
            continue
        for folder in sorted(base.iterdir()):
            if (folder / "__init__.py").is_file() and not folder.name.startswith(("_", ".")):
                found.setdefault(folder.name, PluginSource(folder.name, "folder", str(folder),
                                                           _load_folder(folder.name, folder)))
    if settings.plugins.entry_points:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            found.setdefault(ep.name, PluginSource(ep.name, "entry point", ep.value, ep.load))
    return found


def instantiate(obj: Any) -> Any:
    """A plugin module with a ``Plugin`` class gets one instance per bot; a class is instantiated."""
    if inspect.isclass(obj):
        return obj()
    plugin_cls = getattr(obj, "Plugin", None)
    if inspect.isclass(plugin_cls):
        return plugin_cls()
    return obj


def create_plugin_manager(settings: Settings, extra: dict[str, Any] | None = None
                          ) -> tuple[pluggy.PluginManager, dict[str, PluginSource]]:
    """Register the enabled plugins (in settings order) plus ``extra`` {name: plugin object}.

    An unknown name stops start-up; discovered plugins that are not enabled are blocked.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    available = discover_plugins(settings)
    unknown = [f"plugins.enabled[{i}]: no plugin of that name (available: {', '.join(sorted(available)) or 'none'})"
               for i, name in enumerate(settings.plugins.enabled) if name not in available]
    if unknown:
        raise ConfigError(*unknown)
    for name in settings.plugins.enabled:
        pm.register(load_plugin(available[name]), name=name)
    for name, plugin in (extra or {}).items():
        pm.register(instantiate(plugin), name=name)
    for name in available:
        if name not in settings.plugins.enabled and not pm.has_plugin(name):
            pm.set_blocked(name)
    pm.check_pending()
    return pm, available


class HookCaller:
    """Walks hook implementations in a fixed order, awaiting async ones (see core/processing/hookspecs.py).

    Order: ``tryfirst`` implementations, then the rest, then ``trylast``; within each group the
    plugin order of ``plugins.enabled`` (extra plugins after). A failing or slow implementation is
    logged and treated as returning None.
    """

    def __init__(self, pm: pluggy.PluginManager, order: list[str], timeout: float,
                 trace: bool = False) -> None:
        self.pm = pm
        self.order = {name: i for i, name in enumerate(order)}
        self.timeout = timeout
        self.trace = trace
        self._cache: dict[str, list[Any]] = {}
        self.failures: dict[str, int] = {}

    def forget_implementations(self) -> None:
        """Drop the ordered implementation lists (after a plugin was unregistered)."""
        self._cache.clear()

    def impls(self, hook_name: str, plugin: str | None = None) -> list[Any]:
        if hook_name not in self._cache:
            hook = getattr(self.pm.hook, hook_name)
            calls = list(reversed(hook.get_hookimpls()))
            group = lambda impl: 0 if impl.tryfirst else 2 if impl.trylast else 1  # noqa: E731
            calls.sort(key=lambda impl: (group(impl), self.order.get(impl.plugin_name, len(self.order))))
            self._cache[hook_name] = calls
        impls = self._cache[hook_name]
        return [i for i in impls if i.plugin_name == plugin] if plugin is not None else impls

    async def call_one(self, impl: Any, hook_name: str, kwargs: dict[str, Any],
                       timeout: float | None = None, log_extra: dict | None = None) -> tuple[bool, Any]:
        """Call one implementation; returns (ok, result)."""
        logger = logging.LoggerAdapter(log, log_extra or {"msg_id": "-"})
        start = time.perf_counter()
        try:
            result = impl.function(*[kwargs[arg] for arg in impl.argnames])
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, timeout if timeout is not None else self.timeout)
        except asyncio.TimeoutError:
            self.failures[impl.plugin_name] = self.failures.get(impl.plugin_name, 0) + 1
            logger.warning("plugin %s: %s exceeded its %.1fs budget; skipped",
                           impl.plugin_name, hook_name, timeout if timeout is not None else self.timeout)
            if self.trace:
                logger.info("trace %s.%s -> timed out", impl.plugin_name, hook_name)
            return False, None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failures[impl.plugin_name] = self.failures.get(impl.plugin_name, 0) + 1
            if hook_name == "skillbot_startup":
                # Start-up fails mostly on what settings point at (a missing file, a bad URL): one
                # line for the operator; the traceback for the plugin's author at DEBUG level.
                first = (str(exc).splitlines() or [""])[0]
                logger.error("plugin %s failed to start: %s%s", impl.plugin_name, type(exc).__name__,
                             f": {first}" if first else "")
                logger.debug("plugin %s: skillbot_startup raised", impl.plugin_name, exc_info=exc)
            else:
                logger.exception("plugin %s: %s raised; skipped", impl.plugin_name, hook_name)
            if self.trace:
                logger.info("trace %s.%s -> raised %s", impl.plugin_name, hook_name, type(exc).__name__)
            return False, None
        if self.trace:
            logger.info("trace %s.%s -> %s (%.2f ms)", impl.plugin_name, hook_name,
                        _trace_repr.repr(result), (time.perf_counter() - start) * 1000)
        return True, result

    async def first_result(self, hook_name: str, kwargs: dict[str, Any], plugin: str | None = None,
                           log_extra: dict | None = None, timeout: float | None = None
                           ) -> tuple[Any, str | None]:
        """Stops at the first non-None result; returns (result, plugin name)."""
        for impl in self.impls(hook_name, plugin):
            ok, result = await self.call_one(impl, hook_name, kwargs, timeout, log_extra)
            if ok and result is not None:
                return result, impl.plugin_name
        return None, None

    async def each(self, hook_name: str, kwargs: dict[str, Any], timeout: float | None = None,
                   log_extra: dict | None = None) -> list[tuple[str, Any]]:
        """Calls every implementation; returns [(plugin name, result)] of those that succeeded."""
        results = []
        for impl in self.impls(hook_name):
            ok, result = await self.call_one(impl, hook_name, kwargs, timeout, log_extra)
            if ok:
                results.append((impl.plugin_name, result))
        return results


def plugin_configs(pm: pluggy.PluginManager, settings: Settings,
                   available: dict[str, PluginSource]) -> dict[str, Any]:
    """Validate each registered plugin's ``[plugins.<name>]`` table with the schema it declares.

    A table for a plugin that exists but is disabled is validated too (the plugin is imported to
    read its schema, not registered), so enabling it later cannot fail on a table that was already
    there; a table for a plugin that does not exist at all (a typo) stops start-up. Every table's
    problems are reported together.
    """
    names = [name for name, plugin in pm.list_name_plugin() if plugin is not None]
    errors = [f"plugins.{name}: no plugin of that name (available: {', '.join(sorted(available))})"
              for name in settings.plugin_tables if name not in available and name not in names]
    schemas: dict[str, type] = {}
    trace = tracing(settings)
    for impl in pm.hook.skillbot_config_schema.get_hookimpls():
        schema = impl.function()
        if trace:
            log.info("trace %s.skillbot_config_schema -> %s", impl.plugin_name, _trace_repr.repr(schema),
                     extra={"msg_id": "-"})
        if schema is not None:
            schemas[impl.plugin_name] = schema
    configs: dict[str, Any] = {}
    for name in names:
        table = settings.plugin_tables.get(name)
        try:
            configs[name] = _validate_table(name, schemas.get(name), table)
        except ConfigError as exc:
            errors.extend(exc.errors)
    for name, table in settings.plugin_tables.items():
        if name in available and name not in names:  # disabled, but its table must be right
            try:
                _validate_table(name, _declared_schema(load_plugin(available[name])), table)
            except ConfigError as exc:
                errors.extend(exc.errors)
    if errors:
        raise ConfigError(*errors)
    return configs


def _validate_table(name: str, schema: type | None, table: dict[str, Any] | None) -> Any:
    if schema is None:
        if table:
            raise ConfigError(f"plugins.{name}: this plugin takes no settings")
        return {}
    return from_table(schema, table, f"plugins.{name}")


def _declared_schema(plugin: Any) -> type | None:
    """The schema a plugin object declares, read without registering it."""
    declare = getattr(plugin, "skillbot_config_schema", None)
    return declare() if callable(declare) else None

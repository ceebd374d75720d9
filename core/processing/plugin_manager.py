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
import types
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

import pluggy

from ..coroutines import bounded
from ..settings import PROJECT_ROOT, Settings
from ..settings_schema import ConfigError, from_table
from . import hookspecs

if TYPE_CHECKING:
    from ..access.replies import Reply
    from .context import Explanation, MessageContext
    from .intents import Candidate, Intent

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
    try:
        call_registration_hook(pm, "skillbot_add_hookspecs", {"pm": pm}, tracing(settings))
    except Exception as exc:
        log.error("adding a plugin's hookspecs failed", exc_info=exc, extra={"msg_id": "-"})
        raise ConfigError(f"plugins: skillbot_add_hookspecs failed: {type(exc).__name__}: {exc}") from None
    pm.check_pending()
    return pm, available


#: Seconds each plugin may take to start, and to shut down.
STARTUP_TIMEOUT = 60.0
SHUTDOWN_TIMEOUT = 10.0
#: Seconds beyond its own timeout that a skillbot_ask_model implementation is given before it is cut off.
ASK_MODEL_MARGIN = 1.0


@dataclass
class HookResult:
    """One implementation's answer: ``ok`` is False when it raised or ran out of time."""

    plugin: str
    ok: bool
    value: Any


def call_registration_hook(pm: pluggy.PluginManager, hook_name: str, kwargs: dict[str, Any],
                           trace: bool = False) -> list[HookResult]:
    """Call a synchronous registration hook (``skillbot_config_schema``, ``skillbot_add_hookspecs``)
    on every plugin, before any bot runs. These run while settings are checked and the plugin
    manager is built: an error is the operator's to see at once, so it is not swallowed."""
    results = []
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        value = impl.function(*[kwargs[arg] for arg in impl.argnames])
        if trace:
            log.info("trace %s.%s -> %s", impl.plugin_name, hook_name, _trace_repr.repr(value),
                     extra={"msg_id": "-"})
        results.append(HookResult(impl.plugin_name, True, value))
    return results


def _log_extra(ctx: Any) -> dict[str, str]:
    return {"msg_id": ctx.id}


class HookCaller:
    """The one way the core calls hooks: a typed method per hook of core/processing/hookspecs.py.

    Every method walks the implementations in a fixed order, awaiting async ones: ``tryfirst``
    implementations, then the rest, then ``trylast``; within each group the plugin order of
    ``plugins.enabled`` (extra plugins after). The stop rule comes from the spec
    (``firstresult=True``: stop at the first non-None result). A failing or slow implementation is
    logged, counted in ``failures`` and treated as returning None. Hooks that plugins add
    (``skillbot_add_hookspecs``) are called through ``call``.
    """

    def __init__(self, pm: pluggy.PluginManager, order: list[str], timeout: float,
                 trace: bool = False, fallback_timeout: float | None = None) -> None:
        self.pm = pm
        self.order = {name: i for i, name in enumerate(order)}
        self.timeout = timeout
        self.fallback_timeout = fallback_timeout if fallback_timeout is not None else timeout
        self.trace = trace
        self._cache: dict[str, list[Any]] = {}
        self._firstresult: dict[str, bool] = {}
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

    def stops_at_first(self, hook_name: str) -> bool:
        """The spec's stop rule: ``@hookspec(firstresult=True)``."""
        first = self._firstresult.get(hook_name)
        if first is None:
            spec = getattr(self.pm.hook, hook_name).spec
            first = self._firstresult[hook_name] = bool(spec is not None and spec.opts.get("firstresult"))
        return first

    async def call_one(self, impl: Any, hook_name: str, kwargs: dict[str, Any],
                       timeout: float | None = None, log_extra: dict | None = None) -> tuple[bool, Any]:
        """Call one implementation; returns (ok, result)."""
        start = time.perf_counter()
        try:
            result = impl.function(*[kwargs[arg] for arg in impl.argnames])
            if result is not None and (type(result) is types.CoroutineType or inspect.isawaitable(result)):
                # In this task, under a deadline: no task of its own per call (asyncio.wait_for
                # makes one in Python 3.11), and a timeout still cancels the implementation.
                result = await bounded(result, timeout if timeout is not None else self.timeout)
        except asyncio.TimeoutError:
            logger = logging.LoggerAdapter(log, log_extra or {"msg_id": "-"})
            self.failures[impl.plugin_name] = self.failures.get(impl.plugin_name, 0) + 1
            logger.warning("plugin %s: %s exceeded its %.1fs budget; skipped",
                           impl.plugin_name, hook_name, timeout if timeout is not None else self.timeout)
            if self.trace:
                logger.info("trace %s.%s -> timed out", impl.plugin_name, hook_name)
            return False, None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger = logging.LoggerAdapter(log, log_extra or {"msg_id": "-"})
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
            log.info("trace %s.%s -> %s (%.2f ms)", impl.plugin_name, hook_name,
                     _trace_repr.repr(result), (time.perf_counter() - start) * 1000,
                     extra=log_extra or {"msg_id": "-"})
        return True, result

    async def call(self, hook_name: str, kwargs: dict[str, Any], *, plugin: str | None = None,
                   timeout: float | None = None, log_extra: dict | None = None) -> list[HookResult]:
        """Walk ``hook_name``'s implementations (only ``plugin``'s when given) with the spec's
        stop rule. A first-result hook yields at most one result with a value that is not None
        (the last of the list); every other hook yields one result per implementation."""
        first = self.stops_at_first(hook_name)
        results = []
        for impl in self.impls(hook_name, plugin):
            ok, value = await self.call_one(impl, hook_name, kwargs, timeout, log_extra)
            results.append(HookResult(impl.plugin_name, ok, value))
            if first and ok and value is not None:
                break
        return results

    async def _first(self, hook_name: str, kwargs: dict[str, Any], **options: Any
                     ) -> tuple[Any, str | None]:
        results = await self.call(hook_name, kwargs, **options)
        last = results[-1] if results else None
        if last is not None and last.ok and last.value is not None:
            return last.value, last.plugin
        return None, None

    async def _values(self, hook_name: str, kwargs: dict[str, Any], **options: Any
                      ) -> list[tuple[str, Any]]:
        return [(r.plugin, r.value) for r in await self.call(hook_name, kwargs, **options) if r.ok]

    # ---- set-up ------------------------------------------------------------------------------

    async def startup(self, bot: Any, configs: dict[str, Any]) -> None:
        """``skillbot_startup`` with each plugin's own config; raises when one fails."""
        for impl in self.impls("skillbot_startup"):
            ok, _ = await self.call_one(impl, "skillbot_startup",
                                        {"bot": bot, "config": configs.get(impl.plugin_name)},
                                        timeout=STARTUP_TIMEOUT)
            if not ok:
                raise RuntimeError(f"plugin {impl.plugin_name} failed to start (see the log above)")

    async def shutdown(self, bot: Any) -> None:
        await self.call("skillbot_shutdown", {"bot": bot}, timeout=SHUTDOWN_TIMEOUT)

    async def jieba_words(self) -> list[Any]:
        return [word for _plugin, words in await self._values("skillbot_jieba_words", {})
                for word in (words or [])]

    async def intents(self) -> list[Intent]:
        """Every declared intent, with ``intent.plugin`` set to the plugin that declared it."""
        intents = []
        for plugin, declared in await self._values("skillbot_intents", {}):
            for intent in declared or []:
                intent.plugin = plugin
                intents.append(intent)
        return intents

    async def metrics(self) -> list[Any]:
        """The metric families every plugin keeps; anything that cannot be rendered is left out."""
        kept = []
        for plugin, families in await self._values("skillbot_metrics", {}):
            for family in families or []:
                if all(hasattr(family, a) for a in ("name", "help", "kind", "samples")):
                    kept.append(family)
                else:
                    log.warning("plugin %s: skillbot_metrics returned %s, not a metric family (core.Counter, "
                                "core.Histogram); left out", plugin, type(family).__name__, extra={"msg_id": "-"})
        return kept

    # ---- the pipeline ------------------------------------------------------------------------

    async def inbound_filter(self, ctx: MessageContext) -> tuple[Reply | None, str | None]:
        """(the reply that stops the message, its plugin), or (None, None)."""
        return await self._first("skillbot_inbound_filter", {"ctx": ctx}, log_extra=_log_extra(ctx))

    async def handle(self, ctx: MessageContext, candidate: Candidate) -> tuple[Reply | None, str | None]:
        """Asks only the plugin that declared ``candidate.intent``."""
        return await self._first("skillbot_handle", {"ctx": ctx, "candidate": candidate},
                                 plugin=candidate.intent.plugin, log_extra=_log_extra(ctx))

    async def fallback(self, ctx: MessageContext) -> tuple[Reply | None, str | None]:
        return await self._first("skillbot_fallback", {"ctx": ctx}, timeout=self.fallback_timeout,
                                 log_extra=_log_extra(ctx))

    async def ask_model(self, messages: list[dict[str, Any]], timeout: float) -> str | None:
        """The configured model's answer to ``messages`` within ``timeout`` seconds, or None."""
        # the implementation bounds itself by ``timeout``; the margin lets it fail cleanly first
        answer, _ = await self._first("skillbot_ask_model", {"messages": messages, "timeout": timeout},
                                      timeout=timeout + ASK_MODEL_MARGIN)
        return answer if isinstance(answer, str) else None

    async def stream_model(self, messages: list[dict[str, Any]], timeout: float) -> AsyncIterator[str] | None:
        """The configured model's answer to ``messages`` as it is written (plain-text pieces), or
        None without a model. The iterator ends early, logged, when the implementation raises or
        gives no first piece within ``timeout`` seconds (plus a margin); closing it stops the request."""
        pieces, plugin = await self._first("skillbot_stream_model", {"messages": messages, "timeout": timeout})
        if pieces is None or not hasattr(pieces, "__anext__"):
            if pieces is not None:
                log.warning("plugin %s: skillbot_stream_model returned %s, not an async iterator; ignored",
                            plugin, type(pieces).__name__, extra={"msg_id": "-"})
            return None
        return _guarded_stream(pieces, str(plugin), timeout + ASK_MODEL_MARGIN)

    async def outbound_filter(self, ctx: MessageContext, reply: Reply) -> Reply:
        """The reply after every outbound filter; each sees the reply the previous one produced."""
        for impl in self.impls("skillbot_outbound_filter"):
            ok, replaced = await self.call_one(impl, "skillbot_outbound_filter",
                                               {"ctx": ctx, "reply": reply}, log_extra=_log_extra(ctx))
            if ok and replaced is not None:
                replaced.plugin = replaced.plugin or reply.plugin
                replaced.intent = replaced.intent or reply.intent
                reply = replaced
        return reply

    async def message_done(self, ctx: MessageContext, reply: Reply) -> None:
        await self.call("skillbot_message_done", {"ctx": ctx, "reply": reply}, log_extra=_log_extra(ctx))

    async def explain(self, ctx: MessageContext) -> list[tuple[str, Explanation]]:
        """(plugin, block) for every plugin that explained something about this message."""
        from .context import Explanation

        blocks = []
        for plugin, block in await self._values("skillbot_explain", {"ctx": ctx}, log_extra=_log_extra(ctx)):
            if isinstance(block, Explanation):
                blocks.append((plugin, block))
            elif block is not None:
                ctx.log.warning("plugin %s: skillbot_explain returned %s, not an Explanation; left out",
                                plugin, type(block).__name__)
        return blocks

    # ---- operations --------------------------------------------------------------------------

    async def health(self, bot: Any, probe: bool, timeout: float) -> list[HookResult]:
        return await self.call("skillbot_health", {"bot": bot, "probe": probe}, timeout=timeout)


async def _guarded_stream(pieces: AsyncIterator[Any], plugin: str, first_within: float) -> AsyncIterator[str]:
    """``pieces`` from a ``skillbot_stream_model`` implementation, kept to the contract: text only;
    the first piece within ``first_within`` seconds; an implementation that raises ends the
    answer (logged) instead of breaking the reply that carries it."""
    said = False
    try:
        while True:
            try:
                if said:
                    piece = await anext(pieces)
                else:  # bounded around the await only: a timeout never spans a yield
                    async with asyncio.timeout(first_within):
                        piece = await anext(pieces)
            except StopAsyncIteration:
                return
            except TimeoutError:
                log.warning("plugin %s: skillbot_stream_model gave no text within %.1fs; ended",
                            plugin, first_within, extra={"msg_id": "-"})
                return
            except Exception:
                log.exception("plugin %s: skillbot_stream_model raised; the answer ends here", plugin,
                              extra={"msg_id": "-"})
                return
            if isinstance(piece, str) and piece:
                said = True
                yield piece
    finally:
        aclose = getattr(pieces, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:
                log.exception("plugin %s: closing a skillbot_stream_model answer failed", plugin,
                              extra={"msg_id": "-"})


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
    schemas = {result.plugin: result.value for result in
               call_registration_hook(pm, "skillbot_config_schema", {}, tracing(settings))
               if result.value is not None}
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

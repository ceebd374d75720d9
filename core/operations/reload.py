"""Hot settings: a changed ``settings.toml`` takes effect without a restart, after validation.

Every ``server.reload_interval`` seconds the settings file is read and compared with what is
running (by content, so touching it does nothing). A change is applied like a fresh start: the
whole file is loaded and validated, a new ``Bot`` is built from it (plugins discovered, each
plugin's table checked by its schema) and started (every plugin's ``skillbot_startup``), and only
then swapped in; the old bot finishes the messages it is answering and is stopped. If any of
that fails, the running bot stays, the reason is logged and shown on ``/healthz``.

The new bot shares the old one's state (conversations, answer records, rate limits, Redis
connection), so users notice nothing. Settings that are wired into that state or into the
listening socket cannot change this way (``RESTART_ONLY``): they keep their running values and
the log says that they need a restart. Plugin *code* is not reloaded either.

Plugins are imported and their tables validated in a thread, within ``server.reload_import_timeout``
seconds, so a slow import never stalls the event loop and a hung one rejects the new set. A plugin
that fails to import (``sys.exit()`` at import included) rejects the set, and so does every later
edit until it is fixed: each reload loads and validates the whole file, never a difference.

With several accounts (``[accounts.<name>]``) each is rebuilt on its own: only the accounts whose
settings changed (all of them after a change of the top-level tables they inherit, or an edit
that changed no setting); an account whose new settings fail keeps its running bot while the
others take theirs; accounts added to the file are served from then on, removed ones retired.
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from aiohttp import web

from ..access.webhook import Gateway
from ..appkeys import ACCOUNTS_KEY, BOTS_KEY, GATEWAY_KEY, METRICS_KEY, Account, Accounts
from ..processing.bot import Bot
from ..settings import Settings, account_path, account_settings, in_account, load_settings
from ..settings_schema import ConfigError

log = logging.getLogger("skillbot.reload")

#: Settings that keep their running value until a restart: section -> keys (None: all of them).
RESTART_ONLY: dict[str, tuple[str, ...] | None] = {
    "server": ("host", "port", "path", "event_loop"),
    "wechat": None,
    "delivery": None,
    "state": None,
    "conversation": None,
    "ratelimit": ("rate", "burst"),
}


@dataclass
class ReloadResult:
    outcome: str  # "unchanged", "applied" or "rejected"
    reason: str = ""
    changed: list[str] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)
    #: Named accounts this reload touched: name -> "applied", "rejected" or "removed".
    accounts: dict[str, str] = field(default_factory=dict)


def hold_restart_only(running: Settings, new: Settings) -> list[str]:
    """Put the running values of ``RESTART_ONLY`` settings into ``new``; returns those that differed."""
    held = []
    for section, keys in RESTART_ONLY.items():
        old_part, new_part = getattr(running, section), getattr(new, section)
        names = keys or tuple(f.name for f in dataclasses.fields(old_part))
        for name in names:
            if getattr(old_part, name) != getattr(new_part, name):
                held.append(f"{section}.{name}")
                setattr(new_part, name, getattr(old_part, name))
    return held


def changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "", depth: int = 2) -> list[str]:
    """Dotted names of the tables/keys that differ, down to ``depth`` levels (for the log)."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        name = f"{prefix}{key}"
        if depth > 1 and isinstance(a, dict) and isinstance(b, dict):
            changed.extend(changed_keys(a, b, name + ".", depth - 1))
        else:
            changed.append(name)
    return changed


class SettingsReloader:
    """Watches one settings file for one application. ``await check()`` is the whole job."""

    def __init__(self, app: web.Application, path: Path) -> None:
        self.app = app
        self.path = Path(path)
        self.digest = self._digest()
        self.generation = 0
        self.last_applied: float | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.restart_needed: list[str] = []
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._retiring: set[asyncio.Task] = set()
        #: The settings last read from the file (applied or not): what the next change is to.
        self.seen_raw: dict[str, Any] = self.bot.settings.raw
        self.account_status: dict[str, AccountReloadStatus] = {}

    @property
    def accounts(self) -> Accounts:
        return self.app[ACCOUNTS_KEY]

    # ---- watching ---------------------------------------------------------------------------

    def _digest(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    @property
    def bot(self) -> Bot:
        return self.app[BOTS_KEY].bot

    def start(self) -> None:
        if self.bot.settings.server.reload_interval > 0 and self._task is None:
            self._task = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while True:
            interval = self.bot.settings.server.reload_interval
            if interval <= 0:
                log.info("settings reload turned off (server.reload_interval = 0)")
                return
            await asyncio.sleep(interval)
            try:
                await self.check()
            except Exception:  # the watcher must outlive any surprise
                log.exception("checking %s for changes failed", self.path)

    async def check(self) -> ReloadResult:
        """Apply the file if its content changed since the last look."""
        digest = self._digest()
        if digest is None:
            if self.digest is not None:
                self.digest = None
                return self._reject(f"settings file {self.path} cannot be read")
            return ReloadResult("unchanged")
        if digest == self.digest:
            return ReloadResult("unchanged")
        self.digest = digest  # a bad file is reported once, not every interval
        return await self.apply()

    async def reload_now(self) -> ReloadResult:
        """Apply the file as it is now, changed or not (the operator asked; ``bot.operator``)."""
        self.digest = self._digest()
        return await self.apply()

    def note_file_running(self, seen_raw: dict[str, Any] | None = None) -> None:
        """The file as it is now is what runs (put back after a refused change): no reload for it.
        ``seen_raw``: the settings read from it before that change (``seen_raw`` then), so the
        next change is compared with them, not with the refused ones."""
        self.digest = self._digest()
        if seen_raw is not None:
            self.seen_raw = seen_raw

    # ---- applying ---------------------------------------------------------------------------

    async def apply(self) -> ReloadResult:
        """Load and validate the file; rebuild the accounts whose settings changed (all of them
        when no setting changed: an edit is how an operator asks for a reload). Each account is
        swapped in or keeps its old bot on its own; the result is the default account's."""
        async with self._lock:
            running = self.bot.settings
            try:
                settings = load_settings(self.path, running.overrides)
                if running.account:  # an application serving one account alone (run.py chat --account)
                    settings = account_settings(settings, running.account)
            except ConfigError as exc:
                return self._reject("; ".join(exc.errors))
            before, self.seen_raw = self.seen_raw, settings.raw
            base_changed = _inherited(before) != _inherited(settings.raw)
            old_tables, new_tables = before.get("accounts", {}), settings.accounts
            touched = {name for name in set(old_tables) | set(new_tables)
                       if base_changed or old_tables.get(name) != new_tables.get(name)}
            everything = not base_changed and not touched
            if everything:
                touched = set(new_tables) | set(self.accounts.named)
            outcomes = {name: await self._apply_account(settings, name) for name in sorted(touched)}
            if base_changed or everything:
                result = await self._apply_default(settings)
            else:
                result = ReloadResult("unchanged")
            result.accounts = outcomes
            return result

    async def _apply_default(self, settings: Settings) -> ReloadResult:
        old = self.bot
        new, reason, held = await self._replace_bot(self.app[GATEWAY_KEY], settings)
        if new is None:
            return self._reject(reason)
        changed = changed_keys(_inherited(old.settings.raw), _inherited(settings.raw))
        self.generation += 1
        self.last_applied = time.time()
        self.last_error = None
        self.restart_needed = held
        self.app[METRICS_KEY].reloads.inc("applied")
        log.info("settings reloaded from %s (changed: %s); plugins: %s", self.path.name,
                 ", ".join(changed) or "nothing that matters", ", ".join(settings.plugins.enabled))
        if held:
            log.warning("settings changed that need a restart to take effect (still running "
                        "with the old values): %s", ", ".join(held))
        return ReloadResult("applied", changed=changed, restart_needed=held)

    async def _apply_account(self, settings: Settings, name: str) -> str:
        """Rebuild, add or remove account ``name``; returns "applied", "rejected" or "removed".
        A rejected account keeps its running bot (or stays not served if it had none)."""
        from ..app import build_account, start_account, stop_account

        status = self.account_status.setdefault(name, AccountReloadStatus())
        account = self.accounts.named.get(name)
        if name not in settings.accounts:
            if account is not None:
                del self.accounts.named[name]
                self.account_status.pop(name, None)
                self._keep_task(stop_account(account))
                log.info("account %s removed from the settings: no longer served", name)
            return "removed"
        if account is None or not account.served:  # new, or not served so far: built afresh
            try:
                fresh = await asyncio.wait_for(run_in_daemon_thread(build_account, settings, name),
                                               settings.server.reload_import_timeout)
            except asyncio.TimeoutError:
                fresh = Account(name, account_path(settings, name), error="loading the plugins took "
                                "longer than server.reload_import_timeout")
            if fresh.gateway is not None and self.bot.operator is not None:
                from .operator_desk import OperatorDesk  # the app offers operator services: its own

                fresh.gateway.bot.operator = OperatorDesk.for_account(fresh, self)
            if fresh.served:
                await start_account(fresh)
            self.accounts.named[name] = fresh
            if not fresh.served:
                return status.rejected(name, fresh.error or "not served", None)
            log.info("account %s served at %s", name, fresh.path)
            return status.applied([], None)
        gateway = account.gateway
        assert gateway is not None
        try:
            own = account_settings(settings, name)
        except ConfigError as exc:
            return status.rejected(name, "; ".join(exc.errors), gateway.metrics)
        new, reason, held = await self._replace_bot(gateway, own, name)
        if new is None:
            return status.rejected(name, reason, gateway.metrics)
        log.info("account %s reloaded; plugins: %s", name, ", ".join(own.plugins.enabled))
        return status.applied(held, gateway.metrics)

    async def _replace_bot(self, gateway: Gateway, settings: Settings, account: str = ""
                           ) -> tuple[Bot | None, str, list[str]]:
        """Build and start a bot for ``settings`` and swap it into ``gateway``'s holder; returns
        (the new bot, "", settings held for a restart) or (None, the reason it was refused, []).
        Settings errors of a named ``account`` name its keys (``accounts.<name>.<key>``)."""
        old = gateway.bots.bot
        held = hold_restart_only(old.settings, settings)
        limit = settings.server.reload_import_timeout
        # Importing plugins and validating their tables runs plugin code of any speed: in a
        # thread, so the loop keeps answering, and bounded, so a hung import rejects the set.
        # A thread cannot be stopped: one past the limit finishes on its own and is dropped.
        try:
            new = await asyncio.wait_for(
                run_in_daemon_thread(Bot, settings, old.extra_plugins, state=old.state), limit)
        except asyncio.TimeoutError:
            return None, (f"loading the plugins took longer than server.reload_import_timeout "
                          f"({limit:g} s)"), []
        except ConfigError as exc:
            return None, "; ".join((in_account(account, exc) if account else exc).errors), []
        except Exception as exc:  # a plugin's schema hook that raises, say
            log.error("building a bot from the new settings failed", exc_info=exc)
            return None, f"building the bot failed ({type(exc).__name__}; the log has the traceback)", []
        new.operator = old.operator  # the app's services go with the running bot
        try:
            await new.start()
        except Exception as exc:
            return None, str(exc), []
        self._swap(gateway, old, new)
        return new, "", held

    def _reject(self, reason: str) -> ReloadResult:
        self.last_error = reason
        self.last_error_at = time.time()
        self.app[METRICS_KEY].reloads.inc("rejected")
        log.error("settings reload rejected, the running settings stay: %s", reason)
        return ReloadResult("rejected", reason=reason)

    def _swap(self, gateway: Gateway, old: Bot, new: Bot) -> None:
        """Make ``new`` the running bot in the account's one holder; its webhook, delivery,
        metrics and the operator pages read it there (what they build from settings that may
        change live, such as the reply renderer, they make again when they see a new bot)."""
        in_flight = set(gateway.delivery.coordinator.tasks)
        new.owns_state, old.owns_state = old.owns_state, False
        gateway.bots.swap(new)
        if gateway is self.app[GATEWAY_KEY]:
            self._apply_logging(old.settings, new.settings)
        self._keep_task(self._retire(gateway, old, new, in_flight))

    def _keep_task(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    @staticmethod
    def _apply_logging(before: Settings, after: Settings) -> None:
        if (before.logging.level, before.logging.json) != (after.logging.level, after.logging.json):
            from .logs import setup_logging

            setup_logging(after.logging.level, after.logging.json)

    async def _retire(self, gateway: Gateway, old: Bot, new: Bot, in_flight: set[asyncio.Task]) -> None:
        """Let the old bot finish what it was answering, then stop it."""
        if in_flight:
            grace = old.settings.pipeline.fallback_timeout + 5
            await asyncio.wait(in_flight, timeout=grace)
        # Plugin objects handed to both bots in code live on in the new one: do not shut them down.
        for name, plugin in list(old.pm.list_name_plugin()):
            if plugin is not None and new.pm.is_registered(plugin):
                old.release_plugin(plugin)
        try:
            await old.stop()
        except Exception:
            log.exception("stopping the replaced bot failed")
        finally:
            gateway.metrics.retire(old)
            gateway.bots.retired(old)

    async def drain(self) -> None:
        """Wait until every replaced bot has been stopped."""
        while self._retiring:
            await asyncio.gather(*list(self._retiring), return_exceptions=True)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.drain()

    def status(self) -> dict[str, Any]:
        def iso(t: float | None) -> str | None:
            return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t)) if t else None

        return {"file": str(self.path), "generation": self.generation,
                "last_applied": iso(self.last_applied), "last_error": self.last_error,
                "last_error_at": iso(self.last_error_at), "restart_needed": self.restart_needed}

    def account_reload_status(self, name: str) -> dict[str, Any] | None:
        """The last reload of account ``name`` (None before its first)."""
        status = self.account_status.get(name)
        return status.to_dict() if status is not None else None


def _inherited(raw: dict[str, Any]) -> dict[str, Any]:
    """The top-level settings every account inherits (the file without its accounts)."""
    return {key: value for key, value in raw.items() if key != "accounts"}


@dataclass
class AccountReloadStatus:
    """The last reload of one named account, for /healthz."""

    generation: int = 0
    last_applied: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    restart_needed: list[str] = field(default_factory=list)

    def applied(self, held: list[str], metrics: Any) -> str:
        self.generation += 1
        self.last_applied, self.last_error, self.restart_needed = time.time(), None, held
        if metrics is not None:
            metrics.reloads.inc("applied")
        return "applied"

    def rejected(self, name: str, reason: str, metrics: Any) -> str:
        self.last_error, self.last_error_at = reason, time.time()
        if metrics is not None:
            metrics.reloads.inc("rejected")
        log.error("reload of account %s rejected, %s: %s", name,
                  "its running settings stay" if metrics is not None else "it is not served", reason)
        return "rejected"

    def to_dict(self) -> dict[str, Any]:
        def iso(t: float | None) -> str | None:
            return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t)) if t else None

        return {"generation": self.generation, "last_applied": iso(self.last_applied),
                "last_error": self.last_error, "last_error_at": iso(self.last_error_at),
                "restart_needed": self.restart_needed}


def run_in_daemon_thread(function: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future:
    """``function(*args, **kwargs)`` in a thread of its own; the future gets its result.

    Not the loop's default executor: a hung plugin import would hold one of its few workers for
    good and, joined at exit, keep the process from stopping. A daemon thread does neither. If
    the future was cancelled (the time limit passed), the late result is dropped.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(result)
        elif isinstance(error, Exception):
            future.set_exception(error)
        else:  # SystemExit or KeyboardInterrupt from plugin code must not reach the loop
            future.set_exception(RuntimeError(f"{type(error).__name__} raised"))

    def run() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (function(*args, **kwargs), None)
        except BaseException as exc:  # handed to the loop, which decides
            outcome = (None, exc)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop has closed meanwhile: nobody waits for this any more
            pass

    threading.Thread(target=run, name="skillbot-reload-build", daemon=True).start()
    return future


RELOADER_KEY: web.AppKey[SettingsReloader] = web.AppKey("reloader", SettingsReloader)


def setup_reload(app: web.Application) -> SettingsReloader | None:
    """Attach a reloader to the app when its settings came from a file; polling starts with the app."""
    settings = app[BOTS_KEY].bot.settings
    if settings.source is None:
        return None
    reloader = SettingsReloader(app, settings.source)
    app[RELOADER_KEY] = reloader

    async def watching(app: web.Application) -> AsyncIterator[None]:
        reloader.start()
        yield
        await reloader.close()

    app.cleanup_ctx.append(watching)
    return reloader

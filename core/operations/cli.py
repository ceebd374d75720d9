"""``python run.py [serve] [--settings PATH] [--host H] [--port P]`` and the other sub-commands.

``--settings`` works for every sub-command, before or after its name. Bad settings end any command
with one ``settings error: <key>: <what it expects>`` line per problem and exit code 2.

    serve        the WeChat webhook (the default)
    chat         talk to the bot through the real webhook (core/operations/chat_console.py)
    plugins      every plugin found, where from, enabled or not, its priority and hooks
    check        validate settings.toml and reach each configured service
    new-plugin   create a new skill folder with a test (core/operations/scaffold.py)
    faq test     accuracy and confusions of the FAQ on a labelled question list (core/operations/understanding_cli.py)
    route        every intent's and FAQ entry's score for one message
    menu         push, show or delete the account's custom menu (core/operations/wechat_admin.py)
    media        upload an image, voice, video or thumb file as temporary or permanent media
    template     send a template message
    ...          and the sub-commands plugins bring (core/operations/plugin_commands.py), e.g. kb
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..settings import PROJECT_ROOT, account_settings, in_account, load_settings
from ..settings_schema import ConfigError
from .plugin_commands import find_plugin_commands

if TYPE_CHECKING:
    from ..settings import Settings

log = logging.getLogger("skillbot")


DEFAULT_SETTINGS = str(PROJECT_ROOT / "settings.toml")


def _common(parser: argparse.ArgumentParser, top: bool = False) -> None:
    # Given on the top-level parser and on each sub-command, before or after the sub-command's
    # name. A sub-parser's default would overwrite what the top level parsed
    # (``run.py --settings X check``), so only the top level has one.
    parser.add_argument("--settings", default=DEFAULT_SETTINGS if top else argparse.SUPPRESS,
                        help="settings file (default: ./settings.toml)")


def _listening(parser: argparse.ArgumentParser, top: bool = False) -> None:
    parser.add_argument("--host", default=None if top else argparse.SUPPRESS,
                        help="listen address (overrides server.host)")
    parser.add_argument("--port", type=int, default=None if top else argparse.SUPPRESS,
                        help="listen port (overrides server.port)")
    parser.add_argument("--workers", type=int, default=1 if top else argparse.SUPPRESS,
                        help="worker processes sharing the port (needs state.backend = \"redis\")")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run.py", description="Skillbot: a WeChat Official Account bot")
    _common(parser, top=True)
    _listening(parser, top=True)
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="serve the WeChat webhook (the default)")
    _common(serve)
    _listening(serve)

    chat = sub.add_parser("chat", help="talk to the bot as a WeChat user, through the real webhook",
                          description="Sends real signed (and encrypted) WeChat XML through the HTTP "
                          "webhook and prints each reply with the plugin, intent and time per stage. "
                          "Type /help in the chat for events (/subscribe, /click KEY, /location LAT LON...).")
    _common(chat)
    chat.add_argument("text", nargs="*", help="send this one message, print the answer and exit")
    chat.add_argument("--url", help="webhook URL of a running bot (default: start one in this process)")
    chat.add_argument("--token", default="", help="server.admin_token of the running bot, for explanations "
                      "(default: $SKILLBOT_ADMIN_TOKEN)")
    chat.add_argument("--user", default="o_chat_user", help="the user's OpenID (default o_chat_user)")
    chat.add_argument("--json", action="store_true", help="one JSON object per reply")
    chat.add_argument("--verbose", "-v", action="store_true", help="every route candidate and the bot's INFO log")
    chat.add_argument("--account", default="", help="talk to this [accounts.NAME] account (default: the "
                      "top-level one)")

    plugins = sub.add_parser("plugins", help="list every plugin found, enabled or not, and its priority")
    _common(plugins)
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.add_argument("--account", default="", help="the plugins of this [accounts.NAME] account "
                         "(default: the top-level one)")

    check = sub.add_parser("check", help="validate the settings and reach each configured service")
    _common(check)
    check.add_argument("--timeout", type=float, default=10.0, help="seconds per service (default 10)")

    _add_understanding_commands(sub)
    _add_plugin_commands(sub)
    new = sub.add_parser("new-plugin", help="create a skill folder with a hook, config, template and test")
    new.add_argument("name", help="the plugin's name (lower case letters, digits, _)")
    new.add_argument("--dir", default=str(PROJECT_ROOT / "plugins"), help="where plugin folders live (default plugins/)")
    new.add_argument("--tests-dir", default=str(PROJECT_ROOT / "tests"), help="where to put its test (default tests/)")
    _wechat_admin_commands(sub)
    return parser


def _add_understanding_commands(sub: Any) -> None:
    faq = sub.add_parser("faq", help="FAQ tools: 'faq test QUESTIONS.tsv'")
    faq_sub = faq.add_subparsers(dest="faq_command", required=True)
    test = faq_sub.add_parser("test", help="accuracy and confusions on a labelled list "
                              "(message<TAB>faq:<entry id> | fallback | weather, one per line)")
    _common(test)
    test.add_argument("questions", help="tab-separated file of labelled questions")
    test.add_argument("--show", type=int, default=40, help="most confusions and misses printed (default 40)")
    route = sub.add_parser("route", help="every intent's and FAQ entry's score for one message")
    _common(route)
    route.add_argument("text", help="the message")
    route.add_argument("--json", action="store_true", help="print JSON")


def _add_plugin_commands(sub: Any) -> None:
    for name, (plugin, command) in find_plugin_commands().items():
        parser = sub.add_parser(name, help=f"{command.help} (plugin {plugin})")
        _common(parser)
        command.add_arguments(parser)
        # --settings after a nested action too (``run.py kb status --settings X``)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for nested in action.choices.values():
                    _common(nested)
        parser.set_defaults(plugin_command=name)


def plugin_command(args: argparse.Namespace) -> int:
    """A plugin's own sub-command (core/operations/plugin_commands.py): on a started bot."""
    from .understanding_cli import run

    plugin, command = find_plugin_commands()[args.plugin_command]
    settings = _load(args)
    if settings is None:
        return 2
    if plugin not in settings.plugins.enabled:
        print(f"{command.name}: the {plugin} plugin is not in plugins.enabled", file=sys.stderr)
        return 2

    async def with_bot() -> int:
        from ..processing.bot import Bot

        bot = Bot(settings)
        await bot.start()
        try:
            return await command.run(bot, args)
        finally:
            await bot.stop()
    return run(with_bot())


def faq_command(args: argparse.Namespace) -> int:
    from .understanding_cli import faq_test, run

    settings = _load(args)
    if settings is None:
        return 2
    if not Path(args.questions).is_file():
        print(f"faq test: no such file: {args.questions}", file=sys.stderr)
        return 2
    try:
        return run(faq_test(settings, Path(args.questions), show=args.show))
    except ValueError as exc:
        print(f"faq test: {exc}", file=sys.stderr)
        return 2


def route_command(args: argparse.Namespace) -> int:
    from .understanding_cli import route_text, run

    settings = _load(args)
    if settings is None:
        return 2
    return run(route_text(settings, args.text, as_json=args.json))


def _wechat_admin_commands(sub: Any) -> None:
    menu = sub.add_parser("menu", help="push, show or delete the account's custom menu (WeChat's API)")
    _common(menu)
    menu.add_argument("action", choices=["push", "show", "delete"])
    menu.add_argument("file", nargs="?", help="TOML menu file for push (see docs/examples/menu.toml)")
    menu.add_argument("--json", action="store_true", help="show: print WeChat's JSON")

    media = sub.add_parser("media", help="upload a file as WeChat media (image, voice, video, thumb)")
    _common(media)
    media.add_argument("action", choices=["upload"])
    media.add_argument("file", help="the file to upload")
    media.add_argument("--type", dest="kind", required=True, choices=["image", "voice", "video", "thumb"])
    media.add_argument("--permanent", action="store_true", help="permanent material (default: temporary, 3 days)")
    media.add_argument("--title", default="", help="permanent video: its title")
    media.add_argument("--introduction", default="", help="permanent video: its description")

    template = sub.add_parser("template", help="send a template message")
    _common(template)
    template.add_argument("action", choices=["send"])
    template.add_argument("--to", required=True, help="the user's OpenID")
    template.add_argument("--template-id", required=True, help="the template's ID from the WeChat console")
    template.add_argument("--data", action="append", default=[], metavar="KEY=VALUE",
                          help="a template field, repeated: --data first=您好 --data keyword1=...")
    template.add_argument("--url", default="", help="page opened when the message is tapped")


def serve_overrides(args: argparse.Namespace) -> dict:
    overrides: dict = {}
    if args.host:
        overrides.setdefault("server", {})["host"] = args.host
    if args.port:
        overrides.setdefault("server", {})["port"] = args.port
    return overrides


async def freeze_startup_heap(app: object) -> None:
    """Move everything built at start-up (jieba's ~500,000-entry dictionary, indexes) out of the
    garbage collector's view: full collections then take milliseconds instead of ~400 ms."""
    import gc

    gc.collect()
    gc.freeze()


def run_worker(settings_path: str, overrides: dict, reuse_port: bool) -> int:
    from ..app import create_app, run_webhook
    from ..appkeys import ACCOUNTS_KEY, GATEWAY_KEY
    from .logs import setup_logging

    try:
        settings = load_settings(settings_path, overrides)
        setup_logging(settings.logging.level, settings.logging.json)
        app = create_app(settings)
    except ConfigError as exc:
        report_settings_error(exc)
        return 2
    log.info("Skillbot listening on http://%s:%d%s (mode %s, state %s, plugins %s)", settings.server.host,
             settings.server.port, settings.server.path, settings.wechat.mode, settings.state.backend,
             ", ".join(settings.plugins.enabled))
    for account in app[ACCOUNTS_KEY].named.values():
        if account.gateway is not None and account.error is None:
            own = account.gateway.bot.settings
            log.info("account %s at %s (mode %s, plugins %s)", account.name, account.path,
                     own.wechat.mode, ", ".join(own.plugins.enabled))
    app.on_startup.append(freeze_startup_heap)  # runs after the bot has started
    try:
        run_webhook(app, settings.server.host, settings.server.port, reuse_port=reuse_port or None,
                    event_loop=settings.server.event_loop)
    except OSError as exc:  # the port is taken, the address is not this machine's...
        print(f"cannot listen on {settings.server.host}:{settings.server.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    except Exception as exc:
        if app[GATEWAY_KEY].bot.started:  # not a start-up failure: a defect, keep its traceback
            raise
        # A plugin could not start (what it said is in the log above): no traceback of ours.
        print(f"start-up failed: {exc}", file=sys.stderr)
        return 1
    return 0


def serve(args: argparse.Namespace) -> int:
    overrides = serve_overrides(args)
    if args.workers <= 1:
        return run_worker(args.settings, overrides, reuse_port=False)
    try:
        settings = load_settings(args.settings, overrides)
    except ConfigError as exc:
        report_settings_error(exc)
        return 2
    if settings.state.backend == "memory":
        print(f"refusing to start {args.workers} workers with state.backend = \"memory\": each worker "
              "would keep its own conversations and answer records, so WeChat's retries landing on "
              "another worker would be answered twice. Set state.backend = \"redis\" (and "
              "state.redis_url) or run one worker.", file=sys.stderr)
        return 2
    return run_workers(args.settings, overrides, args.workers)


def run_workers(settings_path: str, overrides: dict, count: int, stop_grace: float = 15.0) -> int:
    """N processes bound to one port with SO_REUSEPORT; the kernel spreads connections.

    SIGTERM/SIGINT are passed on to the workers; one still alive ``stop_grace`` seconds later is killed.
    """
    import multiprocessing
    import signal
    import time

    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=run_worker, args=(settings_path, overrides, True), daemon=False)
               for _ in range(count)]
    stop_requested: list[float] = []

    def stop(signum: int, _frame: object) -> None:
        stop_requested.append(time.monotonic())
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                worker.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for worker in workers:
        worker.start()
    if stop_requested:  # a signal came while the workers were being started
        stop(signal.SIGTERM, None)
    while any(worker.is_alive() for worker in workers):
        for worker in workers:
            worker.join(timeout=0.2)
        if stop_requested and time.monotonic() - stop_requested[0] > stop_grace:
            for worker in workers:
                if worker.is_alive():
                    worker.kill()
    return max((w.exitcode or 0) for w in workers)


def report_settings_error(exc: ConfigError) -> None:
    """One line per problem, no traceback: the operator fixes the file, not the code."""
    for line in exc.errors:
        print(f"settings error: {line}", file=sys.stderr)


def _load(args: argparse.Namespace) -> Settings | None:
    """The settings file, or the settings of account ``args.account`` in it when one is named."""
    try:
        settings = load_settings(args.settings)
        name = getattr(args, "account", "")
        if not name:
            return settings
        if name not in settings.accounts:
            raise ConfigError(f"accounts.{name}: no such account (accounts: "
                              f"{', '.join(sorted(settings.accounts)) or 'none'})")
        return account_settings(settings, name)
    except ConfigError as exc:
        report_settings_error(exc)
        return None


def chat(args: argparse.Namespace) -> int:
    import asyncio

    from ..processing.plugin_manager import tracing
    from .chat_console import chat_main
    from .logs import setup_logging

    settings = _load(args)
    if settings is None:
        return 2
    # Quiet by default (the chat is the output); INFO with --verbose or when tracing hooks.
    setup_logging("INFO" if args.verbose or tracing(settings) else "WARNING", settings.logging.json)
    try:
        return asyncio.run(chat_main(args, settings))
    except ConfigError as exc:
        report_settings_error(exc)
        return 2
    except RuntimeError as exc:
        # core/processing/bot.py's "plugin X failed to start": the plugin's reason is already in the log.
        if "failed to start" not in str(exc):
            raise
        print(f"start-up failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def list_plugins(args: argparse.Namespace) -> int:
    import json

    from ..processing.plugin_manager import create_plugin_manager, discover_plugins

    settings = _load(args)
    if settings is None:
        return 2
    available = discover_plugins(settings)
    enabled = list(settings.plugins.enabled)
    error = ""
    hooks: dict[str, list[str]] = {}
    try:
        pm, _ = create_plugin_manager(settings)
        for name in enabled:
            plugin = pm.get_plugin(name)
            hooks[name] = sorted(
                caller.name.removeprefix("skillbot_") + ("(tryfirst)" if impl.tryfirst else "(trylast)" if impl.trylast else "")
                for caller in pm.get_hookcallers(plugin) or [] for impl in caller.get_hookimpls()
                if impl.plugin is plugin)
    except ConfigError as exc:
        error = "\n".join(exc.errors)
    rows = []
    for name in sorted(set(available) | set(enabled), key=lambda n: (enabled.index(n) if n in enabled else len(enabled), n)):
        source = available.get(name)
        rows.append({"name": name, "enabled": name in enabled,
                     "priority": enabled.index(name) + 1 if name in enabled else None,
                     "origin": source.origin if source else "missing",
                     "location": _short(source.location) if source else "-",
                     "hooks": hooks.get(name, [])})
    others = sorted(settings.accounts)
    if args.json:
        print(json.dumps({"account": settings.account or "default", "plugins": rows, "error": error or None,
                          "accounts": others or None}, ensure_ascii=False, indent=2))
    else:
        print(f"{'PLUGIN':<14} {'ENABLED':<8} {'PRIORITY':<9} {'FROM':<12} {'LOCATION':<34} HOOKS")
        for row in rows:
            print(f"{row['name']:<14} {'yes' if row['enabled'] else 'no':<8} "
                  f"{row['priority'] or '-':<9} {row['origin']:<12} {row['location']:<34} "
                  f"{', '.join(row['hooks']) or '-'}")
        print(f"\nsettings: {settings.source or '(defaults)'}; priority = position in plugins.enabled "
              "(1 is called first within a stage; tryfirst/trylast hooks go before/after the rest)")
        if settings.account:
            print(f"account: {settings.account} (served at {settings.server.path})")
        elif others:
            print(f"these are the default account's; accounts: {', '.join(others)} "
                  "(run.py plugins --account NAME)")
        for line in error.splitlines():
            print(f"error: {line}", file=sys.stderr)
    return 2 if error else 0


def _short(location: str) -> str:
    try:
        return str(Path(location).relative_to(PROJECT_ROOT))
    except ValueError:
        return location


def check(args: argparse.Namespace) -> int:
    import asyncio

    from .logs import setup_logging

    setup_logging("ERROR")
    return asyncio.run(run_checks(args.settings, args.timeout))


async def run_checks(settings_path: str, timeout: float = 10.0, out: Any = None) -> int:
    """Settings, plugins, state backend and every plugin's services, for the default account and
    each ``[accounts.<name>]`` (its lines start with ``[name]``); prints OK/FAIL lines."""
    from .health import Check

    out = out or sys.stdout
    failures = 0

    def report(check: Check, account: str = "") -> None:
        nonlocal failures
        failures += 0 if check.ok else 1
        where = f"[{account}] " if account else ""
        print(f"{'OK' if check.ok else 'FAIL':<5} {where}{check.name}: {check.detail}", file=out, flush=True)

    try:
        settings = load_settings(settings_path)
    except ConfigError as exc:
        for line in exc.errors:
            report(Check("settings", False, line))
        return 2
    report(Check("settings", True, f"{settings.source} is valid"))
    worst = await check_account(settings, timeout, report, out)
    for name in settings.accounts:
        try:
            own = account_settings(settings, name)
        except ConfigError as exc:
            for line in exc.errors:
                report(Check("settings", False, line), name)
            worst = max(worst, 2)
            continue
        report(Check("settings", True, f"accounts.{name} is valid (served at {own.server.path})"), name)
        worst = max(worst, await check_account(own, timeout, report, out, name))
    print(f"{'all checks passed' if not failures else f'{failures} check(s) failed'}", file=out, flush=True)
    return worst or (1 if failures else 0)


async def check_account(settings: Settings, timeout: float, report: Callable[..., None], out: Any,
                        account: str = "") -> int:
    """One account's plugins, state backend and services; 2 for a settings error, 1 for a
    start-up failure, else 0 (failed service checks are counted by ``report``)."""
    from ..processing.bot import Bot
    from .health import Check, plugin_checks

    try:
        bot = Bot(settings)
    except ConfigError as exc:
        for line in (in_account(account, exc) if account else exc).errors:
            report(Check("plugins", False, line), account)
        return 2
    report(Check("plugins", True, f"loaded and validated: {', '.join(settings.plugins.enabled) or 'none'}"), account)
    report(await check_state(settings, timeout), account)
    try:
        await bot.start()
    except Exception as exc:
        report(Check("plugins", False, f"start-up failed: {exc}"), account)
        return 1
    try:
        report(Check("plugins", True, "every plugin started"), account)
        reporting = {impl.plugin_name for impl in bot.hooks.impls("skillbot_health")}
        for check in await plugin_checks(bot, probe=True, timeout=timeout + 1):
            check.name = f"{check.plugin}: {check.name}" if check.plugin and not check.name.startswith(check.plugin) else check.name
            report(check, account)
        silent = [name for name in settings.plugins.enabled if name not in reporting]
        if silent:
            where = f"[{account}] " if account else ""
            print(f"--    {where}not checked (no skillbot_health): {', '.join(silent)}", file=out, flush=True)
    finally:
        await bot.stop()
    return 0


async def check_state(settings: Settings, timeout: float) -> Any:
    from .health import Check

    if settings.state.backend == "memory":
        return Check("state", True, "memory backend (one process; nothing to reach)")
    import redis.asyncio as aioredis

    client = aioredis.from_url(settings.state.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout)
    where = _redact(settings.state.redis_url)
    try:
        import time

        started = time.perf_counter()
        await client.ping()
        return Check("state", True, f"redis {where} answers PING in {(time.perf_counter() - started) * 1000:.0f} ms")
    except Exception as exc:
        return Check("state", False, f"redis {where}: {type(exc).__name__}: {exc}")
    finally:
        await client.aclose()


def _redact(url: str) -> str:
    """A Redis URL without its password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def new_plugin(args: argparse.Namespace) -> int:
    from .scaffold import ScaffoldError, create_plugin

    try:
        created, snippet = create_plugin(args.name, Path(args.dir), Path(args.tests_dir))
    except ScaffoldError as exc:
        print(f"new-plugin: {exc}", file=sys.stderr)
        return 2
    print("created:")
    for path in created:
        print(f"  {_short(str(path))}")
    print("\nadd to settings.toml:\n")
    print(snippet)
    return 0


def wechat_admin(args: argparse.Namespace) -> int:
    """``menu``, ``media`` and ``template``: WeChat's management APIs (core/operations/wechat_admin.py)."""
    import asyncio

    from . import wechat_admin as commands
    from .logs import setup_logging

    settings = _load(args)
    if settings is None:
        return 2
    setup_logging("WARNING", settings.logging.json)
    if args.command == "menu":
        if args.action == "push" and not args.file:
            print("run.py menu push FILE", file=sys.stderr)
            return 2
        return asyncio.run(commands.menu_command(settings, args.action, args.file, args.json))
    if args.command == "media":
        return asyncio.run(commands.media_command(settings, args.file, args.kind, args.permanent,
                                                  args.title, args.introduction))
    return asyncio.run(commands.template_command(settings, args.to, args.template_id, args.data, args.url))


COMMANDS = {"serve": serve, "chat": chat, "plugins": list_plugins, "check": check, "new-plugin": new_plugin,
            "faq": faq_command, "route": route_command,
            "menu": wechat_admin, "media": wechat_admin, "template": wechat_admin}


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "serve"
    if getattr(args, "plugin_command", None):
        return plugin_command(args)
    return COMMANDS[command](args)

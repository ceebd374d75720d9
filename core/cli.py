"""``python run.py [serve] [--settings PATH] [--host H] [--port P]`` and the other sub-commands."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from .config import ConfigError
from .settings import PROJECT_ROOT, load_settings

log = logging.getLogger("skillbot")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--settings", default=str(PROJECT_ROOT / "settings.toml"),
                        help="settings file (default: ./settings.toml)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run.py", description="Skillbot: a WeChat Official Account bot")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="serve the WeChat webhook (the default)")
    for p in (parser, serve):
        _common(p)
        p.add_argument("--host", help="listen address (overrides server.host)")
        p.add_argument("--port", type=int, help="listen port (overrides server.port)")
    return parser


def serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from .app import create_app
    from .logs import setup_logging

    overrides: dict = {}
    if args.host:
        overrides.setdefault("server", {})["host"] = args.host
    if args.port:
        overrides.setdefault("server", {})["port"] = args.port
    try:
        settings = load_settings(args.settings, overrides)
        setup_logging(settings.logging.level, settings.logging.json)
        app = create_app(settings)
    except ConfigError as exc:
        print(f"settings error: {exc}", file=sys.stderr)
        return 2
    log.info("Skillbot listening on http://%s:%d%s (mode %s, plugins %s)", settings.server.host,
             settings.server.port, settings.server.path, settings.wechat.mode,
             ", ".join(settings.plugins.enabled))
    web.run_app(app, host=settings.server.host, port=settings.server.port, print=None,
                access_log=None)
    return 0


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "serve"
    if command == "serve":
        return serve(args)
    return 2

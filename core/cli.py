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
        p.add_argument("--workers", type=int, default=1,
                       help="worker processes sharing the port (needs state.backend = \"redis\")")
    return parser


def serve_overrides(args: argparse.Namespace) -> dict:
    overrides: dict = {}
    if args.host:
        overrides.setdefault("server", {})["host"] = args.host
    if args.port:
        overrides.setdefault("server", {})["port"] = args.port
    return overrides


def run_worker(settings_path: str, overrides: dict, reuse_port: bool) -> int:
    from aiohttp import web

    from .app import create_app
    from .logs import setup_logging

    try:
        settings = load_settings(settings_path, overrides)
        setup_logging(settings.logging.level, settings.logging.json)
        app = create_app(settings)
    except ConfigError as exc:
        print(f"settings error: {exc}", file=sys.stderr)
        return 2
    log.info("Skillbot listening on http://%s:%d%s (mode %s, state %s, plugins %s)", settings.server.host,
             settings.server.port, settings.server.path, settings.wechat.mode, settings.state.backend,
             ", ".join(settings.plugins.enabled))
    web.run_app(app, host=settings.server.host, port=settings.server.port, print=None,
                access_log=None, reuse_port=reuse_port or None)
    return 0


def serve(args: argparse.Namespace) -> int:
    overrides = serve_overrides(args)
    if args.workers <= 1:
        return run_worker(args.settings, overrides, reuse_port=False)
    try:
        settings = load_settings(args.settings, overrides)
    except ConfigError as exc:
        print(f"settings error: {exc}", file=sys.stderr)
        return 2
    if settings.state.backend == "memory":
        print(f"refusing to start {args.workers} workers with state.backend = \"memory\": each worker "
              "would keep its own conversations and answer records, so WeChat's retries landing on "
              "another worker would be answered twice. Set state.backend = \"redis\" (and "
              "state.redis_url) or run one worker.", file=sys.stderr)
        return 2
    return run_workers(args.settings, overrides, args.workers)


def run_workers(settings_path: str, overrides: dict, count: int) -> int:
    """N processes bound to one port with SO_REUSEPORT; the kernel spreads connections."""
    import multiprocessing
    import signal

    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=run_worker, args=(settings_path, overrides, True), daemon=False)
               for _ in range(count)]
    for worker in workers:
        worker.start()

    def stop(signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for worker in workers:
        worker.join()
    return max((w.exitcode or 0) for w in workers)


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "serve"
    if command == "serve":
        return serve(args)
    return 2

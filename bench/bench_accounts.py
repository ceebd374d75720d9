#!/usr/bin/env python3
"""What each more official account costs: process memory and start-up time of the whole bot
(``run.py``, the shipped plugins) serving N ``[accounts.<name>]`` besides the default account,
against the same bot with none (the baseline, measured in the same run).

    .venv/bin/python bench/bench_accounts.py            # N = 0, 1, 4, 8

Each N runs in a fresh process: start-up is the time from launching ``run.py`` to ``/healthz``
answering; RSS is read after one FAQ message to every account (its router and caches in use).
"""
from __future__ import annotations

import argparse
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path

from common import BENCH_DIR, bot_server, free_port, md_table, query_string, report_header, rss_kib

from core.operations.wechat_client import WeChatSigner, text_xml

QUESTION = "你们几点上班"


def settings_with(accounts: int, folder: Path) -> Path:
    text = (BENCH_DIR / "settings.bench.toml").read_text(encoding="utf-8")
    text += "\n[server]\nreload_interval = 0\n"
    for i in range(accounts):
        text += f'\n[accounts.a{i}.wechat]\ntoken = "token{i}"\nmode = "plain"\n'
    path = folder / f"settings-{accounts}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def ask(port: int, path: str, token: str) -> None:
    request = WeChatSigner(token).sign(text_xml(QUESTION))
    url = f"http://127.0.0.1:{port}{path}?{query_string(request.params)}"
    with urllib.request.urlopen(urllib.request.Request(url, data=request.body), timeout=10) as response:
        assert response.status == 200


def measure(accounts: int, folder: Path, default_token: str) -> tuple[float, int]:
    port = free_port()
    started = time.perf_counter()
    with bot_server(settings_with(accounts, folder), port) as server:
        took = time.perf_counter() - started
        ask(port, "/wechat", default_token)
        for i in range(accounts):
            ask(port, f"/wechat/a{i}", f"token{i}")
        rss, _ = rss_kib(server.pid)
    return took, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="0,1,4,8", help="numbers of accounts (0 is the baseline)")
    args = parser.parse_args()
    default_token = tomllib.loads((BENCH_DIR / "settings.bench.toml").read_text())["wechat"]["token"]
    counts = sorted({0, *(int(c) for c in args.counts.split(","))})
    with tempfile.TemporaryDirectory() as tmp:
        results = {n: measure(n, Path(tmp), default_token) for n in counts}
    base_time, base_rss = results[0]
    rows = []
    for n, (took, rss) in results.items():
        per = f"{(rss - base_rss) / 1024 / n:.1f}" if n else "-"
        rows.append([n, f"{took:.2f}", f"{took / base_time:.2f}x", f"{rss / 1024:.0f}", per])
    lines = report_header("Several official accounts: memory and start-up per account")
    lines += md_table(["accounts besides the default", "start-up s", "vs none", "RSS MiB", "MiB per account"], rows)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Shared pieces of the benchmarks: machine facts, markdown output, processes, signing, Redis.

Every benchmark prints a markdown report that starts with the exact command line and the machine
(CPU count and model, Python, kernel, load average), so a figure can always be traced to a run.
Everything listens on and talks to 127.0.0.1 only.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Sequence

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: The bench account (bench/settings.bench*.toml): token, AppID and the test EncodingAESKey.
TOKEN = "benchtoken"
APP_ID = "wx_bench_app_id"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
#: The [wechat] table of that account (plain mode, nothing taken from the environment).
WECHAT_TOML = f"""[wechat]
token = "{TOKEN}"
token_env = ""
app_id = "{APP_ID}"
encoding_aes_key = "{AES_KEY}"
encoding_aes_key_env = ""
mode = "plain"
"""


# ---- machine and report ------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_lines() -> list[str]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0, 0, 0)
    return [
        f"- Machine: {os.cpu_count()} CPU(s), {cpu_model()}, {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"load average at start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
    ]


def command_line() -> str:
    exe = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable
    script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)
    return " ".join(shlex.quote(p) for p in [exe, script, *sys.argv[1:]])


def report_header(title: str) -> list[str]:
    return [f"## {title}", "", f"- Command: `{command_line()}` (from the repository root)", *machine_lines(), ""]


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return lines



def add_load_arguments(parser: argparse.ArgumentParser, tool_help: str) -> None:
    """The load options shared by the HTTP throughput benchmarks (bench_http.py, bench_werobot.py)."""
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each timed run (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up before each run (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (default 32)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over all targets, alternating (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: the server gets the other core)")
    parser.add_argument("--tool", choices=["auto", "wrk", "loadgen"], default="auto", help=tool_help)

def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ---- processes ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int | None = None) -> tuple[int, int]:
    """(current RSS, peak RSS) in KiB of a process (this one by default), from /proc."""
    rss = hwm = 0
    try:
        for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until ``url`` answers any HTTP status (the server is listening and started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code != 503:  # 503 = still starting
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


class Server:
    """A server in its own process (``python run.py ...`` or bench/serve_bare.py)."""

    def __init__(self, argv: list[str], ready_url: str, log_path: Path | None = None,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.argv = argv
        self.cwd = cwd or ROOT
        self.ready_url = ready_url
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen | None = None
        self._log: Any = None

    def start(self, timeout: float = 90.0) -> "Server":
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(self.env or {}))
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        wait_http(self.ready_url, timeout, self.proc)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
        self._log = None

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def bot_server(settings: Path, port: int, log_path: Path | None = None, root: Path = ROOT) -> Server:
    """The whole bot exactly as operators run it: ``python run.py --settings ... --port ...``
    (``root``: another checkout, e.g. an older commit exported with ``git archive``)."""
    return Server([sys.executable, str(root / "run.py"), "--settings", str(settings), "--host", "127.0.0.1",
                   "--port", str(port)], f"http://127.0.0.1:{port}/healthz", log_path, cwd=root)


def bare_server(port: int) -> Server:
    return Server([sys.executable, str(BENCH_DIR / "serve_bare.py"), "--port", str(port)],
                  f"http://127.0.0.1:{port}/healthz")


class RedisServer:
    """A private redis-server on a free port (no persistence); can be stopped and restarted."""

    def __init__(self, port: int | None = None) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            for _ in range(100):
                try:
                    if client.ping():
                        return self
                except redis.RedisError:
                    time.sleep(0.05)
        finally:
            client.close()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def info_memory(self) -> dict[str, str]:
        import redis

        client = redis.Redis.from_url(self.url, decode_responses=True)
        try:
            return {k: str(v) for k, v in client.info("memory").items()}
        finally:
            client.close()


# ---- signed requests ---------------------------------------------------------------------------

def signer(mode: str):
    from core.operations.wechat_client import WeChatSigner

    return WeChatSigner(TOKEN, mode, AES_KEY, APP_ID)


def query_string(params: dict[str, str]) -> str:
    from urllib.parse import urlencode

    return urlencode(params)


def run(coro: Any) -> Any:
    return asyncio.run(coro)

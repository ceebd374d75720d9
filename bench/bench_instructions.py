#!/usr/bin/env python3
"""CPU instructions per FAQ request of the whole bot over HTTP, counted by valgrind's callgrind:
a figure that does not move with the machine's load, for comparing two checkouts.

    .venv/bin/python bench/bench_instructions.py                      # this checkout, 1,000 requests
    .venv/bin/python bench/bench_instructions.py --root /tmp/before   # another checkout (git archive)
    .venv/bin/python bench/bench_instructions.py --cpu                # no valgrind: server CPU µs / request

The server is ``python run.py --settings bench/settings.bench.toml`` (the bot as shipped, plain
mode, log level INFO to a file; under valgrind with ``[semantic] enabled = false`` unless
``--semantic``, as the local model would take ~10 s per new text there) under ``valgrind --tool=callgrind --instr-atstart=no``. A client in
this process sends, one at a time over one keep-alive connection, every distinct demo-FAQ customer
phrasing (tests/data/utterances.tsv) and then a warm-up of the Zipf stream bench_werobot.py sends;
only then are the counters switched on (``callgrind_control -i on``) and zeroed, ``--requests``
signed plaintext POSTs of the same stream (each with its own MsgId) are sent, and the counters are
dumped. Every reply must be a text passive reply. The figure is the instructions of the whole
server process (event loop, routing thread, aiohttp) divided by the requests; the dump
(``--keep DIR``) can be read with ``callgrind_annotate``.
"""
from __future__ import annotations

import argparse
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BENCH_DIR, ROOT, free_port, query_string, report_header, signer, wait_http

from bench_http import paraphrase_stream
from bench_werobot import labelled_phrasings


def requests_for(texts: list[str], start: int) -> list[tuple[str, bytes]]:
    from core.operations.wechat_client import text_xml

    sign = signer("plain")
    out = []
    for i, text in enumerate(texts, start):
        request = sign.sign(text_xml(text, from_user=f"o_ins_{i % 5000:05d}"))
        out.append((f"/wechat?{query_string(request.params)}", request.body))
    return out


def send_all(port: int, requests: list[tuple[str, bytes]]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    for path, body in requests:
        conn.request("POST", path, body=body, headers={"Content-Type": "text/xml"})
        response = conn.getresponse()
        reply = response.read().decode("utf-8")
        if response.status != 200 or not reply.startswith("<xml>") or "<MsgType><![CDATA[text]]>" not in reply:
            raise SystemExit(f"not a text passive reply: {response.status} {reply[:200]!r}")
    conn.close()


def user_system(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of process ``pid`` so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def callgrind_control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, stdout=subprocess.DEVNULL)


def total_instructions(path: Path) -> int:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("summary:") or line.startswith("totals:"):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose bot is measured")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--cpu", action="store_true", help="no valgrind: server CPU time per request from /proc")
    parser.add_argument("--semantic", action="store_true",
                        help="keep the local model on under valgrind (slow: ~10 s per new text)")
    parser.add_argument("--keep", type=Path, default=None, help="copy the callgrind dump to this file")
    args = parser.parse_args()
    root = args.root.resolve()
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="skillbot-bench-ins-"))
    settings = root / "bench" / "settings.bench.toml"
    if not args.cpu and not args.semantic:
        # The local model under valgrind takes ~10 s per new text (over the 2 s it is given):
        # lexical routing; in the steady state measured every text's route is kept either way.
        lexical = root / "bench" / ".settings.instructions.toml"
        lexical.write_text(settings.read_text(encoding="utf-8") + "\n[semantic]\nenabled = false\n",
                           encoding="utf-8")
        settings = lexical
    argv = [sys.executable, str(root / "run.py"), "--settings", str(settings),
            "--host", "127.0.0.1", "--port", str(port)]
    out_file = workdir / "callgrind.out"
    if not args.cpu:
        argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out_file}",
                *argv]
    header = report_header("CPU instructions per FAQ request (callgrind)")
    log = open(workdir / "server.log", "ab")
    proc = subprocess.Popen(argv, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 900, proc)
        distinct = [text for text, _ in labelled_phrasings()]
        send_all(port, requests_for(distinct, 0))
        send_all(port, requests_for(paraphrase_stream(args.warmup, 1), len(distinct)))
        timed = requests_for(paraphrase_stream(args.requests, 2), len(distinct) + args.warmup)
        if args.cpu:
            before = user_system(proc.pid)
            send_all(port, timed)
            after = user_system(proc.pid)
            user, system = (b - a for a, b in zip(before, after))
            figure = (f"{(user + system) / args.requests * 1e6:.0f} µs of server CPU per request "
                      f"({user / args.requests * 1e6:.0f} user, {system / args.requests * 1e6:.0f} system; "
                      "one request at a time)")
        else:
            callgrind_control(proc.pid, "-i", "on")
            callgrind_control(proc.pid, "-z")
            send_all(port, timed)
            callgrind_control(proc.pid, "-d")
            time.sleep(1.0)
            dumps = sorted(workdir.glob("callgrind.out*"))
            total = sum(total_instructions(d) for d in dumps if d.stat().st_size)
            figure = f"{total / args.requests / 1e6:.3f} M instructions per request"
            if args.keep:
                newest = max(dumps, key=lambda d: d.stat().st_mtime)
                shutil.copy(newest, args.keep)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
        (root / "bench" / ".settings.instructions.toml").unlink(missing_ok=True)
    print("\n".join(header + [f"- Checkout: `{root}`; {args.requests} timed requests after "
                              f"{len(distinct)} distinct + {args.warmup} warm-up", f"- **{figure}**"]))


if __name__ == "__main__":
    os.chdir(ROOT)
    main()

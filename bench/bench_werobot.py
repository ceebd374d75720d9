#!/usr/bin/env python3
"""HTTP throughput on the FAQ path: Skillbot vs WeRoBot answering from a keyword table, same run.

    .venv/bin/python bench/bench_werobot.py          # 2 rounds x 7 targets x (2 s warm-up + 10 s), ~3-4 min
    .venv/bin/python bench/bench_werobot.py --rounds 1 --targets skillbot,werobot --before /tmp/before
        # also ``skillbot_before``: the bot of another checkout (a ``git archive`` of an older
        # commit), alternating with this one in the same run

Targets, measured in the same run, alternating, at the same concurrency, one worker process each:

- ``skillbot``: the whole bot as shipped (``python run.py --settings bench/settings.bench.toml``:
  default settings, the local embedding model on, plain mode, log level INFO to a file)
- ``werobot``: WeRoBot (PyPI ``werobot``) answering from a keyword table built from the same FAQ
  file, started the way its deployment guide says (``robot.run()``, whose ``server="auto"`` picks
  waitress when installed: one process, waitress's 4 threads), sessions off (the keyword handler
  needs none; off is WeRoBot's fastest setting, so the ratio is the strictest one)
- ``werobot_session``: the same WeRoBot bot with WeRoBot's default session storage (SQLite, a
  write and commit per message), as a user who leaves the defaults gets it
- ``werobot_session_mem``: the same, its SQLite file on tmpfs (/dev/shm): what sessions cost
  without the disk (a commit per message waits for the disk in ``werobot_session``, which
  depends on the machine's storage)
- ``werobot_gunicorn``: the same bot under ``robot.run(server="gunicorn")``: gunicorn's default,
  one sync worker (no keep-alive: a connection per request)
- ``werobot_defaults``: the same bot as ``pip install werobot`` alone leaves it: ``robot.run()``'s
  ``server="auto"`` finds none of waitress, paste, twisted, cherrypy, so bottle falls back to
  the standard library's wsgiref (one thread); default sessions (SQLite)
- ``bare``: bench/serve_bare.py, an aiohttp handler returning a fixed reply, the ceiling

Messages: the demo FAQ's customer phrasings (the ``faq:`` lines of tests/data/utterances.tsv),
drawn with Zipf (s = 1) repetition as in bench_http.py's ``paraphrase`` target, sent as
individually signed plaintext-mode POSTs, each with its own MsgId (WeChat's retry identity),
prepared before each timed run. The report sets skillbot against every WeRoBot configuration
and issue 14's aim (at least 1.5x WeRoBot's throughput), the fastest WeRoBot first, in two
measures: requests per second, and requests per CPU-second of the server's own processes
(user + system time from /proc, gunicorn's worker included), which is what one free core would
serve and holds steadier than req/s when other work shares the cores.

Before timing, every distinct phrasing is sent once to each server over HTTP and must come back
as a text passive reply (not an error, not "success"); the report gives how many of them each
server answered with the labelled FAQ entry's answer. Each timed run must answer every request
with a passive reply (wrk_post.lua / loadgen.py count them).

WeRoBot is never a dependency of the project and none of its code is in this repository: this
script creates bench/.venv-werobot (git-ignored) and installs ``werobot`` and the two servers
into it from the package index, then runs itself there as the WeRoBot server
(``bench_werobot.py serve-werobot ...``, which imports only the standard library and WeRoBot).
The load generator is wrk (installed with apt-get when missing and run as root), else
bench/loadgen.py.
"""
from __future__ import annotations

import os
import re
import sys
import tomllib
from pathlib import Path

#: The packages of the WeRoBot side, pinned (the versions measured in docs/benchmarks.md).
WEROBOT_PACKAGES = ["werobot==1.13.1", "waitress==3.0.2", "gunicorn==27.0.1"]
#: The FAQ entry whose answer the keyword bot gives when no keyword matches (how to reach a person).
FALLBACK_ENTRY = "contact_service"


def entry_answers(faq_path: Path) -> tuple[dict, dict[str, str]]:
    """The FAQ file and each entry's answer with its {{ variables }} filled in."""
    faq = tomllib.loads(faq_path.read_text(encoding="utf-8"))
    variables = {k: str(v) for k, v in faq.get("variables", {}).items()}

    def fill(template: str) -> str:
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: variables.get(m.group(1), m.group(0)), template).strip()

    return faq, {entry["id"]: fill(entry["answer"]) for entry in faq.get("entry", [])}


def keyword_table(faq_path: Path) -> tuple[dict[str, str], list[str], str]:
    """What a WeRoBot user would build from the FAQ file: keyword -> answer (the entries' keywords;
    a keyword two entries share goes to the first), the keywords longest first, and the answer
    when none matches."""
    faq, answers = entry_answers(faq_path)
    table: dict[str, str] = {}
    for entry in faq.get("entry", []):
        for keyword in entry.get("keywords", []):
            table.setdefault(keyword.lower(), answers[entry["id"]])
    return table, sorted(table, key=len, reverse=True), answers.get(FALLBACK_ENTRY, "")


def serve_werobot(argv: list[str]) -> None:
    """The WeRoBot bot (run by bench/.venv-werobot's Python): standard library and WeRoBot only."""
    import argparse

    import werobot

    parser = argparse.ArgumentParser(prog="bench_werobot.py serve-werobot")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--faq", type=Path, required=True)
    parser.add_argument("--server", default="auto", help="WeRoBot's robot.run(server=...) (default auto)")
    parser.add_argument("--session", action="store_true", help="WeRoBot's default session storage (SQLite)")
    args = parser.parse_args(argv)

    table, keywords, fallback = keyword_table(args.faq)
    options = {} if args.session else {"SESSION_STORAGE": False}
    robot = werobot.WeRoBot(token=args.token, **options)

    @robot.text
    def faq_answer(message):
        text = message.content.lower()
        for keyword in keywords:
            if keyword in text:
                return table[keyword]
        return fallback

    robot.run(server=args.server, host="127.0.0.1", port=args.port, enable_pretty_logging=False)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "serve-werobot":
    serve_werobot(sys.argv[2:])
    sys.exit(0)

# ---- the benchmark (the project's virtualenv) --------------------------------------------------

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import urllib.request  # noqa: E402

from common import add_load_arguments, BENCH_DIR, ROOT, TOKEN, Server, bare_server, bot_server, free_port, md_table, query_string, report_header, signer  # noqa: E402,E501

from bench_http import load, make_requests  # noqa: E402

WEROBOT_VENV = BENCH_DIR / ".venv-werobot"
FAQ_FILE = ROOT / "plugins" / "faq" / "data" / "faq.toml"
TARGETS = ["bare", "skillbot", "werobot", "werobot_session", "werobot_session_mem", "werobot_gunicorn",
           "werobot_defaults"]
#: How each side's passive reply begins (WeRoBot's reply template starts with a newline and an
#: indent); a 200 whose body begins so counts as answered. verify() checks it before timing.
REPLY_PREFIX = {"skillbot": "<xml>", "werobot": "\n    <xml>"}
#: target -> (robot.run's server, WeRoBot's default sessions on, their SQLite file in memory (tmpfs))
WEROBOT_SERVERS = {"werobot": ("auto", False, False), "werobot_session": ("auto", True, False),
                   "werobot_session_mem": ("auto", True, True),
                   "werobot_gunicorn": ("gunicorn", False, False), "werobot_defaults": ("wsgiref", True, False)}


def labelled_phrasings() -> list[tuple[str, str]]:
    """(customer phrasing, FAQ entry id) of tests/data/utterances.tsv's faq lines, in file order."""
    out = []
    for line in (ROOT / "tests" / "data" / "utterances.tsv").read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[1].startswith("faq:"):
            out.append((parts[0], parts[1][4:]))
    return out


def ensure_wrk() -> str:
    """"wrk" when installed (installed here with apt-get when missing and allowed), else "loadgen"."""
    if shutil.which("wrk"):
        return "wrk"
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        print("installing wrk (apt-get install wrk)", file=sys.stderr)
        for argv in (["apt-get", "install", "-y", "-q", "wrk"], ["apt-get", "update", "-q"],
                     ["apt-get", "install", "-y", "-q", "wrk"]):
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            if shutil.which("wrk"):
                return "wrk"
    return "loadgen"


def werobot_python() -> Path:
    """bench/.venv-werobot's Python, the venv created and WeRoBot installed on first use."""
    python = WEROBOT_VENV / "bin" / "python"
    probe = [str(python), "-c", "import werobot, waitress, gunicorn"]
    if python.exists() and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return python
    print(f"creating {WEROBOT_VENV.relative_to(ROOT)} with {' '.join(WEROBOT_PACKAGES)}", file=sys.stderr)
    base = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base, "-m", "venv", str(WEROBOT_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    *WEROBOT_PACKAGES], check=True)
    subprocess.run(probe, check=True)
    return python


def werobot_versions(python: Path) -> str:
    code = ("import importlib.metadata as m; print(', '.join(f'{p} {m.version(p)}' "
            "for p in ('werobot', 'bottle', 'waitress', 'gunicorn', 'xmltodict')))")
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def werobot_server(python: Path, port: int, target: str, workdir: Path, memdir: Path) -> Server:
    """The WeRoBot bot of a target; it runs in its own folder, where WeRoBot's default session
    storage puts its SQLite file (werobot_session.sqlite3): on disk, or on tmpfs for ``_mem``."""
    server, session, in_memory = WEROBOT_SERVERS[target]
    argv = [str(python), str(Path(__file__).resolve()), "serve-werobot", "--port", str(port),
            "--token", TOKEN, "--faq", str(FAQ_FILE), "--server", server]
    if session:
        argv.append("--session")
    cwd = (memdir if in_memory else workdir) / target
    cwd.mkdir(parents=True, exist_ok=True)
    # Any HTTP answer means listening: an unsigned GET gets WeRoBot's 403 page.
    return Server(argv, f"http://127.0.0.1:{port}/wechat", workdir / f"{target}.log", cwd=cwd)


def post(port: int, text: str, user: str) -> tuple[str, dict | None]:
    """One signed plaintext POST: the reply body and its fields (None for an empty body or "success")."""
    from core.operations.wechat_client import text_xml

    sign = signer("plain")
    request = sign.sign(text_xml(text, from_user=user))
    url = f"http://127.0.0.1:{port}/wechat?{query_string(request.params)}"
    with urllib.request.urlopen(urllib.request.Request(url, data=request.body, method="POST",
                                                       headers={"Content-Type": "text/xml"}), timeout=30) as r:
        body = r.read().decode("utf-8")
    return body, sign.open_reply(body)


def verify(target: str, port: int, expected: dict[str, str], prefix: str) -> tuple[int, int]:
    """Every distinct phrasing once over HTTP: (answered with the labelled entry's answer, phrasings).
    Stops the benchmark when a reply is not a text passive reply."""
    phrasings = labelled_phrasings()
    right = 0
    for i, (text, entry) in enumerate(phrasings):
        body, fields = post(port, text, f"o_verify_{target}_{i:04d}")
        if not fields or fields.get("MsgType") != "text" or not str(fields.get("Content") or "").strip():
            raise SystemExit(f"{target} on port {port}: {text!r} got no text reply: {body!r}")
        if not body.startswith(prefix):
            raise SystemExit(f"{target} on port {port}: the reply does not begin with {prefix!r}: {body[:40]!r}")
        right += str(fields["Content"]).strip() == expected[entry]
    return right, len(phrasings)


def expected_answers(skillbot_port: int | None) -> dict[str, dict[str, str]]:
    """Each entry's answer as each side gives it: WeRoBot's from the FAQ file (variables filled in),
    Skillbot's from its answer to the entry's own first question over HTTP."""
    faq, werobot_side = entry_answers(FAQ_FILE)
    skillbot_side: dict[str, str] = {}
    if skillbot_port is not None:
        for i, entry in enumerate(faq["entry"]):
            _, fields = post(skillbot_port, entry["questions"][0], f"o_expect_{i:04d}")
            skillbot_side[entry["id"]] = str((fields or {}).get("Content") or "").strip()
    return {"skillbot": skillbot_side, "werobot": werobot_side}


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a process and every process under it (gunicorn's
    worker is its master's child), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the command: state ppid ... utime (14th field) stime (15th)
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += stats.get(current, (0, 0.0))[1]
        todo.extend(child for child, (parent, _) in stats.items() if parent == current)
    return total


def werobot_failures(log: Path) -> tuple[int, str]:
    """How often WeRoBot logged "Catch an exception" (its get_reply then answers with an empty
    body), and the last exception line of its log."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return 0, ""
    errors = re.findall(r"^[\w.]+(?:Error|Exception)\b.*$", text, re.MULTILINE)
    return text.count("Catch an exception"), (errors[-1][:160] if errors else "")


def main() -> None:
    parser = argparse.ArgumentParser(description="HTTP throughput on the FAQ path: Skillbot vs WeRoBot")
    add_load_arguments(parser, "load generator (default: wrk, installed with apt-get if missing, else bench/loadgen.py)")
    parser.add_argument("--targets", default=",".join(TARGETS),
                        help=f"comma-separated subset of {','.join(TARGETS)} (default all)")
    parser.add_argument("--before", type=Path, default=None,
                        help="another checkout (e.g. `git archive COMMIT | tar -x -C DIR`): its bot is the "
                             "extra target skillbot_before, measured alternately in the same run")
    args = parser.parse_args()
    tool = ensure_wrk() if args.tool == "auto" else args.tool
    targets = [t for t in args.targets.split(",") if t]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    if args.before is not None:
        at = targets.index("skillbot") + 1 if "skillbot" in targets else 0
        targets.insert(at, "skillbot_before")
    python = werobot_python() if any(t.startswith("werobot") for t in targets) else None
    header = report_header("HTTP throughput on the FAQ path: Skillbot vs WeRoBot (keyword table)")  # load at start

    workdir = Path(tempfile.mkdtemp(prefix="skillbot-bench-werobot-"))
    shm = Path("/dev/shm")
    memdir = Path(tempfile.mkdtemp(prefix="skillbot-bench-werobot-", dir=shm if shm.is_dir() else None))
    ports = {t: free_port() for t in targets}
    servers: dict[str, Server] = {}
    for target in targets:
        if target == "bare":
            servers[target] = bare_server(ports[target])
        elif target == "skillbot":
            servers[target] = bot_server(BENCH_DIR / "settings.bench.toml", ports[target], workdir / "skillbot.log")
        elif target == "skillbot_before":
            root = args.before.resolve()
            servers[target] = bot_server(root / "bench" / "settings.bench.toml", ports[target],
                                         workdir / "skillbot_before.log", root=root)
        else:
            servers[target] = werobot_server(python, ports[target], target, workdir, memdir)
    results: dict[str, list[dict]] = {t: [] for t in targets}
    checks: dict[str, tuple[int, int]] = {}
    counter = 0
    estimate = {t: 3000.0 for t in targets}
    try:
        for server in servers.values():
            server.start()
        expected = expected_answers(ports.get("skillbot"))
        for target in targets:
            if target != "bare":
                side = "skillbot" if target.startswith("skillbot") else "werobot"
                checks[target] = verify(target, ports[target], expected[side], REPLY_PREFIX[side])
        for round_no in range(args.rounds):
            for target in targets:
                port = ports[target]
                prefix = REPLY_PREFIX["werobot" if target.startswith("werobot") else "skillbot"]
                warm_file, timed_file = workdir / "warm.txt", workdir / "timed.txt"
                n = min(int(max(estimate[target], 1000) * 3 * args.warmup) + 1000, 20000)
                make_requests(warm_file, "paraphrase", "plain", n, counter)
                counter += n
                warm = load(tool, port, warm_file, args.connections, args.warmup, args.threads, prefix)
                estimate[target] = max(estimate[target] if round_no else 0, warm["rps"])
                n = int(max(estimate[target], 1000) * 3 * args.duration) + 2000
                if target == "bare":
                    n = min(n, 20000)  # it does not read the messages: a smaller set loops
                make_requests(timed_file, "paraphrase", "plain", n, counter)
                counter += n
                cpu_before = cpu_seconds(servers[target].pid)
                result = load(tool, port, timed_file, args.connections, args.duration, args.threads, prefix)
                result["cpu_s"] = cpu_seconds(servers[target].pid) - cpu_before
                result["cpu_us"] = result["cpu_s"] / max(result["requests"], 1) * 1e6
                result["load"] = os.getloadavg()[0]
                estimate[target] = max(estimate[target], result["rps"])
                results[target].append(result)
                print(f"round {round_no + 1} {target:16s}: {result['rps']:8.0f} req/s  p50 "
                      f"{result['p50_us'] / 1000:6.2f} ms  p99 {result['p99_us'] / 1000:6.2f} ms  answered "
                      f"{result['answered']}/{result['requests']}  server CPU {result['cpu_us']:.0f} us/req  "
                      f"load {result['load']:.2f}", file=sys.stderr)
    finally:
        for server in servers.values():
            server.stop()
        failures = {t: werobot_failures(workdir / f"{t}.log") for t in targets if t.startswith("werobot")}
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(memdir, ignore_errors=True)

    def med(target: str, key: str) -> float:
        return statistics.median(r[key] for r in results[target])

    lines = header
    if args.before is not None:
        lines.append(f"- skillbot_before: the bot of the checkout `{args.before}` (same settings file, same "
                     f"messages), alternating with this checkout's")
    if python is not None:
        lines.append(f"- WeRoBot side ({WEROBOT_VENV.relative_to(ROOT)}): {werobot_versions(python)}")
    lines += [f"- Load: {tool} ({'wrk -t%d' % args.threads if tool == 'wrk' else 'bench/loadgen.py'}), "
              f"{args.connections} connections, {args.warmup:g} s warm-up + {args.duration:g} s per run, "
              f"{args.rounds} round(s) alternating {', '.join(targets)}; servers and load generator in "
              "separate processes, nothing pinned; figures are medians over rounds",
              "- Messages: the demo FAQ's customer phrasings (tests/data/utterances.tsv, "
              f"{len(labelled_phrasings())} distinct) with Zipf (s = 1) repetition, signed plaintext POSTs, "
              "each with its own MsgId", ""]
    rows = []
    for target in targets:
        rs = results[target]
        errors = sum(r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"] + r["other"]
                     + r["success_only"] for r in rs)
        check = checks.get(target)
        rows.append([target, f"{med(target, 'rps'):.0f}", f"{med(target, 'cpu_us'):.0f}",
                     f"{1e6 / med(target, 'cpu_us'):.0f}", f"{med(target, 'p50_us') / 1000:.2f}",
                     f"{med(target, 'p99_us') / 1000:.2f}",
                     f"{sum(r['answered'] for r in rs)}/{sum(r['requests'] for r in rs)}", errors,
                     f"{check[0]}/{check[1]} ({check[0] / check[1]:.0%})" if check else "-",
                     "/".join(f"{r['load']:.1f}" for r in rs)])
    lines += md_table(["target", "req/s", "server CPU µs / req", "req per CPU-second", "p50 ms", "p99 ms",
                       "answered", "errors/other",
                       "right FAQ entry (distinct phrasings)", "load avg (1 min) per round"], rows)
    lines.append("")
    werobots = [t for t in targets if t.startswith("werobot")]
    ratios = []
    skillbots = [t for t in ("skillbot", "skillbot_before") if t in targets]
    # Every WeRoBot configuration against the aim, fastest first: the first row is the strictest.
    # Two measures: requests per second (the servers shared the machine with the load generator
    # and whatever else ran), and requests per CPU-second of the server's own processes (what
    # one free core would serve; steadier when other work competes for the cores).
    pairs = [(s_, t, "at least 1.5x") for s_ in skillbots
             for t in sorted(werobots, key=lambda t: med(t, "rps"), reverse=True)]
    if len(skillbots) == 2:
        pairs.insert(0, ("skillbot", "skillbot_before", "-"))
    for mine, t, aim in pairs:
        for key, label, better in (("rps", "req/s", True), ("cpu_us", "req per CPU-second", False)):
            r = med(mine, key) / med(t, key) if better else med(t, key) / med(mine, key)
            per_round = ", ".join(
                f"{(s_[key] / w[key]) if better else (w[key] / s_[key]):.2f}"
                for s_, w in zip(results[mine], results[t]))
            ratios.append([f"{mine} / {t}, {label}", f"{r:.2f}x (per round {per_round})", aim,
                           ("met" if r >= 1.5 else "NOT met") if aim != "-" else ""])
    if "skillbot" in targets and "bare" in targets:
        ratios.append(["skillbot / bare aiohttp handler throughput",
                       f"{med('skillbot', 'rps') / med('bare', 'rps'):.1%}", "-", ""])
    if ratios:
        lines += md_table(["ratio (same run)", "measured", "aim", ""], ratios)
        lines.append("")
    if tool == "loadgen":
        lines.append("- WARNING: bench/loadgen.py is a Python process itself and caps the faster servers' "
                     "figures; install wrk for the reference figures")
    for target, (count, last) in failures.items():
        if count:
            lines.append(f"- {target}: WeRoBot caught an exception in its handler chain {count} time(s) and "
                         f"answered those requests with an empty body (last: {last})")
    for target in targets:
        if target != "bare" and any(r["reused"] for r in results[target]):
            lines.append(f"- WARNING: {target} ran out of distinct messages; rerun with a longer warm-up")
    lines.append("Per round: " + "; ".join(
        f"{t} " + "/".join(f"{r['rps']:.0f}" for r in results[t]) for t in targets) + " req/s")
    print("\n".join(lines))


if __name__ == "__main__":
    os.chdir(ROOT)
    main()

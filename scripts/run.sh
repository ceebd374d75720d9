#!/usr/bin/env bash
# Start Skillbot with ./settings.toml (extra arguments go to run.py, e.g. --port 9000 or chat).
source "$(dirname "$0")/_venv.sh"
# Redis only when the settings ask for it: say so before the bot starts without it.
.venv/bin/python - "$@" <<'PY' || true
import socket, sys
from urllib.parse import urlparse

from core.settings import PROJECT_ROOT, load_settings

args = sys.argv[1:]
path = str(PROJECT_ROOT / "settings.toml")
for i, arg in enumerate(args):
    if arg == "--settings" and i + 1 < len(args):
        path = args[i + 1]
    elif arg.startswith("--settings="):
        path = arg.split("=", 1)[1]
try:
    state = load_settings(path).state
except Exception:  # run.py itself reports a broken settings file
    sys.exit(0)
if state.backend == "redis":
    url = urlparse(state.redis_url)
    host, port = url.hostname or "127.0.0.1", url.port or 6379
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        print(f"skillbot: MISSING: Redis at {host}:{port} ({exc.strerror or exc}): {path} sets "
              f'state.backend = "redis". Start it (Debian/Ubuntu: sudo apt-get install redis-server) '
              f'or set state.backend = "memory" for one process. Starting anyway: the bot answers from '
              f"local memory until Redis is reachable.", file=sys.stderr)
PY
exec .venv/bin/python run.py "$@"

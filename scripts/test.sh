#!/usr/bin/env bash
# Run the whole test suite (extra arguments go to pytest).
source "$(dirname "$0")/_venv.sh"
if [ -z "${REDIS_URL:-}" ] && ! command -v redis-server >/dev/null 2>&1; then
  echo "skillbot: note: no redis-server and no REDIS_URL: the Redis tests will be skipped" \
    "(Debian/Ubuntu: sudo apt-get install redis-server)" >&2
fi
exec .venv/bin/python -m pytest "$@"

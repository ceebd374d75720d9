# Sourced by scripts/run.sh and scripts/test.sh: make sure .venv exists with the project's
# dependencies from pyproject.toml, re-installing only when pyproject.toml changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "Skillbot needs Python 3.11 or newer (found $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "Creating virtual environment in .venv ..." >&2
  "$PYTHON" -m venv .venv
fi
STAMP=.venv/.skillbot-installed
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1)-${SKILLBOT_EXTRAS:-test}"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "Installing dependencies into .venv ..." >&2
  .venv/bin/python -m pip install --quiet --upgrade pip >&2
  .venv/bin/python -m pip install --quiet -e ".[${SKILLBOT_EXTRAS:-test}]" >&2
  echo "$WANT" > "$STAMP"
fi

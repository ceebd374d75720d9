# Sourced by scripts/run.sh and scripts/test.sh: make sure .venv exists with the project's
# dependencies from pyproject.toml, re-installing only when pyproject.toml changed. Says what it
# does while it does it (a line per step and per package) and, when something is missing, what
# and how to get it. SKILLBOT_QUIET_INSTALL=1 keeps only the step lines.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"

_say() { echo "skillbot: $*" >&2; }
_missing() { echo "skillbot: MISSING: $*" >&2; }

# ---- Python 3.11+ with venv -------------------------------------------------------------------
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  _missing "$PYTHON (Python 3.11 or newer). Debian/Ubuntu: sudo apt-get install python3 python3-venv;" \
    "or point PYTHON at one: PYTHON=/usr/bin/python3.12 $0"
  exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  _missing "Python 3.11 or newer: $PYTHON is $("$PYTHON" --version 2>&1)." \
    "Install a newer one (Debian 12 and Ubuntu 24.04 ship 3.11/3.12) and run again with PYTHON=/path/to/python3.11"
  exit 1
fi

STAMP=.venv/.skillbot-installed
LOG=.venv/install.log
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1)-${SKILLBOT_EXTRAS:-test}"
if [ -x .venv/bin/python ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  return 0
fi

_started=$SECONDS
if [ ! -x .venv/bin/python ]; then
  _say "[1/3] creating the virtual environment .venv with $("$PYTHON" --version 2>&1) ..."
  if ! venv_error="$("$PYTHON" -m venv .venv 2>&1)"; then
    rm -rf .venv
    echo "$venv_error" >&2
    version="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    _missing "Python's venv module (with ensurepip). Debian/Ubuntu: sudo apt-get install python${version}-venv"
    exit 1
  fi
else
  _say "[1/3] .venv exists; pyproject.toml changed since the last install"
fi

# pip's output goes to .venv/install.log; the terminal gets one line per package.
_pip() {
  local status=0
  : > "$LOG"
  .venv/bin/python -m pip "$@" --progress-bar off >>"$LOG" 2>&1 &
  local pid=$! shown=0
  # A background job ignores Ctrl-C in a script: stop pip with the script.
  trap "kill $pid 2>/dev/null; echo 'skillbot: install interrupted' >&2; exit 130" INT TERM
  # Follow the log while pip runs: Collecting / Downloading / Building / Installing lines.
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    _show_new_lines
  done
  wait "$pid" || status=$?
  trap - INT TERM
  _show_new_lines
  return "$status"
}
_show_new_lines() {
  local total
  total=$(wc -l < "$LOG")
  if [ "$total" -gt "${shown:-0}" ]; then
    if [ "${SKILLBOT_QUIET_INSTALL:-0}" != 1 ]; then
      sed -n "$((shown + 1)),${total}p" "$LOG" \
        | grep -E '^(Collecting|  Downloading|Building wheel|  Building wheel|Installing collected|Successfully installed|ERROR)' \
        | sed -e 's/^ *//' -e 's/ (from .*)$//' -e 's/^/    /' -e 's/\(Successfully installed\).*/\1/' >&2 || true
    fi
    shown=$total
  fi
}

# What a failed install was missing, from pip's own words.
_diagnose_pip() {
  if grep -qiE "error: (command|unable to execute) '?[^ ]*(gcc|cc|clang)|gcc: (error|fatal)|No such file or directory: '?(cc|gcc)|error: command '[^']*cc' failed|could not find a C compiler|Failed building wheel|Python\.h: No such file" "$LOG"; then
    local pkg
    pkg="$(grep -oE "(Failed building wheel for|Building wheel for) [A-Za-z0-9_.-]+" "$LOG" | tail -1 | awk '{print $NF}')"
    _missing "a C compiler and Python's headers: ${pkg:-a dependency} has no prebuilt wheel for" \
      "$(.venv/bin/python -c 'import platform, sys; print(f"Python {sys.version_info[0]}.{sys.version_info[1]} on {platform.machine()}")')" \
      "and must be compiled. Debian/Ubuntu: sudo apt-get install build-essential python3-dev; then run this again"
  elif grep -qiE "No matching distribution|Could not find a version|Max retries exceeded|Temporary failure in name resolution|SSLError|ProxyError" "$LOG"; then
    _missing "access to the package index (PyPI): pip could not download the dependencies." \
      "Check the network, a proxy (HTTPS_PROXY) or a mirror (PIP_INDEX_URL)"
  fi
  _say "the last lines of $LOG:"
  tail -15 "$LOG" | sed 's/^/    /' >&2
}

_say "[2/3] updating pip inside .venv ..."
if ! _pip install --upgrade pip; then
  _diagnose_pip
  exit 1
fi
extras="${SKILLBOT_EXTRAS:-test}"
_say "[3/3] installing Skillbot's dependencies (.[${extras}]) from pyproject.toml; the first time takes a minute or two ..."
command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 \
  || _say "note: no C compiler here; fine while every dependency has a prebuilt wheel for this machine"
if ! _pip install --prefer-binary -e ".[${extras}]"; then
  _diagnose_pip
  exit 1
fi
echo "$WANT" > "$STAMP"
_say "ready: .venv installed in $((SECONDS - _started)) s (log: $LOG)"
unset -f _pip _show_new_lines _diagnose_pip

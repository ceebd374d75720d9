#!/usr/bin/env bash
# Run the whole test suite (extra arguments go to pytest).
source "$(dirname "$0")/_venv.sh"
exec .venv/bin/python -m pytest "$@"

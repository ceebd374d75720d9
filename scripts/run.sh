#!/usr/bin/env bash
# Start Skillbot with ./settings.toml (extra arguments go to run.py, e.g. --port 9000 or chat).
source "$(dirname "$0")/_venv.sh"
exec .venv/bin/python run.py "$@"

#!/usr/bin/env bash
# Run every benchmark, one after the other, and keep their markdown reports in one file.
#
#   bench/run_all.sh                     # report in bench/results-<date>.md (30-50 minutes, half of it bench_knowledge.py)
#   bench/run_all.sh /tmp/figures.md     # report elsewhere
#
# The soak test is separate (several minutes of load): .venv/bin/python bench/soak.py --minutes 3
# Run on a quiet machine: the figures are ratios measured within each run, but noise from other
# work on the same cores still widens them. Every benchmark talks to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
OUT="${1:-bench/results-$(date +%Y%m%d-%H%M%S).md}"
: > "$OUT"
run() {
    echo "== $*" >&2
    "$PY" "$@" | tee -a "$OUT"
    echo | tee -a "$OUT"
}
run bench/bench_http.py            # ~3 min: bare handler vs whole bot, plain/safe/event/paraphrase
run bench/bench_werobot.py         # ~5 min: Skillbot vs WeRoBot (keyword table) vs bare handler; makes bench/.venv-werobot
run bench/bench_pipeline.py        # ~20 s: per-stage timing in-process
run bench/bench_window.py          # ~3 min: the 5-second window, 100 and 1,000 users
run bench/bench_memory.py          # ~4 min: memory per 10,000 conversations (Redis rows need redis-server)
run bench/bench_redis.py           # ~3 min: Redis worker (and --workers 2) vs memory worker; needs redis-server
for extra in bench/bench_filter.py bench/bench_router.py bench/bench_long_messages.py bench/bench_understanding.py bench/bench_knowledge.py; do
    if [ -f "$extra" ]; then run "$extra"; fi
done
echo "report: $OUT" >&2

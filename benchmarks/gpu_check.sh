#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): one command, a few minutes on one H200.
#   benchmarks/gpu_check.sh          on the GPU machine (the device tool: run it with carry [".whl"] and a timeout
#                                    that leaves a rerun's time; each section's results are written as it ends, so a
#                                    run stopped at its limit keeps them); results to $OUT
#   benchmarks/gpu_check.sh --cpu    the same sections at tiny sizes on CPU, with PY (default .venv/bin/python)
# Before a device session: scripts/gpu-rehearsal.sh runs the CPU mode in the GPU image's Python environment.
# The GPU image has torch, transformers and accelerate but not trl, datasets or math-verify: scripts/gpu-wheels.sh
# downloads their pure-Python wheels into .whl/ (git-ignored), installed here into /tmp/site.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--cpu" ]; then
    shift
    exec "${PY:-.venv/bin/python}" benchmarks/gpu_check.py --mode cpu "$@"
fi
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=8
exec python3 benchmarks/gpu_check.py --mode gpu "$@"

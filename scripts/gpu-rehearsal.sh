#!/usr/bin/env bash
# Rehearse the GPU check in the GPU image's Python environment, on CPU, before a device session spends its minutes:
# Python 3.12 with the image's versions of transformers and accelerate (.library/device/KINDS.md) and the other
# packages prift imports that the image has, no trl/datasets/math-verify except the wheels scripts/gpu-wheels.sh
# puts in .whl/, installed as benchmarks/gpu_check.sh installs them there. Then every section of
# benchmarks/gpu_check.py runs in its CPU mode. A missing wheel or an import the image cannot satisfy fails here.
#   scripts/gpu-rehearsal.sh            (needs the package registry and pyenv's Python 3.12; ~3 min the first time)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-/tmp/prift-gpu-rehearsal}
PY312=${PY312:-$(PYENV_VERSION=3.12.1 pyenv which python3.12 2>/dev/null || command -v python3.12)}
[ -d .whl ] || bash scripts/gpu-wheels.sh
if [ ! -x "$VENV/bin/python" ]; then
    "$PY312" -m venv "$VENV"
    "$VENV/bin/pip" install -q "torch==$(.venv/bin/python -c 'import torch; print(torch.__version__.split("+")[0])')"
    "$VENV/bin/pip" install -q transformers==5.17.0 accelerate==1.15.0 pyyaml pandas pyarrow xxhash safetensors \
        sympy fsspec aiohttp requests tqdm jinja2 psutil regex rich
fi
rm -rf "$VENV/site"
"$VENV/bin/python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$VENV/site" .whl/*.whl
PYTHONPATH="$VENV/site:$PWD" "$VENV/bin/python" benchmarks/gpu_check.py --mode cpu --out "$VENV/out" \
    --work "$VENV/work"
echo "rehearsal passed: $VENV/out/gpu_check_cpu.md"

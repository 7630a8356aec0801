#!/usr/bin/env bash
# The pure-Python wheels benchmarks/gpu_check.sh needs on the GPU machine (Python 3.12 there; it has torch,
# transformers, accelerate, pandas, pyarrow, sympy, xxhash but not these), into .whl/ (git-ignored), the versions of
# prift's own environment. Run once here, in the repository root; the device tool then carries .whl.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PY=${PY:-.venv/bin/python}
ver() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
mkdir -p .whl
for pkg in trl datasets dill multiprocess math-verify latex2sympy2_extended antlr4-python3-runtime; do
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "$pkg==$(ver "$pkg")"
done
du -sh .whl

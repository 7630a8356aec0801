#!/usr/bin/env bash
# Resolve prift's cluster environment to exact pins: writes environment/cluster.lock.txt (docs/cluster-env.md).
#
#   scripts/lock-cluster-env.sh                              resolve against the index as it is now
#   LOCK_AT=<the lock's "resolved:" time> scripts/lock-cluster-env.sh   the same resolution again (reproduce the lock)
#
# What is resolved: pyproject.toml's dependencies with its extras `dev` and `gpu` (vLLM), leaving out flash-attn,
# which is built from source against the installed torch (environment.yml) - for CPython $PYTHON_VERSION on Linux
# x86_64 (manylinux_2_28, glibc >= 2.28), whatever machine runs this: uv resolves for that target from the index's
# metadata, so nothing is built and no wheel is downloaded (about half a minute; the index must be reachable).
# The resolver is uv's (`uv pip compile`), pinned below and installed into a throwaway venv from PyPI
# (or set UV=/path/to/uv). LOCK_AT is passed as uv's --exclude-newer: packages uploaded after it are ignored.
# Exit status: 0 written, 1 the requirements do not resolve (uv says why), 2 usage/installation problem.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON_VERSION=3.11                       # environment.yml's python=; tests/test_environment.py checks they agree
PLATFORM=x86_64-manylinux_2_28
UV_VERSION=0.13.9
INDEX=https://pypi.org/simple
LEFT_OUT="flash-attn"                     # names of the gpu extra that the lock leaves out (see above)
LOCK=environment/cluster.lock.txt
PY=${PYTHON:-python3}                     # runs this script's helpers (needs >= 3.11: tomllib)
AT=${LOCK_AT:-$(date -u +%Y-%m-%dT%H:%M:%SZ)}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [[ -z "${UV:-}" ]]; then
    "$PY" -m venv "$work/uv-venv" && "$work/uv-venv/bin/pip" install -q "uv==$UV_VERSION" >&2 \
        || { echo "lock-cluster-env: could not install uv==$UV_VERSION from the package index" >&2; exit 2; }
    UV="$work/uv-venv/bin/uv"
fi

# The gpu extra minus what the lock leaves out, as a requirements file (named so in the lock's "via" notes).
"$PY" - "$work/gpu-extra.in" "$LEFT_OUT" <<'EOF' || exit 2
import re, sys, tomllib
out, left_out = sys.argv[1], set(sys.argv[2].split())
gpu = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["gpu"]
keep = [r for r in gpu if re.match(r"[A-Za-z0-9._-]+", r).group(0).lower() not in left_out]
open(out, "w").write("".join(r + "\n" for r in keep))
EOF

start=$(date +%s)
set +e
"$UV" pip compile pyproject.toml "$work/gpu-extra.in" --extra dev \
    --python-version "$PYTHON_VERSION" --python-platform "$PLATFORM" \
    --index-url "$INDEX" --exclude-newer "$AT" --no-config --no-header --quiet \
    --output-file "$work/lock.txt"
rc=$?
set -e
if [[ $rc -ne 0 ]]; then
    echo "lock-cluster-env: no resolution for Python $PYTHON_VERSION ($PLATFORM); $LOCK unchanged" >&2
    exit 1
fi
took=$(( $(date +%s) - start ))

mkdir -p "$(dirname "$LOCK")"
{
    echo "# prift's cluster environment: exact pins, written by scripts/lock-cluster-env.sh (docs/cluster-env.md)."
    echo "# Do not edit: change pyproject.toml and rerun the script; LOCK_AT=<resolved> reproduces this file."
    echo "# Installed by environment.yml (pip -r this file, then -e .[dev]) and, as constraints, by \`make install\`."
    echo "# python: $PYTHON_VERSION"
    echo "# platform: $PLATFORM"
    echo "# resolved: $AT"
    echo "# resolver: uv $UV_VERSION (uv pip compile), index $INDEX"
    echo "# inputs: pyproject.toml dependencies + extra dev + extra gpu without: $LEFT_OUT"
    sed "s|$work/||g" "$work/lock.txt"
} > "$LOCK.tmp"
mv "$LOCK.tmp" "$LOCK"
# environment.yml names the lock's digest, so that a new lock changes the file Snakemake hashes to name the rules'
# conda environment (`--sdm conda`): a changed lock then builds a new environment, never reuses the old one
ENV_YML="$(dirname "$LOCK")/../environment.yml"
digest=$(sha256sum "$LOCK" | cut -d' ' -f1)
sed "s|^# lock sha256: .*|# lock sha256: $digest|" "$ENV_YML" > "$ENV_YML.tmp" && mv "$ENV_YML.tmp" "$ENV_YML"
echo "lock-cluster-env: $(grep -c '==' "$LOCK") pins for Python $PYTHON_VERSION ($PLATFORM) in ${took} s -> $LOCK" >&2
for p in vllm torch transformers trl numpy snakemake snakemake-executor-plugin-slurm; do
    grep -m1 "^$p==" "$LOCK" >&2 || true
done

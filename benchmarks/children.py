"""The benchmarks' child processes: each measurement runs in a fresh interpreter (its peak RSS, ru_maxrss, is its
own) and prints one `RESULT <json>` line, which the parent reads back."""
from __future__ import annotations

import json
import subprocess
import sys


def result(row: dict) -> None:
    """In the child: hand `row` back to the parent."""
    print("RESULT " + json.dumps(row), flush=True)


def run(script: str, args: list[str], what: str) -> dict:
    """In the parent: run `script args` in a fresh interpreter and return its RESULT; a failed child stops the
    benchmark with its stderr's tail, naming `what` failed."""
    p = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
    line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    if p.returncode or not line:
        raise SystemExit(f"{what} failed:\n{p.stderr[-3000:]}")
    return json.loads(line[-1][len("RESULT "):])

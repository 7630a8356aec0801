"""Benchmark of what every DAG job pays before its work: the interpreter, its imports, its config (issue 18, item 5).

The demo's DAG runs ~130 jobs, 43 of which load a model (build-backbone, score, sft, rl, generate); on the 2-core CI
machine their work is often shorter than their start (a demo sampling job: ~4 s of generation), so the start sets
much of `make demo`'s and the DAG tests' time. Each part is timed in a fresh subprocess (wall time, median over
`--rounds`, the parts interleaved):

- python:             the interpreter alone (`python -c pass`)
- torch:              `import torch`
- model verb, full:   prift.generate's and a model's imports (AutoModelForCausalLM, GenerationConfig) with every
                      installed package visible: transformers then imports scikit-learn
- model verb, prift:  the same after prift.startup.prepare("generate"), as `prift generate` starts
- config:             prift.config.load of config/demo.yaml (the schema check every job does), imports included

    .venv/bin/python benchmarks/bench_job_start.py          # writes benchmarks/results/job_start.{json,md}
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
MODEL_IMPORTS = "import prift.generate; from transformers import AutoModelForCausalLM, GenerationConfig"
PARTS = {
    "python": "pass",
    "torch": "import torch",
    "model verb, full": MODEL_IMPORTS,
    "model verb, prift": f"from prift import startup; startup.prepare('generate'); {MODEL_IMPORTS}",
    "config": f"from prift import config as C; C.load({str(ROOT / 'config' / 'demo.yaml')!r})",
}


def time_once(code: str) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    if p.returncode:
        raise SystemExit(f"{code!r} failed:\n{p.stderr[-3000:]}")
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default=str(OUT / "job_start"))
    a = ap.parse_args()
    for code in PARTS.values():   # warm the file cache: every round then reads the same installed files
        time_once(code)
    runs = {name: [] for name in PARTS}
    load = [os.getloadavg()]
    for r in range(a.rounds):
        for name in (list(PARTS) if r % 2 == 0 else list(PARTS)[::-1]):
            runs[name].append(time_once(PARTS[name]))
    load.append(os.getloadavg())
    med = {name: statistics.median(v) for name, v in runs.items()}
    import torch
    import transformers
    out = {"what": "the start of a DAG job (issue 18 item 5)", "date": time.strftime("%Y-%m-%d"),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
                      f"torch {torch.__version__}, transformers {transformers.__version__}",
           "loadavg_start_end": load, "rounds": a.rounds, "median_s": med, "runs_s": runs,
           "saved_per_model_job_s": med["model verb, full"] - med["model verb, prift"]}
    path = Path(a.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(out, indent=1))
    md = ["# The start of a DAG job (benchmarks/bench_job_start.py)", "",
          f"{out['date']}, {out['machine']}, load average {load[0][0]:.1f} → {load[1][0]:.1f}; each part in a fresh "
          f"subprocess, wall time, median of {a.rounds} rounds (min–max in brackets).", "",
          "| part | seconds |", "|---|---:|"]
    for name, v in runs.items():
        md.append(f"| {name} | {med[name]:.2f} ({min(v):.2f}–{max(v):.2f}) |")
    md += ["", f"prift.startup saves **{out['saved_per_model_job_s']:.2f} s** of each model job's start (scikit-learn, "
           f"which transformers imports only for assisted decoding); the demo runs 43 model jobs. What "
           f"remains, {med['model verb, prift']:.1f} s, is torch ({med['torch']:.1f} s with the interpreter) and "
           f"transformers' own imports."]
    path.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()

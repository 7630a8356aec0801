"""The GPU check's CPU mode (benchmarks/gpu_check.sh --cpu): every section of the script a GPU session runs first
(SFT steps of the five methods through both loss paths, the reference pass, bf16 against float32, DAPO steps) runs
here at toy sizes and writes its report, so that the script does not rot between the sessions that are lent a GPU."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_gpu_check_cpu_mode_runs_every_section(tmp_path):
    p = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--cpu", "--out", str(tmp_path / "out"),
                        "--work", str(tmp_path / "work")], env=dict(os.environ, PY=sys.executable), cwd=REPO,
                       capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    res = json.loads((tmp_path / "out" / "gpu_check_cpu.json").read_text())
    assert {(r["method"], r["head"]) for r in res["sft"]} == {
        (m, h) for m in ("sft", "dft", "prift-prob", "prift-mass", "asft") for h in ("fused", "full logits")}
    assert all(r["tokens_per_s"] > 0 and math.isfinite(r["loss"]) for r in res["sft"])
    assert res["score"]["tokens_per_s"] > 0 and res["score"]["ratio_to_sft_epoch"] > 0
    assert all(a["rel_diff"] < 1e-2 for a in res["sft_meta"]["bf16_vs_fp32"].values())
    assert res["dapo"]["rl_steps"] == 2 and all(math.isfinite(x) for x in res["dapo"]["loss"])
    md = (tmp_path / "out" / "gpu_check_cpu.md").read_text()
    for heading in ("## SFT step", "## Reference pass", "## bf16 autocast vs float32 loss", "## DAPO", "## FSDP2"):
        assert heading in md

"""Tables 7 and 8 in the DAG on tiny models: a teacher whose output layer has more rows than its students' (as
Qwen2.5-Math-7B's 152,064 against the 1.5B's 151,936, one tokenizer), KD from it with β = 0 and β > 0, and
PriFT-prob with statistics from another model scoring the student's own tokenisation. The backbones carry the paper
config's keys so that the paper's table layouts (prift.tables.SPECS) render the results."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from safetensors import safe_open

from prift.paths import Layout
from tests.conftest import REPO
from tests.dag import planned

STUDENT, TEACHER, OTHER = "qwen2.5-math-1.5b", "qwen2.5-math-7b", "qwen2.5-1.5b"
# β = 0, a middle one and 1 (the paper's Table 7 has 0, 0.25, 0.5, 0.75, 1; its layout is rendered in test_tables.py):
# each run is a separate SFT job of the same rule, so two more show nothing new
BETAS = ("0.00", "0.50", "1.00")


def _backbones(root) -> dict:
    """Three tiny backbones built from one corpus with one seed (hence one tokenizer); the teacher is wider and its
    output layer has rows beyond the vocabulary (512), as Qwen2.5-Math-7B's."""
    from prift.backbone import build_tiny
    from prift.demo_data import demo_math
    corpus = demo_math("pretrain", 1500)
    small = dict(hidden_size=48, num_layers=1, intermediate_size=96, num_heads=4, num_kv_heads=2, seed=0,
                 log=lambda *_: None)
    out = {}
    for key, kw in ((STUDENT, dict(pretrain_steps=40)), (OTHER, dict(pretrain_steps=30)),
                    (TEACHER, dict(pretrain_steps=60, hidden_size=64, output_rows=512))):
        build_tiny(root / key, corpus, **{**small, **kw})
        out[key] = {"label": key, "path": str(root / key), "tokenizer": "tiny-bpe"}
    return out


def _config(results: str, backbones: dict) -> dict:
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    cfg["backbones"] = backbones
    cfg["results"] = results
    cfg["domains"]["math"]["train"]["n"] = 64
    for b in cfg["benchmarks"].values():
        b["data"]["n"] = 3
    cfg["generation"].update(n=2, max_new_tokens=12)
    cfg["evaluation"] = {"k": 2, "n_boot": 20}
    cfg["training"]["math"].update(epochs=1, global_batch_size=16, per_device_batch_size=16, save_steps=100,
                                   max_truncated_frac=1.0)
    cfg["analysis"] = {"every": 0}
    cfg.pop("rl")
    cfg["methods"] = {
        "prift-prob": {"label": "PriFT-prob", "rule": "prob", "source": "pretrained"},
        f"prift-prob-ref-{TEACHER}": {"label": "PriFT-prob (teacher)", "rule": "prob", "source": "reference",
                                      "reference": TEACHER},
        f"prift-prob-ref-{STUDENT}": {"label": "PriFT-prob (student)", "rule": "prob", "source": "reference",
                                      "reference": STUDENT},
        **{f"kd-beta{b}": {"label": f"KD {b}", "rule": "prob", "source": "reference", "reference": TEACHER,
                           "kd_beta": float(b)} for b in BETAS},
    }
    # one benchmark, tables in the config's own layout (rows = methods): the paper's layouts of Tables 7 and 8 are
    # rendered from metrics in tests/test_tables.py; here the point is the runs behind them
    cfg["benchmarks"] = {"math500": cfg["benchmarks"]["math500"]}
    cfg["domains"]["math"]["benchmarks"] = ["math500"]
    metrics = {"avg@2": "Avg@2", "pass@2": "Pass@2"}
    cfg["tables"] = {
        "table7": {"domain": "math", "caption": "KD", "backbones": [STUDENT], "benchmarks": ["math500"],
                   "methods": [f"kd-beta{b}" for b in BETAS], "metrics": metrics},
        "table8": {"domain": "math", "caption": "cross-model", "backbones": [STUDENT, OTHER], "benchmarks": ["math500"],
                   "methods": {STUDENT: ["prift-prob", f"prift-prob-ref-{TEACHER}"],
                               OTHER: ["prift-prob", f"prift-prob-ref-{STUDENT}"]}, "metrics": metrics},
    }
    return cfg


def _snakemake(cfg_path, *args, timeout=1800):
    return subprocess.run([sys.executable, "-m", "snakemake", *args, "--cores", "2", "--configfile", str(cfg_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_tables_7_and_8_on_tiny_models(tmp_path):
    results = tmp_path / "results"
    cfg = _config(str(results), _backbones(tmp_path / "models"))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    targets = [str(results / "tables" / f"table{t}.csv") for t in (7, 8)]
    p = _snakemake(path, *targets)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    # every cell of both tables
    t7, t8 = (pd.read_csv(t) for t in targets)
    assert len(t7) == len(BETAS) and len(t8) == 4 and not t7.isna().any().any() and not t8.isna().any().any()
    # the teacher scored the student's tokens over the rows both output layers have; another model's statistics
    # are their own file for each student
    scores = results / "scores"
    with safe_open(str(scores / TEACHER / STUDENT / "math.safetensors"), "pt") as f:
        prov = {k: json.loads(v) for k, v in f.metadata().items() if k != "ids"}
    student_rows = json.loads((tmp_path / "models" / STUDENT / "config.json").read_text())["vocab_size"]
    assert prov["student"] == STUDENT and prov["vocab_rows"] == student_rows < 512
    assert {p.relative_to(scores).as_posix() for p in scores.rglob("*.safetensors")} == {
        f"{STUDENT}/{STUDENT}/math.safetensors", f"{TEACHER}/{STUDENT}/math.safetensors",
        f"{OTHER}/{OTHER}/math.safetensors", f"{STUDENT}/{OTHER}/math.safetensors"}
    # β = 0 is the weighted NLL on the teacher's statistics (the run of Table 8's teacher row); β > 0 moved away
    runs = results / "sft" / "math" / STUDENT
    from safetensors.torch import load_file
    w0, w_ref = (load_file(str(runs / m / "final" / "model.safetensors")) for m in
                 ("kd-beta0.00", f"prift-prob-ref-{TEACHER}"))
    w1 = load_file(str(runs / "kd-beta1.00" / "final" / "model.safetensors"))
    assert max(float((w0[k] - w_ref[k]).abs().max()) for k in w0) < 1e-6
    assert max(float((w0[k] - w1[k]).abs().max()) for k in w0) > 1e-4
    # changing a backbone's revision (or hub id, or path) reruns what reads its weights: the teacher's reference pass,
    # the runs that read its statistics or logits, their evaluations; its label changes nothing
    cfg["backbones"][TEACHER]["label"] = "another label"
    path.write_text(yaml.safe_dump(cfg))
    assert planned(path, *targets) == {}
    cfg["backbones"][TEACHER]["revision"] = "0123456789abcdef0123456789abcdef01234567"
    path.write_text(yaml.safe_dump(cfg))
    jobs = planned(path, *targets)
    L = Layout(results)
    assert L.scores(TEACHER, STUDENT, "math") in jobs["score"]
    assert {L.sft_final("math", STUDENT, m) for m in ("kd-beta0.50", f"prift-prob-ref-{TEACHER}")} <= jobs["sft"]
    assert L.scores(STUDENT, STUDENT, "math") not in jobs["score"]
    assert L.sft_final("math", OTHER, "prift-prob") not in jobs["sft"]

"""DAPO in the DAG: the `rl:` config section, the `prepare-rl` / `rl` verbs, RL runs as `<init>+rl` methods evaluated
like any run (variant "rl"), Table 5's gain over the checkpoint before RL, and the Snakemake jobs."""
from __future__ import annotations

import copy
import json
import math

import pandas as pd
import pytest
import torch
import yaml

from prift import cli, config as C, tables as T
from prift.data import read_jsonl
from prift.demo_data import demo_math
from prift.paths import Layout
from tests.conftest import REPO
from tests.dag import planned
from tests.test_rl import tiny_backbone  # noqa: F401  (conftest's backbone, built with one intra-op thread)


def _demo():
    return yaml.safe_load((REPO / "config" / "demo.yaml").read_text())


# ----------------------------------------------------------------------------------------------------------------------
# Config


def test_rl_runs_and_model_dirs_of_the_demo():
    cfg = C.validate(_demo())
    assert [r for r in C.table_runs(cfg) if C.rl_init(r[2])] == [("math", "tiny", "sft+rl"),
                                                                  ("math", "tiny", "prift-mass+rl")]
    assert ("math", "tiny", "sft+rl") not in C.sft_runs(cfg)
    assert C.model_dir(cfg, "math", "tiny", "prift-mass+rl") == "results/rl/math/tiny/prift-mass/final"
    assert C.model_dir(cfg, "math", "tiny", "prift-mass") == "results/sft/math/tiny/prift-mass/final"
    # Table 5 reads each RL run and, for the gain, the same checkpoint before RL
    cells = C.table_cells(cfg["tables"]["table5"])
    assert len(cells) == 2 * 2 * 5
    assert ("tiny", "sft", "aime24") in cells and ("tiny", "sft+rl", "aime24") in cells


def test_paper_config_lists_table5_runs():
    cfg = C.validate(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    assert sorted(r for r in C.table_runs(cfg) if C.rl_init(r[2])) == sorted(
        ("math", b, f"{m}+rl") for b in ("qwen2.5-math-1.5b", "qwen3-8b-base")
        for m in ("sft", "dft", "prift-prob", "prift-mass"))
    from prift.recipes import RLRecipe
    r15 = RLRecipe.from_config(cfg["rl"]["recipe"], cfg["rl"]["backbones"]["qwen2.5-math-1.5b"])
    r8 = RLRecipe.from_config(cfg["rl"]["recipe"], cfg["rl"]["backbones"]["qwen3-8b-base"])
    assert (r15.rollouts_per_prompt, r8.rollouts_per_prompt) == (32, 16)
    assert (r15.steps, r15.prompt_batch_size, r15.mini_batch_size, r15.lr, r15.kl_coef) == (100, 128, 32, 1e-6, 0.01)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["rl"]["inits"].append("dfft"), r"rl\.inits.*unknown method 'dfft'.*did you mean 'dft'"),
    (lambda c: c["rl"]["backbones"].update(tiy={}), r"rl\.backbones.*unknown backbone 'tiy'.*did you mean 'tiny'"),
    (lambda c: c["rl"]["recipe"].update(rollouts=8), r"rl\.recipe\.rollouts.*unknown key"),
    (lambda c: c["rl"]["recipe"].update(steps="ten"), r"rl\.recipe\.steps"),
    (lambda c: c["rl"]["backbones"]["tiny"].update(mini_batch_size=5),
     r"rl\.backbones\.tiny.*prompt_batch_size=\d+ is not a multiple of mini_batch_size=5"),
    (lambda c: c["tables"]["table5"]["methods"].append("dft+rl"), r"tables\.table5\.methods.*'dft\+rl'.*rl\.inits"),
    (lambda c: c["rl"]["backbones"].update(tiny2={}) or c["rl"]["backbones"].pop("tiny"),
     r"tables\.table5\.methods.*backbone 'tiny' need it in 'rl\.backbones'"),
    (lambda c: c.pop("rl"), r"tables\.table5\.methods.*'sft\+rl'.*rl\.inits"),
    (lambda c: c["rl"].pop("prompts"), r"config key 'rl'.*'prompts' is a required property"),
])
def test_rl_config_errors_name_the_key(edit, message):
    cfg = _demo()
    cfg["backbones"]["tiny2"] = copy.deepcopy(cfg["backbones"]["tiny"])
    edit(cfg)
    with pytest.raises(C.ConfigError, match=message):
        C.validate(cfg)


def test_table5_gain_over_the_checkpoint_before_rl(tmp_path):
    """The demo's table5 spec from the config: rows are the inits with variant "rl"; Δ = after − before RL, computed
    from the metrics records that `prift metrics` writes for the `<init>+rl` and `<init>` runs."""
    cfg = C.validate(_demo())
    spec = T.specs_from_config({**cfg, "tables": C.table_layouts(cfg)})["table5"]
    assert [r[1:] for r in spec.rows] == [("sft", "rl"), ("prift-mass", "rl")] and spec.gain_from == ""
    benches = cfg["tables"]["table5"]["benchmarks"]
    recs, expect = [], {}
    for k, init in enumerate(("sft", "prift-mass")):
        for variant, base in (("rl", 20.0 + 3 * k), ("", 10.0 + k)):
            vals = [base + i for i in range(5)]
            for b, v in zip(benches, vals):
                for metric, off in (("avg@16", 0.0), ("pass@16", 30.0)):
                    recs.append({"run": f"math/tiny/{init}{'+rl' if variant else ''}", "domain": "math",
                                 "backbone": "tiny", "method": init, "variant": variant, "benchmark": b,
                                 "metric": metric, "value": v + off, "ci_low": v + off - 1, "ci_high": v + off + 1,
                                 "n_problems": 24})
            expect[(init, variant)] = sum(vals) / 5
    table = T.render(spec, pd.DataFrame(recs), tmp_path / "t5.csv", tmp_path / "t5.tex")
    label = cfg["backbones"]["tiny"]["label"]
    for init, row in (("sft", "SFT"), ("prift-mass", "PriFT-mass")):
        assert table.loc[(label, row), ("Average", "Avg@16")] == pytest.approx(expect[(init, "rl")])
        assert table.loc[(label, row), ("Average", "Δ Avg@16")] == pytest.approx(expect[(init, "rl")] -
                                                                                  expect[(init, "")])
    assert "Δ P@16" in (tmp_path / "t5.csv").read_text()


# ----------------------------------------------------------------------------------------------------------------------
# Verbs


def _write(cfg, path):
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_prepare_rl_removes_benchmark_problems(tmp_path):
    cfg = _demo()
    cfg["results"] = str(tmp_path / "results")
    out = tmp_path / "rl_prompts.jsonl"
    assert cli.main(["prepare-rl", "--config", _write(cfg, tmp_path / "c.yaml"), "--domain", "math",
                     "--out", str(out)]) == 0
    rows = read_jsonl(out)
    # independently: the demo's RL records, deduplicated, minus every problem of the domain's benchmarks
    spec = cfg["rl"]["prompts"]
    recs = demo_math(spec["split"], spec["n"], spec["seed"])
    bench = {r.get("problem") or r["question"] for b in cfg["domains"]["math"]["benchmarks"]
             for r in demo_math(**{k: v for k, v in cfg["benchmarks"][b]["data"].items() if k != "generator"})}
    unique = list(dict.fromkeys(r["problem"] for r in recs))
    assert len(unique) < len(recs) and any(p in bench for p in unique)   # both removals really happen here
    assert [r["problem"] for r in rows] == [p for p in unique if p not in bench]
    gold = {r["problem"]: r["answer"] for r in recs}
    assert all(r["gold"] == gold[r["problem"]] for r in rows)


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.slow
def test_prift_rl_writes_a_checkpoint_that_moved(tiny_backbone, tmp_path, one_thread):
    from prift.backbone import load_model
    cfg = _demo()
    cfg["results"] = str(tmp_path / "results")
    cfg["rl"]["recipe"] = dict(steps=2, prompt_batch_size=2, mini_batch_size=1, rollouts_per_prompt=8, lr=1e-3,
                               warmup_steps=0, max_prompt_length=128, max_response_length=24, overlong_buffer=20,
                               require_boxed=False, filter_metric="reward", max_gen_rounds=3, micro_batch_size=2,
                               use_vllm=False, gradient_checkpointing=False, save_steps=1, cpu_threads=1)
    cfg["rl"]["backbones"]["tiny"] = {"rollouts_per_prompt": 4}     # the per-backbone override wins
    path = _write(cfg, tmp_path / "c.yaml")
    prompts = tmp_path / "rl_prompts.jsonl"
    assert cli.main(["prepare-rl", "--config", path, "--domain", "math", "--out", str(prompts)]) == 0
    out = tmp_path / "results" / "rl" / "math" / "tiny" / "sft" / "final"
    assert cli.main(["rl", "--config", path, "--domain", "math", "--backbone", "tiny", "--init", "sft",
                     "--model", str(tiny_backbone), "--prompts", str(prompts), "--out", str(out)]) == 0
    run = json.loads((out / "prift_run.json").read_text())
    assert run["rl_steps"] == 2 and run["grpo_config"]["num_generations"] == 4
    assert run["recipe"]["seed"] == cfg["seed"] and run["n_prompts"] == len(read_jsonl(prompts))
    steps = [h for h in json.loads((out / "train_log.json").read_text()) if "reward" in h]
    assert len(steps) == 2 and all(math.isfinite(h["loss"]) for h in steps)
    a, b = load_model(str(tiny_backbone)), load_model(str(out))
    with torch.no_grad():
        moved = max(float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters()))
    assert moved > 1e-6
    assert not (out.parent / "final.tmp").exists() and not (out.parent / "checkpoints").exists()  # removed once done
    # an init that the config does not list is refused with the key named
    assert cli.main(["rl", "--config", path, "--domain", "math", "--backbone", "tiny", "--init", "dft",
                     "--model", str(tiny_backbone), "--prompts", str(prompts), "--out", str(tmp_path / "x")]) == 2


def test_metrics_of_an_rl_run_are_variant_rl(tmp_path):
    cfg = _demo()
    path = _write(cfg, tmp_path / "c.yaml")
    grades = tmp_path / "g.jsonl"
    grades.write_text("".join(json.dumps({"id": str(i), "sample": j, "pred": "1", "qwen": (i + j) % 3 == 0,
                                          "math_verify": (i + j) % 3 == 0}) + "\n"
                              for i in range(4) for j in range(16)))
    out = tmp_path / "m.json"
    rc = cli.main(["metrics", "--config", path, "--run", "math/tiny/prift-mass+rl", "--benchmark", "aime24",
                   "--grades", str(grades), "--out", str(out)])
    assert rc == 0
    recs = json.loads(out.read_text())
    assert {(r["method"], r["variant"], r["run"]) for r in recs} == {("prift-mass", "rl", "math/tiny/prift-mass+rl")}
    avg = next(r for r in recs if r["metric"] == "avg@16")
    assert avg["value"] == pytest.approx(100 * sum((i + j) % 3 == 0 for i in range(4) for j in range(16)) / 64)


# ----------------------------------------------------------------------------------------------------------------------
# Snakemake


def test_demo_dry_run_lists_rl_jobs_and_table5(tmp_path):
    cfg = _demo()
    cfg["results"] = str(tmp_path / "results")
    jobs = planned(_write(cfg, tmp_path / "c.yaml"))
    L = Layout(cfg["results"])
    assert jobs["rl"] == {L.rl_final("math", "tiny", m) for m in ("sft", "prift-mass")}
    assert jobs["prepare_rl"] == {L.rl_prompts("math")}
    assert jobs["table"] == {L.table(t, ext) for t in ("table3", "table5") for ext in ("csv", "tex")}
    # evaluation: 5 methods of table3 + 2 RL runs, on 5 benchmarks each
    runs = ["original", "sft", "dft", "prift-prob", "prift-mass", "sft+rl", "prift-mass+rl"]
    benches = cfg["tables"]["table3"]["benchmarks"]
    assert jobs["generate"] == {L.samples("math", "tiny", m, b) for m in runs for b in benches}
    assert jobs["metrics"] == {L.metrics("math", "tiny", m, b) for m in runs for b in benches}


@pytest.mark.slow
def test_paper_dry_run_lists_table5_rl_jobs(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["results"] = str(tmp_path / "results")
    cfg["tables"] = {"table5": cfg["tables"]["table5"]}
    cfg.pop("figures", None)
    cfg["analysis"]["tables"] = ["table5"]  # the paper's probe tables (2, 3) are not in this cut-down config
    jobs = planned(_write(cfg, tmp_path / "c.yaml"))
    L = Layout(cfg["results"])
    inits = ("sft", "dft", "prift-prob", "prift-mass")
    assert jobs["rl"] == {L.rl_final("math", b, m) for b in ("qwen2.5-math-1.5b", "qwen3-8b-base") for m in inits}
    assert jobs["sft"] == {L.sft_final("math", b, m) for b in ("qwen2.5-math-1.5b", "qwen3-8b-base") for m in inits}
    assert jobs["prepare_rl"] == {L.rl_prompts("math")}

"""Seeds (prift.seeds): a recipe listing seeds runs every method of its domain's tables once per seed; the first
seed keeps the single-seed runs and paths, each further seed is a run `<m>@seed=s` with every random stream shifted;
tables show the mean and the seed-to-seed spread, paired comparisons use all seeds."""
from __future__ import annotations

import json
import math
import statistics

import pandas as pd
import pytest
import yaml

from prift import config as C
from prift import seeds as S
from prift import tables as T
from prift.cli import main as cli_main
from tests.conftest import REPO


def demo(**training) -> dict:
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    cfg["training"]["math"].update(training)
    return cfg


def test_seed_names_round_trip_and_rl_runs_carry_their_inits_seed():
    assert S.with_seed("prift-mass", 3) == "prift-mass@seed=3"
    assert S.with_seed("sft+rl", 1) == "sft@seed=1+rl"
    assert S.split_seed("sft@seed=1+rl") == ("sft+rl", 1)
    assert S.split_seed("prift-mass@seed=-2") == ("prift-mass", -2)
    assert S.split_seed("prift-mass@rho=0.5") == ("prift-mass@rho=0.5", None)
    assert C.rl_init(S.with_seed("sft+rl", 1)) == "sft@seed=1"


def test_validation_adds_one_method_entry_per_further_seed():
    cfg = C.validate(demo(seeds=[0, 1, 5]))
    assert cfg["training"]["math"]["seed"] == 0
    added = sorted(k for k in cfg["methods"] if "@seed=" in k)
    assert added == sorted(f"{m}@seed={s}" for m in ("sft", "dft", "prift-prob", "prift-mass") for s in (1, 5))
    assert cfg["methods"]["prift-mass@seed=5"] == {**cfg["methods"]["prift-mass"], "label": "PriFT-mass (seed 5)",
                                                    "seed": 5}
    assert C.validate(cfg) == cfg                                           # idempotent (the verbs validate again)
    # the runs: original once, every trained method (and RL from it) once per seed, first seed first
    assert S.seed_runs(cfg, "math", "original") == ["original"]
    assert S.seed_runs(cfg, "math", "sft+rl") == ["sft+rl", "sft@seed=1+rl", "sft@seed=5+rl"]
    inputs = S.table_inputs(cfg, "table5")
    assert ("tiny", "prift-mass@seed=5+rl", "amc23") in inputs and ("tiny", "prift-mass@seed=5", "amc23") in inputs
    assert len(S.table_inputs(cfg, "table3")) == 5 * (1 + 4 * 3)
    # every stream of a further seed is shifted by s - seeds[0]; the first seed's recipe is the single-seed recipe
    assert S.seed_offset(cfg, "math", "sft@seed=5+rl") == 5 and S.seed_offset(cfg, "math", "sft+rl") == 0
    assert S.recipe_of(cfg, "math", "dft@seed=5")["seed"] == 5
    single = C.validate(demo())
    assert S.recipe_of(cfg, "math", "dft") == single["training"]["math"] == S.recipe_of(single, "math", "dft")


@pytest.mark.parametrize("training, methods, message", [
    ({"seeds": [0, 1, 0]}, {}, r"training\.math\.seeds': \[0, 1, 0\] repeats a seed"),
    ({"seed": 3, "seeds": [0, 1]}, {}, r"training\.math\.seed': 3 is not the first of `seeds`"),
    ({"seeds": []}, {}, r"training\.math\.seeds"),
    ({}, {"x@seed=1": {"label": "X", "rule": "sft", "source": "online"}}, r"methods\.x@seed=1': '@seed=' names"),
])
def test_bad_seeds_are_named_before_any_job(training, methods, message):
    cfg = demo(**training)
    cfg["methods"].update(methods)
    with pytest.raises(C.ConfigError, match=message):
        C.validate(cfg)


def test_each_verb_runs_a_further_seed_with_its_own_streams(tmp_path, monkeypatch):
    """prift sft trains `m@seed=s` with seed s, prift rl from it with the RL seed + offset, prift generate samples
    with the config's seed + offset (what the rules pass)."""
    path = tmp_path / "c.yaml"
    cfg = demo(seeds=[0, 2])
    path.write_text(yaml.safe_dump(cfg))
    seen = {}
    import prift.generate
    import prift.rl
    import prift.sft
    monkeypatch.setattr(prift.sft, "train", lambda **kw: seen.setdefault("sft", kw["recipe"].seed))
    monkeypatch.setattr(prift.rl, "train_rl", lambda **kw: seen.setdefault("rl", kw["recipe"].seed))
    monkeypatch.setattr(prift.generate, "generate", lambda *a, **kw: seen.setdefault("generate", kw["seed"]))
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "0", "prompt": "1+1?", "response": "2"}) + "\n")
    base = ["--config", str(path), "--domain", "math", "--backbone", "tiny"]
    assert cli_main(["sft", *base, "--method", "dft@seed=2", "--data", str(data), "--out", str(tmp_path / "o")]) == 0
    assert cli_main(["rl", *base, "--init", "sft@seed=2", "--model", str(tmp_path), "--prompts", str(data),
                     "--out", str(tmp_path / "r")]) == 0
    assert cli_main(["generate", "--config", str(path), "--model", str(tmp_path), "--benchmark", "math500",
                     "--problems", str(data), "--out", str(tmp_path / "s.jsonl"), "--seed-offset", "2"]) == 0
    assert seen == {"sft": 2, "rl": cfg["rl"]["recipe"].get("seed", cfg["seed"]) + 2, "generate": cfg["seed"] + 2}


def _record(method, bench, value, half=4.0, variant=""):
    return {"run": f"math/tiny/{method}", "domain": "math", "backbone": "tiny", "method": method, "variant": variant,
            "benchmark": bench, "metric": "avg@16", "value": value, "ci_low": value - half, "ci_high": value + half,
            "n_problems": 24}


def test_tables_show_the_mean_over_seeds_and_their_spread(tmp_path):
    spec = T.spec_from_dict({"name": "table3", "domain": "math", "caption": "c", "backbones": {"tiny": "Tiny"},
                             "methods": [["Original", "original", ""], ["SFT", "sft", ""]],
                             "benchmarks": {"a": "A", "b": "B"}, "metrics": {"avg@16": "Avg@16"}})
    values = {("sft", "a"): 10.0, ("sft", "b"): 20.0, ("sft@seed=1", "a"): 14.0, ("sft@seed=1", "b"): 30.0,
              ("sft@seed=2", "a"): 15.0, ("sft@seed=2", "b"): 19.0, ("original", "a"): 5.0, ("original", "b"): 7.0}
    frame = pd.DataFrame([_record(m, b, v) for (m, b), v in values.items()])
    table, spread = T.seed_tables(spec, frame)
    sft, orig = ("Tiny", "SFT"), ("Tiny", "Original")
    seeds_a, seeds_avg = [10.0, 14.0, 15.0], [15.0, 22.0, 17.0]
    assert table.loc[sft, ("A", "Avg@16")] == pytest.approx(statistics.mean(seeds_a))
    assert table.loc[sft, ("Average", "Avg@16")] == pytest.approx(statistics.mean(seeds_avg))
    assert spread.loc[sft, ("A", "Avg@16")] == pytest.approx(statistics.stdev(seeds_a))
    assert spread.loc[sft, ("Average", "Avg@16")] == pytest.approx(statistics.stdev(seeds_avg))
    assert table.loc[orig, ("A", "Avg@16")] == 5.0 and math.isnan(spread.loc[orig, ("A", "Avg@16")])
    T.render(spec, frame, tmp_path / "t.csv", tmp_path / "t.tex")
    csv = pd.read_csv(tmp_path / "t.csv", dtype=str, keep_default_na=False).set_index("Method")
    assert csv.loc["SFT", "A"] == "13.00" and csv.loc["SFT", "A sd"] == f"{statistics.stdev(seeds_a):.2f}"
    assert csv.loc["Original", "A sd"] == "—"
    assert "18.00{\\scriptsize$\\pm$3.61}" in (tmp_path / "t.tex").read_text()
    # one seed: the table of before (no sd columns)
    T.render(spec, frame[~frame.method.str.contains("@")], tmp_path / "one.csv", tmp_path / "one.tex")
    assert list(pd.read_csv(tmp_path / "one.csv").columns) == ["Model", "Method", "A", "B", "Average"]
    # the side by side with the paper reads the pooled records: the mean, the seeds' mean half-width, n_seeds
    frame.loc[frame.method == "sft@seed=2", ["ci_low", "ci_high"]] = [[5.0, 25.0]] * 2
    pooled = T.pool_seeds(frame).set_index(["method", "benchmark"])
    assert pooled.loc[("sft", "a"), "value"] == pytest.approx(13.0) and pooled.loc[("sft", "a"), "n_seeds"] == 3
    assert pooled.loc[("sft", "a"), "ci_high"] - 13.0 == pytest.approx((4 + 4 + 10) / 3)
    assert pooled.loc[("original", "a"), "n_seeds"] == 1 and len(pooled) == 4

"""The GPU check (benchmarks/gpu_check.sh). Its CPU mode runs every section a GPU session runs first (packed and
padded SFT on real lengths, the reference pass, decoding, the projection of the paper's stages, SFT steps of five
methods through both loss paths, bf16 against float32, DAPO steps) at toy sizes and writes its report, so that the
script does not rot between the sessions that are lent a GPU. The projection's arithmetic and the shipped lengths
are checked against independent references."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_check  # noqa: E402
import gpu_projection as P  # noqa: E402
import sft_steps  # noqa: E402


@pytest.mark.slow
def test_gpu_check_cpu_mode_runs_every_section(tmp_path):
    p = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--cpu", "--out", str(tmp_path / "out"),
                        "--work", str(tmp_path / "work")], env=dict(os.environ, PY=sys.executable), cwd=REPO,
                       capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    res = json.loads((tmp_path / "out" / "gpu_check_cpu.json").read_text())
    runs = res["packed"]["runs"]
    assert [(r["model"], r["packed"], r["gradient_checkpointing"]) for r in runs] == [
        ("1.5B", True, True), ("1.5B", False, True), ("1.5B", True, False), ("1.5B", False, False), ("7B", True, True)]
    assert all(r["tokens_per_s"] > 0 and 0 < r["mfu"] for r in runs)
    # the padded runs compute more positions than the packed ones, over the same real tokens
    assert runs[1]["positions"] > runs[0]["positions"] == res["packed"]["tokens"]
    assert set(runs[-1]["slices_seconds"]) == {"1", "2"}                     # the CPU shape's two slices
    for k in ("1.5B", "7B"):
        assert res["score"][k]["tokens_per_s"] > 0 and res["score"][k]["ratio_to_sft_epoch"]["gc"] > 0
        assert res["decode"][k]["tokens_per_s"] > 0
    assert [(r["stage"], r["backbone"]) for r in res["projection"]["stages"]] == [
        ("score", "qwen2.5-math-1.5b"), ("sft", "qwen2.5-math-1.5b"), ("sft+score", "qwen2.5-math-1.5b"),
        ("score", "qwen2.5-math-7b"), ("sft", "qwen2.5-math-7b"), ("sft+score", "qwen2.5-math-7b"),
        ("generate", "qwen2.5-math-1.5b"), ("generate", "qwen2.5-math-7b"),
        ("rl", "qwen2.5-math-1.5b"), ("rl", "qwen3-8b-base")]
    assert {(r["method"], r["head"]) for r in res["sft"]["rows"]} == {
        (m, h) for m in ("sft", "dft", "prift-prob", "prift-mass", "asft") for h in ("fused", "full logits")}
    assert all(r["tokens_per_s"] > 0 and math.isfinite(r["loss"]) for r in res["sft"]["rows"])
    assert all(a["rel_diff"] < 1e-2 for a in res["sft"]["meta"]["bf16_vs_fp32"].values())
    assert res["dapo"]["rl_steps"] == 2 and all(math.isfinite(x) for x in res["dapo"]["loss"])
    md = (tmp_path / "out" / "gpu_check_cpu.md").read_text()
    for heading in ("SFT on MATH-500's real lengths", "## Reference pass", "## Decoding", "## The paper's stages",
                    "DAPO with vLLM colocated", "## SFT step of each method", "## DAPO", "## FSDP2"):
        assert heading in md


def test_the_shipped_lengths_are_math500_through_the_tokenizer():
    """benchmarks/math500_lengths.json (what the GPU image, which lacks the tokenizer, trains on) is what
    bench_packing's tokenisation gives now: (prompt tokens, total tokens) of each MATH-500 example."""
    import bench_packing
    examples, _ = bench_packing.tokenized_math500()
    want = [(sum(1 for x in e["labels"] if x == -100), len(e["input_ids"])) for e in examples]
    assert all(e["labels"][:p] == [-100] * p and e["labels"][p] != -100 for e, (p, _) in zip(examples, want))
    assert sft_steps.math500_lengths() == want
    rows = sft_steps.rows_of_lengths(want, vocab=100, n=600, seed=0)   # 500 lengths, then again from the start
    assert sorted((r["labels"].count(-100), len(r["input_ids"])) for r in rows[:500]) == sorted(want)
    assert [len(r["input_ids"]) for r in rows[500:]] == [len(r["input_ids"]) for r in rows[:100]]


def test_matmul_params_count_the_model_built():
    """matmul_params (the N of the MFU's 6·N·L) is the parameters of the model gpu_check builds, less the input
    embedding where it is not the (tied) LM head."""
    for shape in (gpu_check.SHAPES["cpu"], gpu_check.SHAPES_7B["cpu"]):
        model = gpu_check.make_model(shape, "cpu", layers=3)
        total = sum(p.numel() for p in model.parameters())
        embedding = 0 if shape.get("tied", True) else model.get_input_embeddings().weight.numel()
        assert gpu_check.matmul_params(shape, 3) == total - embedding


def test_depth_fit_is_the_line_through_two_depths():
    assert gpu_check.depth_fit({4: 3.0, 2: 2.0}, 28) == pytest.approx(2.0 + 0.5 * 26)
    # a deeper slice timed no slower (noise): the deeper time scaled by depth, never a negative time
    assert gpu_check.depth_fit({1: 0.30, 2: 0.25}, 6) == pytest.approx(0.25 * 3)


def _cfg():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_projection_against_hand_arithmetic():
    """Rates of 1,000 (SFT), 4,000 (reference pass) and 500 (decoding) tokens/s at every size, mean prompt 100 and
    response 200 tokens: each stage's GPU-hours, wall time against its job's limit and the mean length that would
    give the paper's time, computed by hand."""
    from prift import resources
    cfg, table = _cfg(), resources.load()
    rates = {"sft": {"1.5B": 1000.0, "7B": 1000.0}, "score": {"1.5B": 4000.0, "7B": 4000.0},
             "decode": {"1.5B": 500.0, "7B": 500.0}}
    lengths = P.mean_lengths([(100, 300), (50, 250), (150, 350)])
    assert lengths == {"prompt": 100.0, "response": 200.0, "total": 300.0}
    problems = {"math500": 500, "minerva_math": 272, "olympiadbench": 675, "aime24": 30, "amc23": 40}
    rows = {(r["stage"], r["backbone"]): r for r in P.stages(cfg, table, rates, lengths, problems)}
    sft = rows[("sft", "qwen2.5-math-1.5b")]
    assert sft["tokens"] == 100_000 * 300
    assert sft["gpu_hours"] == pytest.approx(3e7 / 1000 / 3600)                  # 8.33 h
    assert (sft["gpus"], sft["limit_min"]) == (4, 180)
    assert sft["wall_min"] == pytest.approx(3e7 / 1000 / 60 / 4) and sft["fits"] is True   # 125 of 180 min
    both = rows[("sft+score", "qwen2.5-math-7b")]
    assert both["gpu_hours"] == pytest.approx(3e7 * (1 / 1000 + 1 / 4000) / 3600)
    assert both["implied_mean_tokens"] == pytest.approx(8 * 3600 / (1 / 1000 + 1 / 4000) / 100_000)   # 230.4
    gen = rows[("generate", "qwen2.5-math-1.5b")]
    assert gen["gpu_hours"] == pytest.approx(1517 * 16 * 200 / 500 / 3600)
    assert gen["wall_min"] == pytest.approx(675 * 16 * 200 / 500 / 60)          # 72 min: the OlympiadBench job
    assert (gen["limit_min"], gen["fits"]) == (60, False)
    assert gen["implied_mean_tokens"] == pytest.approx(80 * 60 * 500 / (1517 * 16))
    rl = rows[("rl", "qwen2.5-math-1.5b")]
    per = 200 / 500 + 300 * (1 / 1000 + 2 / 4000)                                 # 0.85 s per rollout
    assert rl["gpu_hours"] == pytest.approx(100 * 128 * 32 * per / 3600)
    fixed, per_token = 100 * 0.0015, 1 / 500 + 0.0015    # seconds per rollout: fixed + per response token
    assert rl["implied_mean_tokens"] == pytest.approx((28 * 3600 / (100 * 128 * 32) - fixed) / per_token)
    rl8 = rows[("rl", "qwen3-8b-base")]   # the 7B's rates scaled by 7.6 / 8.2 (config size_b)
    f = 7.6 / 8.2
    per8 = 200 / (500 * f) + 300 * (1 / (1000 * f) + 2 / (4000 * f))
    assert rl8["gpu_hours"] == pytest.approx(100 * 128 * 16 * per8 / 3600)
    assert (rl8["gpus"], rl8["limit_min"]) == (4, 720)


def test_colocated_memory_against_hand_arithmetic():
    from prift import resources
    mem = {m["backbone"]: m for m in P.colocated_memory(_cfg(), resources.load(), 100.0)}
    small, big = mem["qwen2.5-math-1.5b"], mem["qwen3-8b-base"]
    gib = 2**30
    assert small["parallelism"] == "DDP" and big["parallelism"] == "FSDP"
    assert small["vllm_utilization"] == big["vllm_utilization"] == 0.3   # prift.recipes.RLRecipe's, config sets none
    assert small["vllm_share_gib"] == pytest.approx(30.0)
    assert small["kv_cache_tokens"] == pytest.approx((30 - 3e9 / gib) * gib / (2 * 28 * 2 * 128 * 2))
    assert small["left_gib"] == pytest.approx(100 - 30 - 16 * 1.5e9 / gib - 3e9 / gib)
    assert big["train_state_gib"] == pytest.approx(16 * 8.2e9 / 4 / gib)          # a quarter on each of 4 GPUs
    assert big["kv_cache_tokens"] == pytest.approx((30 - 16.4e9 / gib) * gib / (2 * 36 * 8 * 128 * 2))

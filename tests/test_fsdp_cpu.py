"""FSDP2 on CPU: `prift sft` and `prift rl` with 2 gloo processes through the repository's FSDP launch path
(`accelerate launch --config_file config/accelerate/fsdp.yaml`, as `launcher()` in workflow/rules/common.smk), with
accelerate's FSDP kept on CPU by tests/fsdp_launch.py.

  * SFT (DFT) on a tied embedding with an odd row count and on an untied one with an even row count: a standard
    Hugging Face checkpoint gathered from the sharded model, equal to the 1-process run of the same global batch;
  * a run killed right after a sharded trainer checkpoint resumes under FSDP to the uninterrupted run's weights;
  * the drift probes, ASFT's reference model and KD's teacher under FSDP give the 1-process numbers;
  * DAPO under FSDP: a reloadable checkpoint, and a killed run resumed from its sharded checkpoint to the
    uninterrupted run's weights;
  * the same launch without the promotion (what accelerate does on CPU) trains with DDP, says so, and still equals
    the 1-process run in float32 (the accelerate config's bf16 does not override the recipe).

Three launches of 2 processes carry all the FSDP runs (starting the processes costs more than a tiny run)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from prift import cli
from prift import config as C
from prift.data import prepare_train
from prift.io import write_jsonl
from prift.runs import last_checkpoint

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
FSDP_CONFIG = "config/accelerate/fsdp.yaml"
MAX_LENGTH = 96
TOL = 1e-5   # relative; FSDP's reduce-scatter and sharded gradient norm may sum in another order than one process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(module_args: list[str], log: Path) -> int:
    """`launcher("sft")`'s command with 2 processes, the module in place of `-m prift.cli` (a free rendezvous port, so
    that parallel test sessions do not meet). Returns the exit status; the output goes to `log`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "FSDP_"))}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", FSDP_CONFIG, "--num_processes", "2",
           "--main_process_port", str(_free_port()), "-m", *module_args]
    with open(log, "w") as f:
        return subprocess.run(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=900).returncode


def _fsdp_jobs(jobs: list[dict], tmp: Path, name: str) -> tuple[int, str]:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(jobs))
    rc = _launch(["tests.fsdp_launch", str(path)], tmp / f"{name}.log")
    return rc, (tmp / f"{name}.log").read_text()


def _weights(model_dir) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    return load_file(str(Path(model_dir) / "model.safetensors"))


def _max_rel_diff(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return max(((a[k].double() - b[k].double()).norm() / a[k].double().norm().clamp(min=1e-12)).item() for k in a)


def _log(model_dir) -> list[dict]:
    return [r for r in json.loads((Path(model_dir) / "train_log.json").read_text()) if "loss" in r]


def _summary(model_dir) -> dict:
    return json.loads((Path(model_dir) / "prift_run.json").read_text())


def _killed(ckpts: Path, tmp_file: Path) -> dict:
    """What a run killed after its checkpoint of step 2 left (read before the run is started again): whether a final
    model exists, the checkpoint a rerun resumes from, the files of checkpoint-2, its health record, and the largest
    |weight| of the sharded model checkpoint, read back in one process (torch distributed checkpoint → torch.save)."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
    ckpt = ckpts / "checkpoint-2"
    info = {"final": (ckpts.parent / "final").exists(), "last": last_checkpoint(ckpts),
            "files": sorted(p.name for p in ckpt.iterdir()) if ckpt.is_dir() else []}
    if (ckpt / "pytorch_model_fsdp_0").is_dir():
        dcp_to_torch_save(str(ckpt / "pytorch_model_fsdp_0"), str(tmp_file))
        state = torch.load(tmp_file, weights_only=True)
        state = state.get("model", state)
        info["max_abs_weight"] = max(float(t.abs().max()) for t in state.values() if torch.is_tensor(t))
        info["health"] = json.loads((ckpt / "prift_health.json").read_text())
    return info


@pytest.fixture(scope="module")
def untied_backbone(tiny_backbone, tmp_path_factory):
    """The tiny backbone with an untied output layer and one more row (an even count: the tiny vocabulary is odd)."""
    from prift.backbone import load_model
    out = tmp_path_factory.mktemp("untied") / "tiny-untied"
    shutil.copytree(tiny_backbone, out)
    m = load_model(str(tiny_backbone))
    m.resize_token_embeddings(m.config.vocab_size + 1)
    m.config.tie_word_embeddings = False
    m.lm_head.weight = torch.nn.Parameter(m.get_input_embeddings().weight.detach().clone() * 0.5)
    m.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def runs(tiny_backbone, untied_backbone, tmp_path_factory):
    """Every FSDP run of the module (three launches) and the 1-process runs they are compared with."""
    tmp = tmp_path_factory.mktemp("fsdp")
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    cfg["results"] = str(tmp / "results")
    cfg["backbones"] = {"tiny": {"label": "tiny", "path": str(tiny_backbone)},
                        "tiny-untied": {"label": "tiny untied", "path": str(untied_backbone)}}
    cfg["methods"].update(asft={"label": "ASFT", "rule": "prob", "source": "online", "asft_beta": 0.1},
                          kd={"label": "KD", "rule": "prob", "source": "reference", "reference": "tiny",
                              "kd_beta": 0.5})
    # 32 examples, global batch 8 = 4 per process × 2 processes (FSDP) or 4 × 2 accumulation steps (1 process)
    cfg["training"]["math"] = dict(epochs=1, global_batch_size=8, per_device_batch_size=4, lr=1e-3,
                                   max_length=MAX_LENGTH, max_truncated_frac=1.0, bf16=True, save_steps=2,
                                   logging_steps=1, seed=0)
    cfg["analysis"] = {"every": 1, "heldout": 4, "kl": True, "tables": []}
    cfg["rl"]["recipe"] = dict(steps=2, prompt_batch_size=2, mini_batch_size=1, rollouts_per_prompt=4, lr=1e-3,
                               warmup_steps=0, max_prompt_length=128, max_response_length=24, overlong_buffer=20,
                               require_boxed=False, filter_metric="reward", max_gen_rounds=3, micro_batch_size=2,
                               on_exhausted="mask", use_vllm=False, gradient_checkpointing=False, save_steps=1)
    C.validate(cfg)
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    examples = prepare_train({"generator": "demo_math", "split": "train", "n": 36}, "math", "qwen-boxed")
    data, heldout, prompts = tmp / "train.jsonl", tmp / "heldout.jsonl", tmp / "prompts.jsonl"
    write_jsonl(data, examples[:32])
    write_jsonl(heldout, examples[32:])
    assert cli.main(["prepare-rl", "--config", str(config), "--domain", "math", "--out", str(prompts)]) == 0
    scores = tmp / "scores" / "tiny.safetensors"
    assert cli.main(["score", "--config", str(config), "--domain", "math", "--reference", "tiny", "--data", str(data),
                     "--out", str(scores)]) == 0

    def sft(root, method, backbone="tiny"):
        argv = ["sft", "--config", str(config), "--domain", "math", "--backbone", backbone, "--method", method,
                "--data", str(data), "--out", str(tmp / root / f"{method}-{backbone}" / "final")]
        if method in ("asft", "kd"):
            argv += ["--heldout", str(heldout)]
        return argv + (["--scores", str(scores)] if method == "kd" else [])

    def rl(name):
        return ["rl", "--config", str(config), "--domain", "math", "--backbone", "tiny", "--init", "sft",
                "--model", str(tiny_backbone), "--prompts", str(prompts), "--out", str(tmp / "fsdp" / name / "final")]

    sft_runs = [("dft", "tiny"), ("dft", "tiny-untied"), ("asft", "tiny"), ("kd", "tiny")]
    killed_sft = ["sft", "--config", str(config), "--domain", "math", "--backbone", "tiny", "--method", "dft",
                  "--data", str(data), "--out", str(tmp / "fsdp" / "dft-killed" / "final")]
    out = {"tmp": tmp, "launches": {}}
    # launch 1: the uninterrupted runs, then a run killed after its checkpoint of step 2 (of 4)
    out["launches"]["first"] = _fsdp_jobs([{"argv": sft("fsdp", m, b)} for m, b in sft_runs] + [{"argv": rl("rl")}]
                                          + [{"argv": killed_sft, "kill_at": 2}], tmp, "first")
    ckpts = tmp / "fsdp" / "dft-killed" / "checkpoints"
    out["killed_sft"] = _killed(ckpts, tmp / "killed-sft.pt")
    # launch 2: the killed SFT run again (resumes), and an RL run killed after RL step 1 (optimizer step 2)
    out["launches"]["second"] = _fsdp_jobs([{"argv": killed_sft}, {"argv": rl("rl-killed"), "kill_at": 2}], tmp,
                                           "second")
    ckpts = tmp / "fsdp" / "rl-killed" / "checkpoints"
    out["killed_rl"] = _killed(ckpts, tmp / "killed-rl.pt")
    # launch 3: the killed RL run again (resumes)
    out["launches"]["third"] = _fsdp_jobs([{"argv": rl("rl-killed")}], tmp, "third")
    # the same SFT runs in one process (per-device 4 × 2 accumulation steps)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for m, b in sft_runs:
            assert cli.main(sft("one", m, b)) == 0
    finally:
        torch.set_num_threads(n)
    out["sft"] = lambda root, method, backbone="tiny": tmp / root / f"{method}-{backbone}" / "final"
    out["config"], out["data"] = config, data
    return out


def _launched(runs, name):
    rc, log = runs["launches"][name]
    return rc, log[-4000:]


# ----------------------------------------------------------------------------------------------------------------------
# SFT: a standard checkpoint gathered from the shards, equal to one process


@pytest.mark.parametrize("backbone, rows, tied", [("tiny", 479, True), ("tiny-untied", 480, False)])
def test_fsdp_sft_saves_a_standard_checkpoint_equal_to_one_process(runs, tiny_backbone, backbone, rows, tied):
    from transformers import AutoModelForCausalLM
    fsdp, one = runs["sft"]("fsdp", "dft", backbone), runs["sft"]("one", "dft", backbone)
    assert fsdp.is_dir(), _launched(runs, "first")[1]
    s2, s1 = _summary(fsdp), _summary(one)
    assert (s2["parallelism"], s2["world_size"], s2["grad_accum"]) == ("fsdp2", 2, 1)
    assert (s1["parallelism"], s1["world_size"], s1["grad_accum"]) == ("single", 1, 2)
    # config/accelerate/fsdp.yaml says bf16; a CPU run trains in float32 as its recipe says
    assert s2["mixed_precision"] == s1["mixed_precision"] == "no"
    # a standard checkpoint: the 1-process run's tensors (names, shapes; the tied output layer not stored twice)
    w2, w1 = _weights(fsdp), _weights(one)
    assert {k: v.shape for k, v in w2.items()} == {k: v.shape for k, v in w1.items()}
    assert w2["model.embed_tokens.weight"].shape[0] == rows and ("lm_head.weight" in w2) == (not tied)
    model, info = AutoModelForCausalLM.from_pretrained(str(fsdp), output_loading_info=True)
    assert not any(info.values()), info                 # no missing, unexpected or mismatched keys
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tied
    # it trained, and it is the 1-process model
    w0 = _weights(tiny_backbone)
    assert max(((w2[k] - w0[k]).norm() / w0[k].norm()).item() for k in w0 if w0[k].shape == w2[k].shape) > 1e-3
    assert _max_rel_diff(w1, w2) < TOL
    l2, l1 = _log(fsdp), _log(one)
    assert [r["step"] for r in l2] == [r["step"] for r in l1] == [1, 2, 3, 4]
    for a, b in zip(l1, l2):
        for key in ("loss", "grad_norm", "weight_mean", "learning_rate"):
            assert b[key] == pytest.approx(a[key], rel=TOL, abs=1e-12), (a["step"], key)


def test_fsdp_sft_killed_after_a_sharded_checkpoint_resumes_to_the_uninterrupted_weights(runs):
    killed = runs["killed_sft"]
    assert not killed["final"] and killed["last"] and killed["last"].endswith("checkpoint-2")
    # the trainer checkpoint is sharded (torch distributed checkpoint of the model and of the optimizer)
    assert {"pytorch_model_fsdp_0", "optimizer_0", "trainer_state.json", "prift_health.json"} <= set(killed["files"])
    assert not any(f.endswith((".safetensors", ".bin")) for f in killed["files"])
    # its health record is the largest |weight| over both processes' shards, as the whole model holds it
    assert killed["health"]["good"] and killed["health"]["max_abs_weight"] == killed["max_abs_weight"]
    rc, log = _launched(runs, "second")
    resumed = runs["tmp"] / "fsdp" / "dft-killed" / "final"
    assert resumed.is_dir(), log
    s = _summary(resumed)
    assert s["resumed_from"] == killed["last"] and s["global_steps"] == 4 and s["parallelism"] == "fsdp2"
    uninterrupted = runs["sft"]("fsdp", "dft")
    assert _max_rel_diff(_weights(uninterrupted), _weights(resumed)) < 1e-6
    la = {r["step"]: r["loss"] for r in _log(uninterrupted)}
    lb = {r["step"]: r["loss"] for r in _log(resumed)}     # steps 1-2 come back from the checkpoint's trainer state
    assert sorted(lb) == [1, 2, 3, 4] and all(lb[k] == pytest.approx(la[k], rel=1e-6) for k in lb)


# ----------------------------------------------------------------------------------------------------------------------
# The drift probes, ASFT's reference model and KD's teacher under FSDP


@pytest.mark.parametrize("method", ["asft", "kd"])
def test_fsdp_drift_probes_and_reference_models_give_the_one_process_numbers(runs, method):
    from prift.analysis import read_probes
    fsdp, one = runs["sft"]("fsdp", method), runs["sft"]("one", method)
    assert fsdp.is_dir(), _launched(runs, "first")[1]
    assert _summary(fsdp)["parallelism"] == "fsdp2"
    assert _max_rel_diff(_weights(one), _weights(fsdp)) < TOL
    l2, l1 = _log(fsdp), _log(one)
    assert len(l1) == len(l2) == 4
    keys = ("loss", "grad_norm") + (("kl_ref",) if method == "asft" else ())
    for a, b in zip(l1, l2):
        for key in keys:
            assert b[key] == pytest.approx(a[key], rel=TOL, abs=1e-9), (a["step"], key)
    if method == "asft":
        assert abs(l2[0]["kl_ref"]) < 1e-6 < l2[-1]["kl_ref"]   # online = reference at step 1, then it moves
    # a probe at step 0, after every step, and the final one (with the per-token entropies)
    p2, p1 = read_probes(fsdp / "probes.jsonl"), read_probes(one / "probes.jsonl")
    assert [r["step"] for r in p2] == [r["step"] for r in p1] == [0, 1, 2, 3, 4, 4]
    assert "entropy" in p2[-1] and p2[0]["kl_ref_online"] == pytest.approx(0, abs=1e-6)
    assert p2[-1]["kl_ref_online"] > 1e-4
    for a, b in zip(p1, p2):
        for key in ("pearson", "spearman", "mae", "kl_ref_online", "entropy_mean"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-7), (a["step"], key)
        assert b["n_tokens"] == a["n_tokens"] and len(b["token_p"]) == len(a["token_p"]) == 1
        assert b["token_p"][0] == pytest.approx(a["token_p"][0], abs=2e-4)       # rounded to 4 digits


# ----------------------------------------------------------------------------------------------------------------------
# DAPO under FSDP


def test_fsdp_rl_saves_a_reloadable_checkpoint_and_a_killed_run_resumes_to_the_same_weights(runs, tiny_backbone):
    import math
    from transformers import AutoModelForCausalLM
    done = runs["tmp"] / "fsdp" / "rl" / "final"
    assert done.is_dir(), _launched(runs, "first")[1]
    s = _summary(done)
    assert (s["parallelism"], s["world_size"], s["rl_steps"], s["mixed_precision"]) == ("fsdp2", 2, 2, "no")
    steps = [h for h in json.loads((done / "train_log.json").read_text()) if "reward" in h]
    assert len(steps) == 2 and all(math.isfinite(h["loss"]) for h in steps)
    model, info = AutoModelForCausalLM.from_pretrained(str(done), output_loading_info=True)
    assert not any(info.values()), info
    w, w0 = _weights(done), _weights(tiny_backbone)
    assert set(w) == set(w0) and max((w[k] - w0[k]).abs().max().item() for k in w) > 1e-6
    killed = runs["killed_rl"]
    assert not killed["final"] and killed["last"] and killed["last"].endswith("checkpoint-2")
    assert {"pytorch_model_fsdp_0", "optimizer_0", "trainer_state.json", "prift_health.json"} <= set(killed["files"])
    rc, log = _launched(runs, "third")
    resumed = runs["tmp"] / "fsdp" / "rl-killed" / "final"
    assert rc == 0 and resumed.is_dir(), log
    s = _summary(resumed)
    assert s["resumed_from"] == killed["last"] and s["rl_steps"] == 2 and s["parallelism"] == "fsdp2"
    # every process's RNG state comes back with the checkpoint: the same rollouts, the uninterrupted run's weights
    assert _max_rel_diff(w, _weights(resumed)) < 1e-6
    again = [h for h in json.loads((resumed / "train_log.json").read_text()) if "reward" in h]
    assert [h["step"] for h in again] == [h["step"] for h in steps] == [2, 4]
    assert [h["reward"] for h in again] == pytest.approx([h["reward"] for h in steps])


# ----------------------------------------------------------------------------------------------------------------------
# The same launch as accelerate runs it on CPU: DDP, said in the log, float32


def test_accelerate_fsdp_config_on_cpu_trains_ddp_in_float32_and_says_so(runs):
    """`accelerate launch --config_file config/accelerate/fsdp.yaml -m prift.cli sft` on CPU, no promotion: accelerate
    keeps FSDP for GPUs, so the processes run DDP on gloo - correct training (the 1-process weights), not sharded."""
    tmp = runs["tmp"]
    out = tmp / "ddp" / "final"
    rc = _launch(["prift.cli", "sft", "--config", str(runs["config"]), "--domain", "math", "--backbone", "tiny",
                  "--method", "dft", "--data", str(runs["data"]), "--out", str(out)], tmp / "ddp.log")
    log = (tmp / "ddp.log").read_text()
    assert rc == 0, log[-4000:]
    s = _summary(out)
    assert (s["parallelism"], s["world_size"], s["grad_accum"], s["mixed_precision"]) == ("ddp", 2, 1, "no")
    assert "FSDP was asked for (ACCELERATE_USE_FSDP) but accelerate runs ddp" in log
    assert _max_rel_diff(_weights(runs["sft"]("one", "dft")), _weights(out)) < TOL

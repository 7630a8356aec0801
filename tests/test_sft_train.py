"""Weighted SFT runs end to end on the tiny backbone: the EMA source's endpoints (ρ = 1 is the frozen pretrained
source, ρ = 0 the online one), kill-and-resume reaching the weights of an uninterrupted run, a non-finite loss
stopping the run and keeping the last good checkpoint, a 2-process (gloo) run giving the loss curve of 1 process
with the same global batch, the per-step logs, and the shipped accelerate configs."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prift import losses
from prift.data import prepare_train
from prift.scoring import score
from prift.runs import last_checkpoint
from prift.sft import Method, Recipe, train

REPO = Path(__file__).resolve().parents[1]

# A run in a fresh process (kill-and-resume, torchrun); PRIFT_TEST_SLEEP slows every micro-step down.
RUNNER = """
import json, os, sys, time
from prift import losses, sft
from prift.data import prepare_train
cfg = json.loads(open(sys.argv[1]).read())
pause = float(os.environ.get("PRIFT_TEST_SLEEP", "0"))
if pause:
    inner = losses.method_loss_hidden
    def slow(*a, **k):
        time.sleep(pause)
        return inner(*a, **k)
    losses.method_loss_hidden = slow
ex = prepare_train({"generator": "demo_math", "split": "train", "n": cfg["n"]}, "math", "qwen-boxed")
sft.train(model_path=cfg["model"], examples=ex, out_dir=cfg["out"], scores_path=cfg.get("scores"),
          recipe=sft.Recipe(**cfg["recipe"]), method=sft.Method.from_config(*cfg["method"]))
"""


def _examples(n):
    return prepare_train({"generator": "demo_math", "split": "train", "n": n}, "math", "qwen-boxed")


@pytest.fixture(scope="module")
def scores16(tiny_backbone, tmp_path_factory):
    path = tmp_path_factory.mktemp("scores16") / "s.safetensors"
    score(str(tiny_backbone), _examples(16), path, max_length=96, log=lambda *_: None)
    return path


def _weights(out_dir):
    from safetensors.torch import load_file
    return load_file(str(Path(out_dir) / "model.safetensors"))


def _max_rel_diff(a, b):
    return max(((a[k] - b[k]).norm() / a[k].norm().clamp(min=1e-12)).item() for k in a)


def _recipe(**kw):
    # the fused loss path (the GPU's), which several tests intercept (losses.method_loss_hidden); fused_head: auto would
    # take the full logits on CPU
    base = dict(epochs=1, global_batch_size=8, per_device_batch_size=4, lr=1e-3, max_length=96, max_truncated_frac=1.0,
                bf16=False, fused_head=True,
                save_steps=100, logging_steps=1, seed=0)
    return Recipe(**{**base, **kw})


def _run(tiny_backbone, out, n, method, recipe, scores=None, **kw):
    return train(model_path=str(tiny_backbone), examples=_examples(n), out_dir=out, scores_path=scores,
                 recipe=recipe, method=Method.from_config(*method), log=kw.pop("log", lambda *_: None), **kw)


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


# ----------------------------------------------------------------------------------------------------------------------
# EMA source endpoints (App. D.1, Fig. 6a)

@pytest.mark.parametrize("fused", [True, False])
def test_ema_rho_1_is_the_pretrained_source(tiny_backbone, scores16, tmp_path, fused):
    """ρ = 1 keeps the EMA copy frozen at the initial weights: training equals PriFT-prob on the cached pretrained
    statistics (both implementations of the loss; the logits one once called the online model through the copy)."""
    r = _recipe(global_batch_size=4, fused_head=fused)
    a = _run(tiny_backbone, tmp_path / "ema" / "final", 16, ["ema1", {"rule": "prob", "source": "ema",
                                                                     "ema_rho": 1.0}], r)
    b = _run(tiny_backbone, tmp_path / "pp" / "final", 16, ["pp", {"rule": "prob", "source": "pretrained"}],
             _recipe(global_batch_size=4, fused_head=fused, packing=False), scores=scores16)
    assert a["fused_head"] == fused and a["global_steps"] == 4
    # the tokens the run computed (the cost table's tokens/s): every example's real tokens once, padding excluded
    from transformers import AutoTokenizer
    from prift.data import tokenize_all
    tok = AutoTokenizer.from_pretrained(str(tiny_backbone))
    real = sum(len(t["input_ids"]) for t in tokenize_all(tok, _examples(16), 96))
    assert a["tokens"] == b["tokens"] == real, (a["tokens"], b["tokens"], real)
    wa, wb = _weights(tmp_path / "ema" / "final"), _weights(tmp_path / "pp" / "final")
    w0 = _weights(tiny_backbone)
    moved = max(((wb[k] - w0[k]).norm() / w0[k].norm()).item() for k in wb)
    assert moved > 1e-3                              # the runs did train
    assert _max_rel_diff(wb, wa) < 1e-4 * max(moved, 1.0)


def test_ema_rho_0_is_the_online_source(tiny_backbone, tmp_path):
    """ρ = 0 copies the online model after every step: training equals DFT. (The fused path computes p_t from the
    same kernel for both sources; the full logits path takes the EMA's p_t from token_stats and DFT's from the
    cross-entropy, equal up to float32 rounding.)"""
    r = _recipe(global_batch_size=4, fused_head=True)
    _run(tiny_backbone, tmp_path / "ema" / "final", 16, ["ema0", {"rule": "prob", "source": "ema", "ema_rho": 0.0}], r)
    _run(tiny_backbone, tmp_path / "dft" / "final", 16, ["dft", {"rule": "prob", "source": "online"}], r)
    assert _max_rel_diff(_weights(tmp_path / "dft" / "final"), _weights(tmp_path / "ema" / "final")) < 1e-6


# ----------------------------------------------------------------------------------------------------------------------
# Kill and resume; a non-finite loss

def test_killed_run_resumes_to_the_same_weights(tiny_backbone, tmp_path):
    """SIGKILL after the first checkpoint, start again: the run resumes from its last checkpoint (optimizer,
    scheduler, data position, RNG, and the EMA copy) and ends at the weights of an uninterrupted run."""
    method = ["ema", {"rule": "prob", "source": "ema", "ema_rho": 0.5}]
    recipe = dict(epochs=2, global_batch_size=8, per_device_batch_size=4, lr=1e-3, max_length=96, max_truncated_frac=1.0,
                  bf16=False, fused_head=True,
                  save_steps=1, logging_steps=1, seed=0)
    a = _run(tiny_backbone, tmp_path / "a" / "final", 16, method, Recipe(**recipe))
    assert a["global_steps"] == 4 and a["resumed_from"] is None

    cfg = tmp_path / "b.json"
    cfg.write_text(json.dumps({"n": 16, "model": str(tiny_backbone), "out": str(tmp_path / "b" / "final"),
                               "recipe": recipe, "method": method}))
    (tmp_path / "runner.py").write_text(RUNNER)
    ckpts = tmp_path / "b" / "checkpoints"
    proc = subprocess.Popen([sys.executable, str(tmp_path / "runner.py"), str(cfg)], env=_env() | {
        "PRIFT_TEST_SLEEP": "1.5"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 300
        while last_checkpoint(ckpts) is None:
            assert proc.poll() is None, f"the run ended before its first checkpoint: {proc.stderr.read()[-2000:]}"
            assert time.time() < deadline, "no checkpoint after 300 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert not (tmp_path / "b" / "final").exists()
    killed_at = last_checkpoint(ckpts)
    assert killed_at is not None

    logs: list[str] = []
    b = _run(tiny_backbone, tmp_path / "b" / "final", 16, method, Recipe(**recipe), log=logs.append)
    assert f"resuming from {killed_at}" in logs
    assert b["resumed_from"] == killed_at and b["global_steps"] == 4
    assert _max_rel_diff(_weights(tmp_path / "a" / "final"), _weights(tmp_path / "b" / "final")) < 1e-5
    la = {r["step"]: r["loss"] for r in json.loads((tmp_path / "a" / "final" / "train_log.json").read_text())
          if "loss" in r}
    lb = {r["step"]: r["loss"] for r in json.loads((tmp_path / "b" / "final" / "train_log.json").read_text())
          if "loss" in r}
    assert lb and all(lb[s] == pytest.approx(la[s], rel=1e-5) for s in lb)


def test_checkpoint_written_partly_or_unhealthy_is_skipped(tmp_path):
    for step, complete, good in ((2, True, True), (4, True, True), (6, False, True), (10, True, False),
                                 (12, True, None)):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        if complete:
            (d / "trainer_state.json").write_text("{}")
        if good is not None:
            (d / "prift_health.json").write_text(json.dumps({"good": good}))
    (tmp_path / "checkpoint-8").mkdir()
    (tmp_path / "checkpoint-8" / "trainer_state.json").write_text("{trunc")
    # 6: incomplete, 8: torn trainer state, 10: diverged weights, 12: no health record (killed before it was written)
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    assert last_checkpoint(tmp_path / "missing") is None


class _StopAt:
    """A callback that interrupts training after optimizer step `step` (its checkpoint written): a killed run."""

    def __new__(cls, step):
        from transformers import TrainerCallback

        class Stop(TrainerCallback):
            def on_save(self, args, state, control, **kw):
                if state.global_step >= step:
                    raise KeyboardInterrupt(f"killed after step {step}")
        return Stop()


@pytest.mark.parametrize("change", ["lr", "tau"])
@pytest.mark.parametrize("when", ["finished", "killed"])
def test_a_changed_config_retrains_from_step_zero_and_the_same_config_resumes(tiny_backbone, scores16, tmp_path,
                                                                              change, when):
    """The most severe stale reuse: after a finished or killed run, a changed learning rate or PriFT-mass τ must train
    a new model from step 0 (never resume the old run's checkpoints); the same config resumes."""
    old = dict(lr=1e-3, tau=0.5)
    new = dict(old, **{change: old[change] / 2})

    def run(out, p, **kw):
        return _run(tiny_backbone, out, 16, ["pm", {"rule": "mass", "source": "pretrained", "params": {"tau": p["tau"]}}],
                    _recipe(epochs=2, global_batch_size=8, lr=p["lr"], save_steps=1, keep_checkpoints=True),
                    scores=scores16, **kw)

    out = tmp_path / "run" / "final"
    if when == "finished":
        run(out, old)
        shutil.rmtree(out)                      # what Snakemake does before it reruns a job whose params changed
    else:
        with pytest.raises(KeyboardInterrupt):
            run(out, old, callbacks=[_StopAt(2)])
    assert last_checkpoint(tmp_path / "run" / "checkpoints") is not None
    logs: list[str] = []
    again = run(out, new, log=logs.append)
    assert again["resumed_from"] is None and again["global_steps"] == 4
    assert any("made by another configuration" in line and "training from step 0" in line for line in logs)
    fresh = run(tmp_path / "fresh" / "final", new)
    assert fresh["resumed_from"] is None
    assert _max_rel_diff(_weights(fresh_dir := tmp_path / "fresh" / "final"), _weights(out)) < 1e-6, fresh_dir
    # the same config resumes: from the last checkpoint of the run, to the same weights
    shutil.rmtree(out)
    logs.clear()
    same = run(out, new, log=logs.append)
    assert same["resumed_from"] == str(tmp_path / "run" / "checkpoints" / "checkpoint-4")
    assert _max_rel_diff(_weights(tmp_path / "fresh" / "final"), _weights(out)) < 1e-6
    # a finished run of another configuration in place (no Snakemake in between) is trained again, not returned
    logs.clear()
    third = run(out, old, log=logs.append)
    assert third["resumed_from"] is None and any("trained with another configuration" in line for line in logs)


def test_a_diverged_checkpoint_is_not_good_and_a_rerun_after_nan_needs_a_choice(tiny_backbone, tmp_path, monkeypatch):
    """Weights blow up at step 2 (saved in checkpoint-2), the loss is non-finite at step 3: the last good checkpoint is
    checkpoint-1, and running again needs `after_nan: resume` (from checkpoint-1) or `restart` (from step 0)."""
    from transformers import TrainerCallback
    import torch

    class Blow(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step == 2:
                with torch.no_grad():
                    next(model.parameters()).mul_(1e30)

    calls = {"n": 0}
    inner = losses.method_loss_hidden

    def inf_at_step_3(*a, **k):
        calls["n"] += 1
        loss, diag = inner(*a, **k)
        return (loss * float("inf") if calls["n"] == 5 else loss), diag

    monkeypatch.setattr(losses, "method_loss_hidden", inf_at_step_3)
    out, ckpts = tmp_path / "run" / "final", tmp_path / "run" / "checkpoints"
    method = ["dft", {"rule": "prob"}]
    with pytest.raises(FloatingPointError, match=r"at step 3 .*checkpoint-1"):
        _run(tiny_backbone, out, 16, method, _recipe(epochs=2, save_steps=1), callbacks=[Blow()])
    assert (ckpts / "checkpoint-2" / "trainer_state.json").exists()
    assert json.loads((ckpts / "checkpoint-2" / "prift_health.json").read_text())["good"] is False
    assert last_checkpoint(ckpts) == str(ckpts / "checkpoint-1")
    monkeypatch.setattr(losses, "method_loss_hidden", inner)
    with pytest.raises(RuntimeError, match=r"non-finite loss.*after_nan: resume.*checkpoint-1.*after_nan: restart"):
        _run(tiny_backbone, out, 16, method, _recipe(epochs=2, save_steps=1))
    resumed = _run(tiny_backbone, out, 16, method, _recipe(epochs=2, save_steps=1, after_nan="resume"))
    assert resumed["resumed_from"] == str(ckpts / "checkpoint-1") and resumed["global_steps"] == 4


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_checkpoint(tiny_backbone, tmp_path, monkeypatch):
    calls = {"n": 0}
    inner = losses.method_loss_hidden

    def inf_at_step_3(*a, **k):  # 2 micro-batches per step: call 5 is the first of step 3
        calls["n"] += 1
        loss, diag = inner(*a, **k)
        return (loss * float("inf") if calls["n"] == 5 else loss), diag

    monkeypatch.setattr(losses, "method_loss_hidden", inf_at_step_3)
    logs: list[str] = []
    with pytest.raises(FloatingPointError, match=r"at step 3 .*checkpoint-2"):
        _run(tiny_backbone, tmp_path / "run" / "final", 16, ["dft", {"rule": "prob"}],
             _recipe(epochs=2, save_steps=1), log=logs.append)
    assert any(line.startswith("stopped: non-finite loss") for line in logs)
    ckpts = tmp_path / "run" / "checkpoints"
    assert last_checkpoint(ckpts) == str(ckpts / "checkpoint-2")
    assert not (ckpts / "checkpoint-3").exists() and not (tmp_path / "run" / "final").exists()


# ----------------------------------------------------------------------------------------------------------------------
# 2 processes (gloo) = 1 process with the same global batch; per-step logs

def test_two_processes_give_the_loss_curve_of_one(tiny_backbone, tmp_path):
    """per-device 4 × 2 processes × accumulation 1 vs per-device 4 × 1 process × accumulation 2: the sampler's
    global order, the token count over ranks (average_tokens_across_devices) and DDP's gradient mean make the two
    runs the same. PriFT-prob, so that the cached statistics follow each example to its rank."""
    path = tmp_path / "s.safetensors"
    score(str(tiny_backbone), _examples(32), path, max_length=96, log=lambda *_: None)
    method = ["prift-prob", {"rule": "prob", "source": "pretrained"}]
    recipe = dict(epochs=1, global_batch_size=8, per_device_batch_size=4, lr=1e-3, max_length=96, max_truncated_frac=1.0, bf16=False,
                  save_steps=100, logging_steps=1, seed=0)
    cfg = tmp_path / "c2.json"
    cfg.write_text(json.dumps({"n": 32, "model": str(tiny_backbone), "out": str(tmp_path / "two" / "final"),
                               "scores": str(path), "recipe": recipe, "method": method}))
    (tmp_path / "runner.py").write_text(RUNNER)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(tmp_path / "runner.py"), str(cfg)],
                         env=_env(), capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    one = _run(tiny_backbone, tmp_path / "one" / "final", 32, method, Recipe(**recipe), scores=path)
    s2 = json.loads((tmp_path / "two" / "final" / "prift_run.json").read_text())
    assert (s2["world_size"], s2["grad_accum"], one["world_size"], one["grad_accum"]) == (2, 1, 1, 2)
    l1 = [r for r in json.loads((tmp_path / "one" / "final" / "train_log.json").read_text()) if "loss" in r]
    l2 = [r for r in json.loads((tmp_path / "two" / "final" / "train_log.json").read_text()) if "loss" in r]
    assert len(l1) == len(l2) == 4
    for a, b in zip(l1, l2):
        for key in ("loss", "grad_norm", "weight_mean", "selected_frac", "learning_rate"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-12), (a["step"], key)
    assert _max_rel_diff(_weights(tmp_path / "one" / "final"), _weights(tmp_path / "two" / "final")) < 1e-5
    # per-step logs: loss, mean token weight, fraction selected, learning rate, tokens/s
    for r in l1:
        assert {"loss", "weight_mean", "selected_frac", "learning_rate", "tokens_per_s", "grad_norm"} <= set(r)
        assert 0 < r["weight_mean"] <= 1 and r["selected_frac"] == 1.0 and r["tokens_per_s"] > 0


def test_asft_logs_kl_and_mass_logs_selection(tiny_backbone, scores16, tmp_path):
    """One step of ASFT (reference model online) and of PriFT-mass: the KL to the reference is logged and is 0 at the
    first step (online = reference); PriFT-mass selects a fraction of the tokens."""
    r = _recipe(global_batch_size=4, max_steps=1)
    _run(tiny_backbone, tmp_path / "asft" / "final", 16, ["asft", {"rule": "prob", "asft_beta": 0.05}], r)
    log = [x for x in json.loads((tmp_path / "asft" / "final" / "train_log.json").read_text()) if "loss" in x]
    assert abs(log[0]["kl_ref"]) < 1e-6
    _run(tiny_backbone, tmp_path / "mass" / "final", 16, ["pm", {"rule": "mass", "source": "pretrained"}], r,
         scores=scores16)
    log = [x for x in json.loads((tmp_path / "mass" / "final" / "train_log.json").read_text()) if "loss" in x]
    assert 0 < log[0]["selected_frac"] < 1 and log[0]["weight_mean"] == pytest.approx(log[0]["selected_frac"])


def test_the_recipe_not_the_launcher_decides_mixed_precision(tiny_backbone, tmp_path, monkeypatch):
    """`accelerate launch --config_file config/accelerate/{ddp,fsdp}.yaml` sets ACCELERATE_MIXED_PRECISION=bf16 in every
    process, and TrainingArguments took it over the recipe: a CPU run (or a `bf16: false` recipe) then trained under
    bf16 autocast while its fingerprint said float32. The loss must run without autocast, and the run says so."""
    import torch
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    autocast = []
    inner = losses.method_loss_hidden

    def spy(*a, **k):
        autocast.append(torch.is_autocast_enabled("cpu"))
        return inner(*a, **k)

    monkeypatch.setattr(losses, "method_loss_hidden", spy)
    s = _run(tiny_backbone, tmp_path / "run" / "final", 16, ["dft", {"rule": "prob"}],
             _recipe(global_batch_size=4, max_steps=1, bf16=True))
    assert autocast == [False] and s["mixed_precision"] == "no" and s["parallelism"] == "single"


# ----------------------------------------------------------------------------------------------------------------------
# accelerate configs

@pytest.mark.parametrize("name", ["ddp", "fsdp"])
def test_accelerate_configs_are_valid(name, tiny_backbone):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.utils import DistributedType
    cfg = ClusterConfig.from_yaml_file(str(REPO / "config" / "accelerate" / f"{name}.yaml"))
    assert cfg.mixed_precision == "bf16" and cfg.num_machines == 1 and not cfg.use_cpu
    if name == "ddp":
        assert cfg.distributed_type == DistributedType.MULTI_GPU
        return
    assert cfg.distributed_type == DistributedType.FSDP
    f = cfg.fsdp_config
    assert f["fsdp_version"] == 2 and f["fsdp_reshard_after_forward"] is True
    assert f["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert f["fsdp_state_dict_type"] == "SHARDED_STATE_DICT" and f["fsdp_cpu_ram_efficient_loading"] is False
    # the transformer layers auto-wrapped are the model's _no_split_modules: the decoder layer of each backbone
    from transformers import LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM
    assert Qwen2ForCausalLM._no_split_modules == ["Qwen2DecoderLayer"]
    assert Qwen3ForCausalLM._no_split_modules == ["Qwen3DecoderLayer"]
    assert LlamaForCausalLM._no_split_modules == ["LlamaDecoderLayer"]
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy
    from prift.backbone import load_model
    model = load_model(str(tiny_backbone))
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap")
    policy = fsdp2_prepare_auto_wrap_policy(plugin, model)
    wrapped = {type(m).__name__ for m in model.modules() if policy(m)}
    assert wrapped == {"Qwen2DecoderLayer"}


# ----------------------------------------------------------------------------------------------------------------------
# Loss normalisation (the authors' per-micro-batch mean vs the global token mean), 1 and 2 processes

GRAD_RUNNER = """
import json, sys, torch
from transformers import TrainerCallback
from prift import losses, sft
cfg = json.loads(open(sys.argv[1]).read())

class Dump(TrainerCallback):   # the accumulated (and, under DDP, averaged) gradient of the first optimizer step
    def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
        if state.global_step == 0 and state.is_world_process_zero:
            torch.save({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None},
                       cfg["grads"])

sft.train(model_path=cfg["model"], examples=cfg["examples"], out_dir=cfg["out"], recipe=sft.Recipe(**cfg["recipe"]),
          method=sft.Method.from_config("sft", {"rule": "sft"}), callbacks=[Dump()], log=lambda *_: None)
"""


def _hand_grads(model_path, examples, max_length, mode):
    """float64 gradient of the first step by its definition, example by example (one example per micro-batch):
    micro_batch - the mean over micro-batches of each one's token-mean NLL; global_tokens - the NLL summed over every
    response token of the global batch divided by their number."""
    import torch
    from prift.backbone import load_model, load_tokenizer
    from prift.data import tokenize_example
    tok = load_tokenizer(model_path)
    model = load_model(model_path).double()
    sums, counts = [], []
    for ex in examples:
        t = tokenize_example(tok, ex, max_length)
        ids, labels = torch.tensor([t["input_ids"]]), torch.tensor([t["labels"]])
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1)
        target = labels[0, 1:]
        keep = target != -100
        sums.append(-logp[keep.nonzero().squeeze(1), target[keep]].sum())
        counts.append(int(keep.sum()))
    loss = (sum(s / c for s, c in zip(sums, counts)) / len(sums) if mode == "micro_batch"
            else sum(sums) / sum(counts))
    loss.backward()
    return {n: p.grad.float() for n, p in model.named_parameters() if p.grad is not None}, counts


@pytest.mark.parametrize("mode", ["micro_batch", "global_tokens"])
def test_loss_normalisation_gradients_match_hand_computation(tiny_backbone, tmp_path, mode):
    """Four examples of very different response lengths, one per micro-batch: 2 processes × 2 accumulation steps and
    1 process × 4 give the gradient of the hand computation of `loss_norm` (the authors' per-micro-batch mean, or the
    global token mean); the two modes give clearly different gradients."""
    long = "First, we add the numbers one by one and check each partial sum carefully. " * 2
    examples = [{"id": str(i), "messages": [{"role": "user", "content": f"What is {i} + {i}?"}],
                 "response": r} for i, r in enumerate(["It is 2.", long + "The answer is 4.", "6.",
                                                       long + long + "So 8."])]
    recipe = dict(epochs=1, global_batch_size=4, per_device_batch_size=1, lr=1e-3, max_length=512, bf16=False,
                  save_steps=100, logging_steps=1, seed=0, grad_clip=1e9, max_steps=1, loss_norm=mode)
    want, counts = _hand_grads(str(tiny_backbone), examples, 512, mode)
    assert max(counts) > 8 * min(counts)
    (tmp_path / "runner.py").write_text(GRAD_RUNNER)
    got = {}
    for procs in (1, 2):
        cfg = tmp_path / f"c{procs}.json"
        grads = tmp_path / f"g{procs}.pt"
        cfg.write_text(json.dumps({"model": str(tiny_backbone), "examples": examples, "recipe": recipe,
                                   "out": str(tmp_path / f"r{procs}" / "final"), "grads": str(grads)}))
        cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] if procs == 2
               else [sys.executable])
        run = subprocess.run(cmd + [str(tmp_path / "runner.py"), str(cfg)], env=_env(), capture_output=True,
                             text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        import torch
        got[procs] = torch.load(grads)
    import torch
    for procs, g in got.items():
        for name, w in want.items():
            torch.testing.assert_close(g[name], w, rtol=2e-3, atol=1e-6, msg=f"{procs} process(es), {name}")
    other, _ = _hand_grads(str(tiny_backbone), examples, 512,
                           "global_tokens" if mode == "micro_batch" else "micro_batch")
    diff = max(((other[k] - want[k]).norm() / want[k].norm()).item() for k in want)
    assert diff > 0.1


def test_weights_that_select_nothing_stop_the_run_unless_intended(tiny_backbone, scores16, tmp_path):
    """PriFT-mass with m_t = 1[u_t > 1] selects no token: the run stops after its first step, naming the method;
    with min_selected_frac 0 (Fig. 6b's τ = 1 point) it runs."""
    spec = {"rule": "mass", "source": "pretrained", "params": {"tau": 1.0, "strict": True}}
    with pytest.raises(RuntimeError, match=r"method 'mass-1'.*select 0 of \d+ response tokens.*min_selected_frac"):
        _run(tiny_backbone, tmp_path / "a" / "final", 16, ["mass-1", spec], _recipe(), scores=scores16)
    s = _run(tiny_backbone, tmp_path / "b" / "final", 16, ["mass-1", {**spec, "min_selected_frac": 0}], _recipe(),
             scores=scores16)
    assert s["global_steps"] == 2


def test_kd_with_beta_zero_loads_no_teacher(tiny_backbone, scores16, tmp_path):
    """Table 7's β = 0 is the weighted NLL on the teacher's cached statistics: the teacher is never loaded (a path
    that does not exist is never opened), and the run equals PriFT-prob on the same statistics."""
    r = _recipe(global_batch_size=4)
    kd = {"rule": "prob", "source": "reference", "reference": "tiny"}
    a = _run(tiny_backbone, tmp_path / "kd0" / "final", 16, ["kd0", {**kd, "kd_beta": 0.0}], r, scores=scores16,
             ref_model_path=str(tmp_path / "no-teacher-here"))
    _run(tiny_backbone, tmp_path / "pp" / "final", 16, ["pp", kd], r, scores=scores16)
    assert a["global_steps"] == 4
    assert _max_rel_diff(_weights(tmp_path / "pp" / "final"), _weights(tmp_path / "kd0" / "final")) < 1e-6
    with pytest.raises(OSError):   # β > 0 does load it
        _run(tiny_backbone, tmp_path / "kd1" / "final", 16, ["kd1", {**kd, "kd_beta": 0.5}], r, scores=scores16,
             ref_model_path=str(tmp_path / "no-teacher-here"))


def test_final_model_in_the_save_dtype_and_checkpoints_removed_once_published(tiny_backbone, tmp_path):
    """Disk that fits a quota: the published model in the save dtype (the training dtype by default: bfloat16 for the
    paper's bf16 runs), loadable; the trainer checkpoints (optimizer state) removed once it is published, unless
    kept."""
    import torch
    from prift.backbone import load_model
    logs = []
    s = _run(tiny_backbone, tmp_path / "a" / "final", 16, ["dft", {"rule": "prob"}],
             _recipe(save_steps=1, save_dtype="bfloat16"), log=logs.append)
    out = tmp_path / "a" / "final"
    assert s["save_dtype"] == "bfloat16" and not (tmp_path / "a" / "checkpoints").exists()
    assert any("removed the trainer checkpoints" in line for line in logs)
    assert {t.dtype for t in _weights(out).values()} == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    m = load_model(str(out), dtype="float32")
    assert next(m.parameters()).dtype == torch.float32
    # float32 on CPU by default (no bf16 training here), checkpoints kept when asked
    s = _run(tiny_backbone, tmp_path / "b" / "final", 16, ["dft", {"rule": "prob"}],
             _recipe(save_steps=1, keep_checkpoints=True))
    assert s["save_dtype"] == "float32" and last_checkpoint(tmp_path / "b" / "checkpoints") is not None
    assert {t.dtype for t in _weights(tmp_path / "b" / "final").values()} == {torch.float32}

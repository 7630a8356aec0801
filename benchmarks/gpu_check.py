"""The GPU check (issues #16 item 4, #18 item 4): what a session lent a GPU runs first, in one command of a few minutes.

    benchmarks/gpu_check.sh            # on the GPU machine: writes gpu.md / gpu.json to $OUT (or benchmarks/results)
    benchmarks/gpu_check.sh --cpu      # the same sections at tiny sizes on CPU (CI runs it so that it does not rot)

Sections, in this order, each with the code the pipeline runs; the report is rewritten after each, so a check
stopped at its time limit keeps what it measured:
  peak        the measured bf16 matrix-product rate (the MFU denominator)
  packed      bf16 SFT as prift.sft.train runs it (WeightedSFTTrainer, PriFT-prob, micro-batches of 4, `fused_head:
              auto`) on MATH-500's real lengths (sft_steps.math500_lengths), packed and padded, gradient
              checkpointing on (config/config.yaml) and off, on Qwen2.5-1.5B's shapes; and packed with checkpointing
              on Qwen2.5-Math-7B's shapes through slices of its layers: tokens/s, MFU on the real tokens, memory
  score       the frozen reference pass (`prift.scoring.reference_stats`, bf16, packed rows, torch.compile on CUDA)
              on the same lengths and both shapes: tokens/s and its ratio to one SFT epoch of as many tokens
  decode      batched decoding (transformers, bf16, KV cache) on both shapes: generated tokens/s
  projection  the paper's stages (SFT and reference pass at 1.5B and 7B, the 16-sample evaluation, DAPO at 1.5B and
              8B) in GPU-hours at these rates beside Appendix F, each job against its SLURM time limit, and the
              memory of DAPO with vLLM colocated (benchmarks/gpu_projection.py)
  sft         one optimizer step of SFT, DFT, PriFT-prob, PriFT-mass and ASFT on full-length rows of Qwen2.5-1.5B's
              shapes (V = 151,936), through prift.sft's fused head (`add_prift_head` + `method_loss_hidden`) and
              the full logits (`method_loss`), fp32 master weights under bf16 autocast; and each method's loss in
              bf16 autocast against float32 on the same batch and weights
  dapo        two DAPO steps (`prift.rl.train_rl`, transformers generation) on the tiny backbone
  fsdp        (GPU) `prift.sft.train` under the repository's FSDP launch (config/accelerate/fsdp.yaml, 1 process):
              killed after a checkpoint and resumed, final weights against an uninterrupted run; the checkpoint reloads
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
import traceback
import weakref
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_projection  # noqa: E402
import sft_steps  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHAPES = {   # Qwen2.5-1.5B: 28 layers, hidden 1536, 12 heads (2 KV), MLP 8960, tied embeddings, V = 151,936
    "gpu": dict(hidden=1536, layers=28, heads=12, kv=2, inter=8960, vocab=151_936, seq=2048, batch=4, steps=3),
    # CPU: the same code at toy sizes (CI runs it so that it does not rot; its timings mean nothing)
    "cpu": dict(hidden=32, layers=2, heads=4, kv=2, inter=64, vocab=2048, seq=128, batch=2, steps=1),
}
# Qwen2.5-Math-7B: 28 layers, hidden 3584, 28 heads (4 KV), MLP 18,944, untied embeddings, V = 152,064. Measured as
# slices of `slices` layers at full width (the step time is a + b · layers: fitted on the slices, read at 28), so
# that one GPU holds it with its optimizer state; the paper's runs shard it over 4 (FSDP).
SHAPES_7B = {
    "gpu": dict(hidden=3584, layers=28, heads=28, kv=4, inter=18_944, vocab=152_064, tied=False, slices=(2, 4)),
    "cpu": dict(hidden=48, layers=6, heads=4, kv=2, inter=96, vocab=2048, tied=False, slices=(1, 2)),
}
# The packed SFT, reference-pass and decoding sections: warm-up / timed steps (micro-batches of 4 real lengths),
# examples of the reference pass, and the decoding batch (prompts of `prompt` tokens, `new` tokens each)
WORK = {"gpu": dict(warmup=2, steps=6, score_examples=256, decode_batch=256, prompt=128, new=256),
        "cpu": dict(warmup=1, steps=1, score_examples=8, decode_batch=2, prompt=8, new=4)}
METHODS = sft_steps.METHODS


sync = sft_steps.sync


def peak_tflops(gpu: bool) -> float:
    n = 8192 if gpu else 512
    dev, dt = ("cuda", torch.bfloat16) if gpu else ("cpu", torch.float32)
    a, b = torch.randn(n, n, device=dev, dtype=dt), torch.randn(n, n, device=dev, dtype=dt)
    for _ in range(3):
        a @ b
    sync()
    t = time.perf_counter()
    reps = 10
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e12


def make_model(s: dict, device: str, layers: int | None = None):
    """A random-init Qwen2 of shape `s` (seed 0) made on `device`; `layers` cuts its depth."""
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["inter"],
                      num_hidden_layers=layers or s["layers"], num_attention_heads=s["heads"],
                      num_key_value_heads=s["kv"], max_position_embeddings=max(4096, s.get("seq", 0)),
                      tie_word_embeddings=s.get("tied", True), pad_token_id=0, eos_token_id=1, bos_token_id=None)
    with torch.device(device):
        return Qwen2ForCausalLM(cfg)


def matmul_params(s: dict, layers: int | None = None) -> int:
    """Parameters that multiply each token (the LM head's included, the embedding lookup's not) of a Qwen2 of shape
    `s`: per layer the q/k/v projections (with biases), o, the gated MLP and two norms; the final norm; the head."""
    h, d = s["hidden"], s["hidden"] // s["heads"]
    kv = s["kv"] * d
    layer = h * h + h + 2 * (h * kv + kv) + h * h + 3 * h * s["inter"] + 2 * h
    return (layers or s["layers"]) * layer + h + s["vocab"] * h


def sequence_flops(s: dict, length: int, layers: int | None = None) -> float:
    """Training FLOPs (forward + backward) of one sequence: 6 · N · L + PaLM's attention term
    12 · layers · hidden · L² (the count of model_flops, over the sequence's own length)."""
    n = layers or s["layers"]
    return 6 * matmul_params(s, layers) * length + 12 * n * s["hidden"] * length ** 2


def make_batch(s: dict, device: str, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    B, L = s["batch"], s["seq"]
    ids = torch.randint(2, s["vocab"], (B, L), generator=g)
    labels = ids.clone()
    labels[:, : L // 8] = -100                                            # the prompt
    ref = {f"ref_{k}": torch.rand(B, L, generator=g) for k in ("prob", "mass")}
    ref["ref_logp"] = ref["ref_prob"].log()
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels, **ref}
    return {k: v.to(device) for k, v in out.items()}


def model_flops(model, s: dict) -> float:
    """FLOPs of one training step (forward + backward): 6·N·T for the parameters (the tied LM head counted as a
    matmul, not the embedding lookup) + 12·layers·hidden·seq·T for attention (PaLM's count)."""
    n = sum(p.numel() for p in model.parameters())          # tied: the embedding matrix is the LM head's
    T = s["batch"] * s["seq"]
    return 6 * n * T + 12 * s["layers"] * s["hidden"] * s["seq"] * T


def loss_of(model, method, batch, fused: bool, ref_model=None, autocast: bool = True):
    from prift import losses
    labels = batch["labels"]
    fwd = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    n = (labels[:, 1:] != -100).sum()
    ref = {k: v for k, v in batch.items() if k.startswith("ref_")} if method.cached else None
    dev = batch["input_ids"].device.type
    ctx = torch.autocast(dev, dtype=torch.bfloat16) if autocast else torch.autocast(dev, enabled=False)
    with ctx:
        if fused:
            ref_hidden, ref_head = None, (None, None)
            if method.needs_ref_logits:
                with torch.no_grad():
                    ref_hidden = ref_model.base_model(**fwd, use_cache=False).last_hidden_state
                h = ref_model.get_output_embeddings()
                ref_head = (h.weight, h.bias)
            head = functools.partial(losses.method_loss_hidden, method, labels=labels, num_tokens=n, ref=ref,
                                     ref_hidden=ref_hidden, ref_head=ref_head)
            loss, _ = model(**fwd, prift_head=head)
        else:
            ref_logits = None
            if method.needs_ref_logits:
                with torch.no_grad():
                    ref_logits = ref_model(**fwd, use_cache=False).logits
            loss, _ = losses.method_loss(method, model(**fwd, use_cache=False).logits, labels, n, ref, ref_logits)
    return loss


def section_sft(s: dict, device: str, peak: float) -> tuple[list[dict], dict]:
    import copy
    from prift import losses, sft
    model = make_model(s, device)
    losses.add_prift_head(model)
    ref_model = copy.deepcopy(model).to(torch.bfloat16 if device == "cuda" else torch.float32).eval()
    ref_model.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device == "cuda")
    batch = make_batch(s, device)
    flops = model_flops(model, s)
    tokens = s["batch"] * s["seq"]
    rows = []
    for name, spec in METHODS.items():
        m = sft.Method.from_config(name, spec)
        for fused in (True, False):
            if device == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            times = []
            for i in range(1 + s["steps"]):
                sync()
                t = time.perf_counter()
                loss = loss_of(model, m, batch, fused, ref_model, autocast=device == "cuda")
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
                sync()
                if i:   # the first step warms up
                    times.append(time.perf_counter() - t)
            step = sorted(times)[len(times) // 2]
            rows.append({"method": name, "head": "fused" if fused else "full logits", "step_s": step,
                         "tokens_per_s": tokens / step, "mfu": flops / step / (peak * 1e12),
                         "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
                         "loss": float(loss.detach())})
    # bf16 autocast vs float32: the same batch and weights
    agree = {}
    for name, spec in METHODS.items():
        m = sft.Method.from_config(name, spec)
        with torch.no_grad():
            a = float(loss_of(model, m, batch, True, ref_model, autocast=True))
            b = float(loss_of(model, m, batch, True, ref_model.float(), autocast=False))
        ref_model.to(torch.bfloat16 if device == "cuda" else torch.float32)
        agree[name] = {"bf16": a, "fp32": b, "rel_diff": abs(a - b) / max(abs(b), 1e-12)}
    return rows, {"flops_per_step": flops, "tokens_per_step": tokens, "params": sum(p.numel() for p in
                                                                                   model.parameters()),
                  "bf16_vs_fp32": agree}


def free(device: str) -> None:
    import gc
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def depth_fit(measured: dict[int, float], layers: int) -> float:
    """A time that is a + b · depth, fitted through two measured depths ({depth: seconds}) and read at `layers`.
    Where the deeper slice did not take longer (noise swamping slices too small to time, as on CPU), the deeper
    slice's time scaled by depth: an upper bound, as it counts the fixed part `layers / depth` times."""
    (d1, t1), (d2, t2) = sorted(measured.items())
    if t2 <= t1:
        return t2 * layers / d2
    return t1 + (t2 - t1) / (d2 - d1) * (layers - d1)


def sft_run(s: dict, device: str, rows: list[dict], w: dict, *, packed: bool, gc: bool, layers: int | None = None):
    """`w["warmup"]` + `w["steps"]` optimizer steps of prift's trainer (PriFT-prob, micro-batches of 4 of `rows`,
    `fused_head: auto`) on a model of shape `s`: (seconds of the timed steps, the trainer's loss path, peak GiB)."""
    model = make_model(s, device, layers)
    free(device)
    trainer, clock = sft_steps.trainer(model, rows, packed=packed, gradient_checkpointing=gc, device=device,
                                       max_steps=w["warmup"] + w["steps"])
    ends = clock.wall
    trainer.train()
    fused = trainer.fused
    mem = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    trainer.accelerator.free_memory()   # the accelerator's references to the model and optimizer
    alive = weakref.ref(model)
    del trainer, model
    free(device)
    if alive() is not None:
        raise RuntimeError("the SFT run's model outlived its trainer: the next run would add its memory")
    return ends[-1] - ends[w["warmup"] - 1], fused, mem


def section_packed(mode: str, device: str, peak: float) -> dict:
    """bf16 SFT on MATH-500's real lengths (sft_steps.math500_lengths), as prift.sft.train runs it: micro-batches of
    4, packed (the recipe's default) and padded, gradient checkpointing on (config/config.yaml) and off; on
    Qwen2.5-1.5B's shapes, and on Qwen2.5-Math-7B's through its slices (packed, checkpointing on). Tokens/s and MFU
    count the real tokens only."""
    s, s7, w = SHAPES[mode], SHAPES_7B[mode], WORK[mode]
    n = (w["warmup"] + w["steps"]) * sft_steps.BATCH
    rows = sft_steps.rows_of_lengths(sft_steps.math500_lengths(), s["vocab"], n)
    timed = [len(r["input_ids"]) for r in rows[w["warmup"] * sft_steps.BATCH:]]
    out = {"tokens": sum(timed), "steps": w["steps"], "runs": []}
    for gc in (True, False):
        for packed in (True, False):
            secs, fused, mem = sft_run(s, device, rows, w, packed=packed, gc=gc)
            flops = sum(sequence_flops(s, L) for L in timed)
            out["runs"].append({"model": "1.5B", "packed": packed, "gradient_checkpointing": gc, "fused_head": fused,
                                "seconds": secs, "tokens_per_s": sum(timed) / secs,
                                "mfu": flops / secs / (peak * 1e12), "peak_mem_gb": mem,
                                "positions": sft_steps.positions(rows[w["warmup"] * sft_steps.BATCH:],
                                                                 sft_steps.BATCH, packed)})
    rows7 = sft_steps.rows_of_lengths(sft_steps.math500_lengths(), s7["vocab"], n)
    by_depth = {}
    for k in s7["slices"]:
        by_depth[k], fused, _ = sft_run(s7, device, rows7, w, packed=True, gc=True, layers=k)
    secs = full_depth(by_depth, s7)
    flops = sum(sequence_flops(s7, L) for L in timed)
    out["runs"].append({"model": "7B", "packed": True, "gradient_checkpointing": True, "fused_head": fused,
                        "seconds": secs, "tokens_per_s": sum(timed) / secs, "mfu": flops / secs / (peak * 1e12),
                        "peak_mem_gb": None, "slices_seconds": by_depth})
    return out


def score_seconds(model, rows: list[dict], compile: bool) -> tuple[float, float]:
    """(first call, second call) seconds of the reference pass as the score verb runs it (config/config.yaml
    scoring); the first compiles on CUDA."""
    from prift.scoring import reference_stats
    times = []
    for _ in range(2):
        sync()
        t = time.perf_counter()
        reference_stats(model, rows, topk=20, max_batch_tokens=32768, chunk_size=1024, progress=False,
                        compile=compile)
        sync()
        times.append(time.perf_counter() - t)
    return times[0], times[1]


def shapes(mode: str):
    """The two shapes the check times: (name, shape, the depths it is built at: None whole, the 7B its slices)."""
    return (("1.5B", SHAPES[mode], (None,)), ("7B", SHAPES_7B[mode], SHAPES_7B[mode]["slices"]))


def frozen_runs(shape: dict, depths, device: str, dtype, measure) -> dict:
    """{depth: measure(model)} for a frozen (eval, `dtype`) model of `shape` built at each depth, freed after."""
    out = {}
    for k in depths:
        model = make_model(shape, device, k).to(dtype).eval()
        out[k] = measure(model)
        del model
        free(device)
    return out


def full_depth(seconds: dict, shape: dict) -> float:
    """The whole model's seconds: measured ({None: s}), or fitted through its slices' ({depth: s})."""
    return seconds[None] if None in seconds else depth_fit(seconds, shape["layers"])


def section_score(mode: str, device: str, packed: dict) -> dict:
    """The frozen reference pass (`prift.scoring.reference_stats`, bf16 weights, packed rows, torch.compile on CUDA)
    over MATH-500's real lengths, on both shapes (7B through its slices), and its ratio to one SFT epoch of as many
    tokens of the same length distribution (tokens/s of the packed section's runs, checkpointing on and off)."""
    gpu = mode == "gpu"
    w = WORK[mode]
    out = {"examples": w["score_examples"], "compile": gpu}
    for name, shape, depths in shapes(mode):
        rows = sft_steps.rows_of_lengths(sft_steps.math500_lengths(), shape["vocab"], w["score_examples"], seed=1)
        tokens = sum(len(r["input_ids"]) for r in rows)

        def measure(model):
            try:
                return score_seconds(model, rows, out["compile"])
            except Exception:   # torch.compile needs a working toolchain (triton, a C compiler): measure without
                if not out["compile"]:
                    raise
                out["compile_error"] = traceback.format_exc()[-2000:]
                out["compile"] = False
                return score_seconds(model, rows, False)
        runs = frozen_runs(shape, depths, device, torch.bfloat16 if gpu else torch.float32, measure)
        first, second = {k: v[0] for k, v in runs.items()}, {k: v[1] for k, v in runs.items()}
        secs = full_depth(second, shape)
        rate = tokens / secs
        sft = {("gc" if r["gradient_checkpointing"] else "no_gc"): r["tokens_per_s"] for r in packed["runs"]
               if r["model"] == name and r["packed"]}
        out[name] = {"tokens": tokens, "response_tokens": sum(map(sft_steps.response_tokens, rows)),
                     "first_s": first, "second_s": second, "seconds": secs, "tokens_per_s": rate,
                     "ratio_to_sft_epoch": {k: v / rate for k, v in sft.items()}}
    return out


def decode_seconds(model, w: dict, vocab: int, device: str) -> float:
    """Seconds of `w["new"]` greedy decoding steps of a batch of `w["decode_batch"]` prompts (transformers'
    generate with its KV cache; a short call first warms up)."""
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(3, vocab, (w["decode_batch"], w["prompt"]), generator=g).to(device)
    kw = dict(do_sample=False, pad_token_id=0, eos_token_id=None)
    with torch.no_grad():
        model.generate(ids, max_new_tokens=4, min_new_tokens=4, **kw)
        sync()
        t = time.perf_counter()
        model.generate(ids, max_new_tokens=w["new"], min_new_tokens=w["new"], **kw)
        sync()
    return time.perf_counter() - t


def section_decode(mode: str, device: str) -> dict:
    """Sampling's rate: batched decoding with transformers (the pipeline's `transformers` backend, bf16, KV cache) on
    both shapes (7B through its slices): generated tokens/s. vLLM (the GPU backend, not on the GPU image) batches
    continuously and replays CUDA graphs, so these rates bound its time from above."""
    w = WORK[mode]
    dtype = torch.bfloat16 if mode == "gpu" else torch.float32
    out = {"batch": w["decode_batch"], "prompt": w["prompt"], "new": w["new"]}
    for name, shape, depths in shapes(mode):
        secs = frozen_runs(shape, depths, device, dtype, lambda m: decode_seconds(m, w, shape["vocab"], device))
        total = full_depth(secs, shape)
        out[name] = {"seconds": total, "by_depth": secs, "tokens_per_s": w["decode_batch"] * w["new"] / total}
    return out


def tiny_backbone(root: Path, steps: int = 40) -> Path:
    from prift.backbone import build_tiny
    from prift.demo_data import demo_math
    out = root / "tiny"
    if not (out / "config.json").exists():
        build_tiny(out, demo_math("pretrain", 1500), pretrain_steps=steps, seed=0, max_position_embeddings=1024,
                   log=lambda *_: None)
    return out


def section_dapo(root: Path, gpu: bool) -> dict:
    from prift import rl
    from prift.demo_data import demo_math
    model = tiny_backbone(root, steps=40 if gpu else 10)
    prompts = [{"id": str(i), "problem": r["problem"], "gold": r["answer"]}
               for i, r in enumerate(demo_math("train", 64))]
    size = dict(prompt_batch_size=8, mini_batch_size=4, rollouts_per_prompt=8, max_response_length=64,
                micro_batch_size=16) if gpu else dict(prompt_batch_size=2, mini_batch_size=2, rollouts_per_prompt=4,
                                                      max_response_length=16, micro_batch_size=8, cpu_threads=1)
    recipe = rl.RLRecipe(steps=2, lr=1e-5, warmup_steps=0, max_prompt_length=256, overlong_buffer=8, max_gen_rounds=2,
                         on_exhausted="mask", use_vllm=False, bf16=gpu, gradient_checkpointing=False, save_steps=100,
                         **size)
    t = time.perf_counter()
    s = rl.train_rl(model_path=str(model), prompts=prompts, out_dir=root / "rl" / "final", recipe=recipe,
                    log=lambda *_: None)
    hist = [h for h in json.loads((root / "rl" / "final" / "train_log.json").read_text()) if "reward" in h]
    return {"rl_steps": s["rl_steps"], "seconds": time.perf_counter() - t,
            "generation_tokens_per_s": [h.get("generation/tokens_per_s") for h in hist],
            "loss": [h.get("loss") for h in hist]}


FSDP_RUNNER = """
import json, sys
from transformers import TrainerCallback
from prift import losses, sft
from prift.data import prepare_train
cfg = json.loads(sys.argv[1])

class Kill(TrainerCallback):
    def on_save(self, args, state, control, **kw):
        if cfg["kill_at"] and state.global_step >= cfg["kill_at"]:
            raise KeyboardInterrupt("killed")

ex = prepare_train({"generator": "demo_math", "split": "train", "n": 64}, "math", "qwen-boxed")
r = sft.Recipe(epochs=1, global_batch_size=8, per_device_batch_size=4, lr=1e-3, max_length=128, bf16=True,
               save_steps=2, logging_steps=1, seed=0, max_truncated_frac=1.0, keep_checkpoints=True)
try:
    s = sft.train(model_path=cfg["model"], examples=ex, out_dir=cfg["out"], recipe=r,
                  method=sft.Method.from_config("prift-mass", {"rule": "mass", "source": "online"}),
                  callbacks=[Kill()], log=print)
    print("SUMMARY " + json.dumps({k: s[k] for k in ("global_steps", "resumed_from", "world_size")}))
except KeyboardInterrupt:
    print("KILLED")
"""


def section_fsdp(root: Path) -> dict:
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    model = tiny_backbone(root)
    runner = root / "fsdp_runner.py"
    runner.write_text(FSDP_RUNNER)
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")

    def launch(out, kill_at):
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(REPO / "config" / "accelerate" / "fsdp.yaml"), "--num_processes", "1", str(runner),
               json.dumps({"model": str(model), "out": str(out), "kill_at": kill_at})]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        return p.stdout + p.stderr
    a_log = launch(root / "fsdp-a" / "final", 0)
    b1 = launch(root / "fsdp-b" / "final", 2)
    b2 = launch(root / "fsdp-b" / "final", 0)
    out = {"uninterrupted": "SUMMARY" in a_log, "killed": "KILLED" in b1, "resumed": "resuming from" in b2}
    if out["uninterrupted"] and out["resumed"]:
        wa = load_file(str(root / "fsdp-a" / "final" / "model.safetensors"))
        wb = load_file(str(root / "fsdp-b" / "final" / "model.safetensors"))
        out["max_rel_diff"] = max(float((wa[k].float() - wb[k].float()).norm() / wa[k].float().norm().clamp(min=1e-12))
                                  for k in wa)
        out["reloads"] = AutoModelForCausalLM.from_pretrained(root / "fsdp-a" / "final") is not None
        out["dtype"] = str(next(iter(wa.values())).dtype)
    else:
        out["log_tail"] = (a_log + b1 + b2)[-3000:]
    return out


def projection(res: dict, mode: str) -> dict:
    """The paper's stages at this check's rates (gpu_projection): SFT packed with gradient checkpointing (the
    config's), the reference pass, transformers decoding; and the colocated DAPO memory on this GPU and on an 80 GB
    one."""
    import yaml
    from prift import resources
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    table = resources.load()
    sft = {r["model"]: r["tokens_per_s"] for r in res["packed"]["runs"] if r["packed"] and r["gradient_checkpointing"]}
    rates = {"sft": sft, "score": {k: res["score"][k]["tokens_per_s"] for k in ("1.5B", "7B")},
             "decode": {k: res["decode"][k]["tokens_per_s"] for k in ("1.5B", "7B")}}
    lengths = gpu_projection.mean_lengths(sft_steps.math500_lengths())
    problems = gpu_projection.math_problems(cfg, lambda path: len((REPO / path).read_text().splitlines()))
    gib = torch.cuda.get_device_properties(0).total_memory / 2**30 if mode == "gpu" else 141.0
    return {"rates": rates, "lengths": lengths, "problems": problems,
            "stages": gpu_projection.stages(cfg, table, rates, lengths, problems),
            "memory": [*gpu_projection.colocated_memory(cfg, table, gib),
                       *gpu_projection.colocated_memory(cfg, table, 80.0 * 1e9 / 2**30)]}


def write_md(res: dict, path: Path) -> None:
    """The report of whatever sections have run (the check writes it after each)."""
    gpu = res["mode"] == "gpu"
    L = [f"# GPU check ({res['mode']}): {res['device']}", "",
         f"{res['date']}; torch {res['torch']}, transformers {res['transformers']}. Command: `benchmarks/gpu_check.sh"
         f"{'' if gpu else ' --cpu'}`" + (f", {res['seconds']:.0f} s in all." if "seconds" in res else ".")]
    if "peak_tflops" in res:
        L[-1] += (f" Measured peak {res['peak_tflops']:.3g} TFLOP/s ({'bf16' if gpu else 'fp32'} matrix product), "
                  "the MFU denominator.")
    if "packed" in res:
        p = res["packed"]
        L += ["", f"## {'bf16 ' if gpu else ''}SFT on MATH-500's real lengths (micro-batches of 4, {p['steps']} "
              f"timed steps, {p['tokens']} tokens)", "",
              "prift's WeightedSFTTrainer (PriFT-prob, `fused_head: auto`); 7B: Qwen2.5-Math-7B's shapes through "
              "slices of its layers (the step time fitted as a + b · layers). MFU: 6 · N · L + "
              "12 · layers · hidden · L² per sequence, real tokens only (goal ≥ 40% on 1.5B shapes).", "",
              "| model | batches | gradient checkpointing | LM head | tokens/s | MFU | peak memory (GiB) |",
              "|---|---|---|---|---:|---:|---:|"]
        for r in p["runs"]:
            mem = "" if r["peak_mem_gb"] is None else f"{r['peak_mem_gb']:.1f}"
            head = "fused" if r["fused_head"] else "full logits"
            L.append(f"| {r['model']} | {'packed' if r['packed'] else 'padded'} | "
                     f"{'on' if r['gradient_checkpointing'] else 'off'} | {head} | {r['tokens_per_s']:.0f} | "
                     f"{100 * r['mfu']:.1f}% | {mem} |")
    if "sft" in res:
        meta = res["sft"]["meta"]
        L += ["", f"## SFT step of each method ({meta['params'] / 1e9:.2f} B parameters, "
              f"{meta['tokens_per_step']} tokens per step, full-length rows)", "",
              "| method | LM head | step (s) | tokens/s | MFU | peak memory (GiB) |", "|---|---|---|---|---|---|"]
        for r in res["sft"]["rows"]:
            mem = "" if r["peak_mem_gb"] is None else f"{r['peak_mem_gb']:.1f}"
            L.append(f"| {r['method']} | {r['head']} | {r['step_s']:.3f} | {r['tokens_per_s']:.0f} | "
                     f"{100 * r['mfu']:.1f}% | {mem} |")
        L += ["", "bf16 autocast against float32, the same batch and weights:", "",
              "| method | bf16 | fp32 | relative difference |", "|---|---|---|---|"]
        for name, a in meta["bf16_vs_fp32"].items():
            L.append(f"| {name} | {a['bf16']:.5f} | {a['fp32']:.5f} | {a['rel_diff']:.2e} |")
    if "score" in res:
        sc = res["score"]
        L += ["", f"## Reference pass ({sc['examples']} MATH-500-length examples, packed rows, compile: "
              f"{sc['compile']})", "", "| model | tokens | tokens/s | / SFT epoch (checkpointing on) | "
              "/ SFT epoch (off) |", "|---|---:|---:|---:|---:|"]
        for k in ("1.5B", "7B"):
            x = sc[k]
            ratio = {g: f"{x['ratio_to_sft_epoch'][g]:.2f}" if g in x["ratio_to_sft_epoch"] else "not measured"
                     for g in ("gc", "no_gc")}
            L.append(f"| {k} | {x['tokens']} | {x['tokens_per_s']:.0f} | {ratio['gc']} | {ratio['no_gc']} |")
        if "compile_error" in sc:
            L += ["", "torch.compile failed here, so the pass ran uncompiled (prift's `scoring.compile: auto` would "
                  "fail the same way on this machine):", "", "```", sc["compile_error"].rstrip(), "```"]
    if "decode" in res:
        d = res["decode"]
        L += ["", f"## Decoding (transformers, batch {d['batch']}, {d['prompt']}-token prompts, {d['new']} new tokens)",
              "", " | ".join(f"{k}: {d[k]['tokens_per_s']:.0f} tokens/s" for k in ("1.5B", "7B")) + "."]
    if "projection" in res:
        pr = res["projection"]
        L += [""] + gpu_projection.markdown(pr["stages"], pr["memory"], pr["lengths"], res["device"])
    if "dapo" in res:
        d = res["dapo"]
        L += ["", "## DAPO (tiny backbone, transformers generation)", "",
              f"{d['rl_steps']} RL steps in {d['seconds']:.1f} s; generation tokens/s per step: "
              f"{', '.join(f'{x:.0f}' for x in d['generation_tokens_per_s'] if x is not None)}; losses {d['loss']}."]
    if "fsdp" in res or "dapo" in res:
        f = res.get("fsdp")
        L += ["", "## FSDP2 (config/accelerate/fsdp.yaml, 1 process): kill, resume, save", ""]
        L += ([f"{json.dumps(f)}"] if f else ["not run on CPU (accelerate keeps FSDP for GPUs; tests/test_fsdp_cpu.py "
                                              "reaches FSDP2 on CPU)"])
    for name, err in res.get("errors", {}).items():
        L += ["", f"## Section `{name}` failed", "", "```", err.rstrip(), "```"]
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(L) + "\n")
    tmp.replace(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("gpu", "cpu"), default="gpu" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "benchmarks" / "results"))
    ap.add_argument("--work", default="/tmp/prift-gpu-check")
    a = ap.parse_args(argv)
    gpu = a.mode == "gpu"
    if gpu and not torch.cuda.is_available():
        raise SystemExit("--mode gpu needs CUDA; use --cpu")
    device = "cuda" if gpu else "cpu"
    if not gpu:
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / ("gpu" if gpu else "gpu_check_cpu")
    import transformers
    t0 = time.perf_counter()
    res = {"mode": a.mode, "device": torch.cuda.get_device_name() if gpu else "CPU", "torch": torch.__version__,
           "transformers": transformers.__version__, "date": time.strftime("%Y-%m-%d")}
    s = SHAPES[a.mode]

    def save():
        tmp = stem.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(res, indent=1, default=str))
        tmp.replace(stem.with_suffix(".json"))
        write_md(res, stem.with_suffix(".md"))

    def step(name, fn, needs=()):
        """Run one section and write what has run so far (a check stopped at its time limit keeps it). On the GPU
        a failing section is recorded (its traceback in the report) and the check goes on to the next: the
        session's device time allows one run. On CPU (CI) it fails the check."""
        if any(n not in res for n in needs):
            res.setdefault("errors", {})[name] = f"not run: it needs {', '.join(n for n in needs if n not in res)}"
            save()
            return
        t = time.perf_counter()
        try:
            res[name] = fn()
        except Exception:
            if not gpu:
                raise
            res.setdefault("errors", {})[name] = traceback.format_exc()[-4000:]
            print(f"[gpu_check] {name} FAILED:\n{res['errors'][name]}", flush=True)
            free(device)
        res.setdefault("section_seconds", {})[name] = round(time.perf_counter() - t, 1)
        print(f"[gpu_check] {name}: {time.perf_counter() - t:.1f} s", flush=True)
        save()
    step("peak_tflops", lambda: peak_tflops(gpu))
    step("packed", lambda: section_packed(a.mode, device, res["peak_tflops"]), needs=("peak_tflops",))
    step("score", lambda: section_score(a.mode, device, res["packed"]), needs=("packed",))
    step("decode", lambda: section_decode(a.mode, device))
    step("projection", lambda: projection(res, a.mode), needs=("packed", "score", "decode"))
    step("sft", lambda: dict(zip(("rows", "meta"), section_sft(s, device, res["peak_tflops"]))),
         needs=("peak_tflops",))
    free(device)
    step("dapo", lambda: section_dapo(work, gpu))
    if gpu:
        step("fsdp", lambda: section_fsdp(work))
    res["seconds"] = time.perf_counter() - t0
    save()
    print(f"[gpu_check] → {stem}.md ({res['seconds']:.0f} s)")
    if res.get("errors"):
        raise SystemExit(f"[gpu_check] sections failed: {', '.join(res['errors'])} (tracebacks in {stem}.md)")
    return res


if __name__ == "__main__":
    main()

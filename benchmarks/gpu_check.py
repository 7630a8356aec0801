"""The GPU check (issue #16, item 4): what a session lent a GPU runs first, in one command of a few minutes.

    benchmarks/gpu_check.sh            # on the GPU machine: writes gpu.md / gpu.json to $OUT (or benchmarks/results)
    benchmarks/gpu_check.sh --cpu      # the same sections at tiny sizes on CPU (CI runs it so that it does not rot)

Sections, each with the code the pipeline runs:
  peak      the measured bf16 matrix-product rate (the MFU denominator)
  sft       one optimizer step of SFT, DFT, PriFT-prob, PriFT-mass and ASFT on a random-init model of
            Qwen2.5-1.5B's shapes (V = 151,936), through prift.sft's fused head (`add_prift_head` +
            `method_loss_hidden`) and through the full logits (`method_loss`), fp32 master weights under bf16 autocast
            as the trainer runs them: tokens/s, MFU (6·N·T + attention over the measured peak), peak memory
  score     the frozen reference pass (`prift.scoring.reference_stats`, torch.compile on CUDA) at V = 151,936:
            tokens/s and its ratio to one SFT epoch on the same tokens (PriFT-prob's step)
  bf16      each method's loss in bf16 autocast against float32 on the same batch and weights
  dapo      two DAPO steps (`prift.rl.train_rl`, transformers generation) on the tiny backbone
  fsdp      (GPU) `prift.sft.train` under the repository's FSDP launch (config/accelerate/fsdp.yaml, 1 process): killed
            after a checkpoint and resumed, final weights against an uninterrupted run; the saved checkpoint reloads
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHAPES = {   # Qwen2.5-1.5B: 28 layers, hidden 1536, 12 heads (2 KV), MLP 8960, tied embeddings, V = 151,936
    "gpu": dict(hidden=1536, layers=28, heads=12, kv=2, inter=8960, vocab=151_936, seq=2048, batch=4, steps=3),
    # CPU: the same code at toy sizes (CI runs it so that it does not rot; its timings mean nothing)
    "cpu": dict(hidden=32, layers=2, heads=4, kv=2, inter=64, vocab=2048, seq=128, batch=2, steps=1),
}
METHODS = {
    "sft": {"rule": "sft", "source": "online"},
    "dft": {"rule": "prob", "source": "online"},
    "prift-prob": {"rule": "prob", "source": "pretrained"},
    "prift-mass": {"rule": "mass", "source": "pretrained", "params": {"tau": 0.5}},
    "asft": {"rule": "prob", "source": "online", "asft_beta": 0.05},
}


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


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


def make_model(s: dict, device: str):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["inter"],
                      num_hidden_layers=s["layers"], num_attention_heads=s["heads"], num_key_value_heads=s["kv"],
                      max_position_embeddings=max(4096, s["seq"]), tie_word_embeddings=True, pad_token_id=0,
                      eos_token_id=1, bos_token_id=None)
    return Qwen2ForCausalLM(cfg).to(device)


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
                         "loss": float(loss)})
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


def section_score(s: dict, device: str, sft_tokens_per_s: float) -> dict:
    from prift.scoring import reference_stats
    model = make_model(s, device).to(torch.bfloat16 if device == "cuda" else torch.float32).eval()
    g = torch.Generator().manual_seed(2)
    n_seq, L = (32, 1024) if device == "cuda" else (2, 128)
    data = []
    for _ in range(n_seq):
        ids = torch.randint(2, s["vocab"], (L,), generator=g).tolist()
        data.append({"input_ids": ids, "labels": [-100] * (L // 8) + ids[L // 8:]})
    resp = sum(sum(x != -100 for x in d["labels"][1:]) for d in data)
    out = {"sequences": n_seq, "length": L, "response_tokens": resp, "compile": device == "cuda"}
    for run in ("first", "second"):   # the first call compiles (CUDA)
        sync()
        t = time.perf_counter()
        reference_stats(model, data, max_batch_tokens=32768, chunk_size=1024, progress=False,
                        compile=device == "cuda")
        sync()
        out[f"{run}_s"] = time.perf_counter() - t
    out["tokens_per_s"] = resp / out["second_s"]
    out["ratio_to_sft_epoch"] = sft_tokens_per_s / out["tokens_per_s"]   # (T / ref rate) / (T / SFT rate)
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


def write_md(res: dict, path: Path) -> None:
    L = [f"# GPU check ({res['mode']}): {res['device']}", "",
         f"torch {res['torch']}, transformers {res['transformers']}; measured peak {res['peak_tflops']:.3g} TFLOP/s "
         f"({'bf16' if res['mode'] == 'gpu' else 'fp32'} matrix product). Command: `benchmarks/gpu_check.sh"
         f"{' --cpu' if res['mode'] == 'cpu' else ''}`, {res['seconds']:.0f} s in all.", "",
         f"## SFT step ({res['sft_meta']['params'] / 1e9:.2f} B parameters, {res['sft_meta']['tokens_per_step']} tokens "
         f"per step)", "", "| method | LM head | step (s) | tokens/s | MFU | peak memory (GiB) |", "|---|---|---|---|---|---|"]
    for r in res["sft"]:
        mem = "" if r["peak_mem_gb"] is None else f"{r['peak_mem_gb']:.1f}"
        L.append(f"| {r['method']} | {r['head']} | {r['step_s']:.3f} | {r['tokens_per_s']:.0f} | {100 * r['mfu']:.1f}% "
                 f"| {mem} |")
    sc = res["score"]
    L += ["", "## Reference pass", "", f"{sc['sequences']} sequences × {sc['length']} tokens ({sc['response_tokens']} "
          f"response tokens), compile: {sc['compile']}: first call {sc['first_s']:.1f} s, then {sc['second_s']:.2f} s "
          f"= {sc['tokens_per_s']:.0f} tokens/s, **{sc['ratio_to_sft_epoch']:.2f}** × one PriFT-prob SFT epoch on the "
          f"same tokens.", "", "## bf16 autocast vs float32 loss", "", "| method | bf16 | fp32 | relative difference |",
          "|---|---|---|---|"]
    for name, a in res["sft_meta"]["bf16_vs_fp32"].items():
        L.append(f"| {name} | {a['bf16']:.5f} | {a['fp32']:.5f} | {a['rel_diff']:.2e} |")
    d = res["dapo"]
    L += ["", "## DAPO (tiny backbone, transformers generation)", "",
          f"{d['rl_steps']} RL steps in {d['seconds']:.1f} s; generation tokens/s per step: "
          f"{', '.join(f'{x:.0f}' for x in d['generation_tokens_per_s'] if x is not None)}; losses {d['loss']}."]
    f = res.get("fsdp")
    L += ["", "## FSDP2 (config/accelerate/fsdp.yaml, 1 process): kill, resume, save", ""]
    L += ([f"{json.dumps(f)}"] if f else ["not run on CPU (accelerate keeps FSDP for GPUs; tests/test_fsdp_cpu.py "
                                          "reaches FSDP2 on CPU)"])
    path.write_text("\n".join(L) + "\n")


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
    import transformers
    t0 = time.perf_counter()
    res = {"mode": a.mode, "device": torch.cuda.get_device_name() if gpu else "CPU", "torch": torch.__version__,
           "transformers": transformers.__version__}
    s = SHAPES[a.mode]

    def step(name, fn):
        t = time.perf_counter()
        out = fn()
        print(f"[gpu_check] {name}: {time.perf_counter() - t:.1f} s", flush=True)
        return out
    res["peak_tflops"] = step("peak", lambda: peak_tflops(gpu))
    res["sft"], res["sft_meta"] = step("sft", lambda: section_sft(s, device, res["peak_tflops"]))
    pp = next(r for r in res["sft"] if r["method"] == "prift-prob" and r["head"] == "fused")
    if gpu:
        torch.cuda.empty_cache()
    res["score"] = step("score", lambda: section_score(s, device, pp["tokens_per_s"]))
    res["dapo"] = step("dapo", lambda: section_dapo(work, gpu))
    if gpu:
        res["fsdp"] = step("fsdp", lambda: section_fsdp(work))
    res["seconds"] = time.perf_counter() - t0
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "gpu" if gpu else "gpu_check_cpu"
    (out / f"{stem}.json").write_text(json.dumps(res, indent=1, default=str))
    write_md(res, out / f"{stem}.md")
    print(f"[gpu_check] → {out / stem}.md ({res['seconds']:.0f} s)")
    return res


if __name__ == "__main__":
    main()

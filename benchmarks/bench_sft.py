"""Benchmark of the weighted SFT step (issue 4): step time and peak memory of SFT, DFT, PriFT-prob (cached),
PriFT-mass (cached) and ASFT, side by side in one run.

A tiny random-init Qwen2 model with the real Qwen vocabulary (151,936; hidden 64, 2 layers) makes the LM head and the
[tokens, V] work dominate, as it does at 7B with long sequences. Every configuration trains with the real
`WeightedSFTTrainer` (collator with cached statistics, compute_loss, AdamW, grad clipping) on random token sequences
(the first eighth of each is prompt), in a fresh subprocess so that its peak RSS (ru_maxrss) is its own. Step time =
time between consecutive optimizer steps (data loading + collator + forward + backward + optimizer), median over
the timed steps after a few warm-up steps, both wall time and the process's CPU time (one thread by default: on a
shared machine the CPU time is the steadier measure of the work a step does); the configurations are interleaved over
several rounds and the median over rounds is reported.

Configurations: the five methods through the default (fused) path — loss from the hidden states with a chunked LM head,
no [B, L, V] logits — plus, for comparison, TRL's own SFTTrainer (`loss_type="nll"`, its fused LM head) and SFT /
PriFT-prob through the full-logits path (`fused_head: false`).

    .venv/bin/python benchmarks/bench_sft.py            # writes benchmarks/results/sft_step.{json,md}
    .venv/bin/python benchmarks/bench_sft.py --seq 2048 --batch 2 --rounds 1
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import children  # noqa: E402
import sft_steps  # noqa: E402
from sft_steps import METHODS  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
V = 151_936
# name -> (method, fused head); "trl-sft" is TRL's SFTTrainer itself
CONFIGS = {
    "sft": ("sft", True), "dft": ("dft", True), "prift-prob": ("prift-prob", True),
    "prift-mass": ("prift-mass", True), "asft": ("asft", True),
    "trl-sft": (None, True), "sft/full-logits": ("sft", False), "prift-prob/full-logits": ("prift-prob", False),
}


def make_model(seed: int = 0):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=V, hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=8192, tie_word_embeddings=True,
                      pad_token_id=0, eos_token_id=1, bos_token_id=None)
    return Qwen2ForCausalLM(cfg)


def run_one(config: str, seq: int, batch: int, warmup: int, steps: int, threads: int) -> dict:
    """One configuration in this (fresh) process."""
    from datasets import Dataset
    from trl import SFTTrainer
    from prift import sft

    torch.set_num_threads(threads)
    method_name, fused = CONFIGS[config]
    n_steps = warmup + steps
    g = torch.Generator().manual_seed(0)
    prompt = seq // 8
    rows = []
    for i in range(n_steps * batch):
        ids = torch.randint(2, V, (seq,), generator=g).tolist()
        rows.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:], "idx": i})
    model = make_model()
    if method_name is None:   # TRL's own SFTTrainer, with prift's collator (no statistics)
        clock = sft_steps.clock()
        trainer = SFTTrainer(model=model, args=sft_steps.config(batch=batch, max_steps=n_steps, max_length=seq),
                             train_dataset=Dataset.from_list(rows), processing_class=sft_steps.tokenizer(),
                             data_collator=sft.WeightedCollator(0, None, stat_keys=()), callbacks=[clock])
        ref_model = None
    else:
        method = sft.Method.from_config(method_name, METHODS[method_name])
        ref_model = make_model() if method.needs_ref_logits else None
        trainer, clock = sft_steps.trainer(model, rows, packed=False, method=method_name, ref_model=ref_model,
                                           fused_head=fused, max_steps=n_steps, batch=batch, max_length=seq)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    ends = list(zip(clock.wall, clock.cpu))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times = [b[0] - a[0] for a, b in zip(ends[warmup - 1:], ends[warmup:])]
    cpu = [b[1] - a[1] for a, b in zip(ends[warmup - 1:], ends[warmup:])]
    ref_bytes = sum(p.numel() * p.element_size() for p in ref_model.parameters()) if ref_model is not None else 0
    return {"config": config, "fused": fused and getattr(trainer, "fused", True), "step_s": statistics.median(times),
            "step_times_s": times, "cpu_s": statistics.median(cpu), "cpu_times_s": cpu, "tokens_per_step": seq * batch,
            "peak_rss_bytes": peak,
            "rss_before_train_bytes": rss_before, "ref_model_bytes": ref_bytes, "wall_s": wall}


def ab_overhead(seq: int, batch: int, reps: int, threads: int, configs=("sft", "prift-prob", "prift-mass")) -> dict:
    """The per-step work a method adds, measured in one process: collate a batch (attaching the cached statistics)
    and run the trainer's loss forward + backward (`prift_head` path, as `compute_loss` does), for each method in
    turn on the same examples and model, `reps` times in rotating order. The optimizer step, identical for every
    method, is left out, so the ratios here bound those of a whole step from above."""
    import functools
    from prift import losses, sft
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    prompt = seq // 8
    feats = []
    for i in range(batch):
        ids = torch.randint(2, V, (seq,), generator=g).tolist()
        feats.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:], "idx": i})
    model = make_model().train()
    losses.add_prift_head(model)
    cache = sft_steps.Cache([seq - prompt] * batch)
    setups = {}
    for c in configs:
        m = sft.Method.from_config(c, METHODS[c])
        setups[c] = (m, sft.WeightedCollator(0, cache if m.cached else None, stat_keys=m.stats if m.cached else ()))
    wall = {c: [] for c in configs}
    cpu = {c: [] for c in configs}
    for r in range(reps + 1):
        order = list(configs[r % len(configs):]) + list(configs[:r % len(configs)])
        for c in order:
            m, collator = setups[c]
            t0, c0 = time.perf_counter(), time.process_time()
            b = collator(feats)
            ref = {k: b.pop(k) for k in list(b) if k.startswith("ref_")} or None
            labels = b["labels"]
            n = (labels[:, 1:] != -100).sum().clamp(min=1)
            head = functools.partial(losses.method_loss_hidden, m, labels=labels, num_tokens=n, ref=ref)
            loss, _ = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], prift_head=head)
            assert torch.isfinite(loss)
            loss.backward()
            model.zero_grad(set_to_none=True)
            if r:  # the first round warms up
                wall[c].append(time.perf_counter() - t0)
                cpu[c].append(time.process_time() - c0)
    out = {c: {"wall_s": statistics.median(wall[c]), "cpu_s": statistics.median(cpu[c]), "wall_runs": wall[c],
               "cpu_runs": cpu[c]} for c in configs}
    for c in configs:
        out[c]["wall_vs_sft"] = out[c]["wall_s"] / out["sft"]["wall_s"]
        out[c]["cpu_vs_sft"] = out[c]["cpu_s"] / out["sft"]["cpu_s"]
    return out


def overhead_parts(seq: int, batch: int, reps: int = 200, configs=("sft", "prift-prob", "prift-mass")) -> dict:
    """The only code that differs between SFT and a cached PriFT method, timed alone: the collator (attaching the
    cached statistics) and the weighting + weighted NLL (`method_weights`, `_combine`) on the response tokens of one batch."""
    from prift import losses, sft
    g = torch.Generator().manual_seed(0)
    prompt = seq // 8
    feats = [{"input_ids": torch.randint(2, V, (seq,), generator=g).tolist(),
              "labels": [-100] * prompt + [5] * (seq - prompt), "idx": i} for i in range(batch)]
    cache = sft_steps.Cache([seq - prompt] * batch)
    out = {}
    for c in configs:
        m = sft.Method.from_config(c, METHODS[c])
        col = sft.WeightedCollator(0, cache if m.cached else None, stat_keys=m.stats if m.cached else ())
        t0 = time.perf_counter()
        for _ in range(reps):
            b = col(feats)
        t_col = (time.perf_counter() - t0) / reps
        mask = b["labels"][:, 1:] != -100
        logp = torch.randn(int(mask.sum()), requires_grad=True)
        stats = {k[4:]: v[:, 1:][mask] for k, v in b.items() if k.startswith("ref_")}
        if not m.cached:
            stats = {"logp": logp.detach(), "prob": logp.detach().exp()}
        ones = torch.ones_like(logp, dtype=torch.bool)
        t0 = time.perf_counter()
        for _ in range(reps):
            loss, _ = losses._combine(m, logp, ones, mask.sum(), losses.method_weights(m, stats, ones))
            loss.backward()
        out[c] = {"collate_ms": 1e3 * t_col, "weights_and_loss_ms": 1e3 * (time.perf_counter() - t0) / reps}
    return out


def write_markdown(out: dict, path: Path) -> None:
    summary, load = out["summary"], out["loadavg_start_end"]
    lines = ["# Weighted SFT step: time and peak memory (issue 4)", "",
             f"Tiny random-init Qwen2 (vocab {V:,}, hidden 64, 2 layers, float32), sequence length {out['seq_len']}, "
             f"batch {out['batch']}, CPU ({out['threads']} thread(s) on a {out['cpu_count']}-core machine shared with "
             f"other work, load average {load[0][0]:.1f} → {load[1][0]:.1f}), {out['warmup_steps']} warm-up + "
             f"{out['timed_steps']} timed steps, median of {out['rounds']} interleaved rounds "
             f"({out['seconds'] / 60:.0f} min). Step = time between optimizer steps (data, collator, forward, "
             f"backward, AdamW); wall and process CPU time. Peak = ru_maxrss of a fresh process per run (includes "
             f"Python, torch and the model); increment = peak − RSS before `train()`. ASFT's memory ratios subtract "
             f"the reference model's weights ({summary.get('asft', {}).get('ref_model_mib', 0):.0f} MiB).", "",
             "| configuration | step wall (s) | wall / SFT | step CPU (s) | CPU / SFT | tokens/s (wall) | peak RSS (MiB) "
             "| peak / SFT | train increment (MiB) | increment / SFT |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c, s in summary.items():
        lines.append(f"| {c} | {s['step_s']:.3f} | {s.get('step_time_vs_sft', 1):.3f} | {s['cpu_s']:.3f} | "
                     f"{s.get('cpu_time_vs_sft', 1):.3f} | {s['tokens_per_s']:.0f} | "
                     f"{s['peak_rss_mib']:.0f} | {s.get('peak_rss_vs_sft', 1):.3f} | "
                     f"{s['train_peak_increment_mib']:.0f} | {s.get('train_increment_vs_sft', 1):.3f} |")
    lines += ["", "Goals: PriFT / SFT step time ≤ 1.03; peak memory ≤ 1.15 × SFT's (ASFT: plus the reference model's "
              "weights). `sft`, `dft`, `prift-*`, `asft`: prift's WeightedSFTTrainer, default fused path (loss from "
              "hidden states, chunked LM head); `trl-sft`: TRL's SFTTrainer (its fused LM head, plus its entropy and "
              "token-accuracy metrics); `*/full-logits`: prift with `fused_head: false` ([B, L, V] logits and a "
              "float32 cross-entropy). Per-round values are in sft_step.json."]
    ab = out.get("ab")
    if ab:
        lines += ["", f"In-process A/B of the work a method adds ({ab['reps']} rotating repetitions on the same "
                  "examples and model: collate with the cached statistics + loss forward + backward, no optimizer "
                  "step, so these ratios bound a whole step's from above):", "",
                  "| method | wall (s) | wall / SFT | CPU (s) | CPU / SFT |", "|---|---:|---:|---:|---:|"]
        for c, r in ab["results"].items():
            lines.append(f"| {c} | {r['wall_s']:.3f} | {r['wall_vs_sft']:.3f} | {r['cpu_s']:.3f} | "
                         f"{r['cpu_vs_sft']:.3f} |")
    parts = out.get("parts")
    if parts:
        lines += ["", "The code that differs between the methods, timed alone (ms per batch; the step is seconds):", "",
                  "| method | collator | weights + weighted NLL (fwd + bwd) |", "|---|---:|---:|"]
        for c, r in parts.items():
            lines.append(f"| {c} | {r['collate_ms']:.3f} | {r['weights_and_loss_ms']:.3f} |")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--out", default=str(OUT / "sft_step"))
    ap.add_argument("--ab-reps", type=int, default=12, help="repetitions of the in-process A/B (0: skip)")
    ap.add_argument("--ab-only", action="store_true", help="run only the A/B and add it to an existing result")
    a = ap.parse_args()
    if a.one:
        children.result(run_one(a.one, a.seq, a.batch, a.warmup, a.steps, a.threads))
        return
    path = Path(a.out)
    if a.ab_only:
        out = json.loads(path.with_suffix(".json").read_text())
    else:
        out = measure(a)
    if a.ab_reps:
        out["ab"] = {"reps": a.ab_reps, "loadavg_start": os.getloadavg(),
                     "results": ab_overhead(out["seq_len"], out["batch"], a.ab_reps, out["threads"])}
        out["ab"]["loadavg_end"] = os.getloadavg()
    out["parts"] = overhead_parts(out["seq_len"], out["batch"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(out, indent=1))
    write_markdown(out, path)


def measure(a) -> dict:
    configs = a.configs.split(",")
    runs: dict[str, list[dict]] = {c: [] for c in configs}
    load = [os.getloadavg()]
    t0 = time.time()
    for r in range(a.rounds):
        for c in configs:
            res = children.run(__file__, ["--one", c, "--seq", str(a.seq), "--batch", str(a.batch), "--warmup",
                                          str(a.warmup), "--steps", str(a.steps), "--threads", str(a.threads)], c)
            runs[c].append(res)
            print(f"round {r + 1} {c:24s} step {res['step_s']:.3f} s  cpu {res['cpu_s']:.3f} s  "
                  f"peak {res['peak_rss_bytes'] / 2**20:.0f} MiB", flush=True)
    load.append(os.getloadavg())

    summary = {}
    for c, rs in runs.items():
        summary[c] = {"step_s": statistics.median(r["step_s"] for r in rs),
                      "step_s_rounds": [r["step_s"] for r in rs],
                      "cpu_s": statistics.median(r["cpu_s"] for r in rs),
                      "cpu_s_rounds": [r["cpu_s"] for r in rs],
                      "peak_rss_mib": statistics.median(r["peak_rss_bytes"] for r in rs) / 2**20,
                      "rss_before_train_mib": statistics.median(r["rss_before_train_bytes"] for r in rs) / 2**20,
                      "ref_model_mib": rs[0]["ref_model_bytes"] / 2**20, "fused": rs[0]["fused"]}
        s = summary[c]
        s["train_peak_increment_mib"] = s["peak_rss_mib"] - s["rss_before_train_mib"]
        s["tokens_per_s"] = rs[0]["tokens_per_step"] / s["step_s"]
    base = summary.get("sft")
    if base:
        for c, s in summary.items():
            s["step_time_vs_sft"] = s["step_s"] / base["step_s"]
            s["cpu_time_vs_sft"] = s["cpu_s"] / base["cpu_s"]
            s["peak_rss_vs_sft"] = (s["peak_rss_mib"] - s["ref_model_mib"]) / base["peak_rss_mib"]
            s["train_increment_vs_sft"] = (s["train_peak_increment_mib"] - s["ref_model_mib"]) / \
                base["train_peak_increment_mib"]
    return {"what": "weighted SFT step: time and peak memory per method (issue 4)",
            "model": {"arch": "Qwen2ForCausalLM", "vocab_size": V, "hidden_size": 64, "num_layers": 2,
                      "tie_word_embeddings": True, "dtype": "float32", "init": "random"},
            "seq_len": a.seq, "batch": a.batch, "warmup_steps": a.warmup, "timed_steps": a.steps, "rounds": a.rounds,
            "device": "cpu", "threads": a.threads, "cpu_count": os.cpu_count(), "loadavg_start_end": load,
            "platform": platform.platform(), "torch": torch.__version__, "seconds": round(time.time() - t0, 1),
            "goals": {"prift_step_time_vs_sft_max": 1.03, "peak_memory_vs_sft_max": 1.15},
            "summary": summary, "runs": runs}


if __name__ == "__main__":
    main()

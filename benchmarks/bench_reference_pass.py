"""The reference pass against one SFT epoch on the same data, at a real depth and real lengths (issue 18, item 3).

benchmarks/bench_scoring.py measures the pass itself (chunked statistics, memory flat in length) on 2-layer models,
where the statistics' passes over a 151,936-way vocabulary weigh as much as the model. This benchmark asks the
issue's question on the workload of benchmarks/bench_packing.py instead: the MATH-500 problems and solutions through
SmolLM2's tokenizer (cut at 2,048 tokens), a random-init Llama with SmolLM2-135M's shapes (30 layers, vocabulary
49,152), float32 on CPU.
  * reference pass: `prift.scoring.reference_stats` as the `score` verb calls it (config/config.yaml's scoring:
    top-K 20, chunks of 1,024 positions, batches of at most 32,768 tokens sorted by length; no compile on CPU),
    every statistic of every response token, in packed rows (the default: each sequence attends to itself alone)
    and, for comparison, in padded batches sorted by length (the CPU default until 2026-12-01);
  * SFT epoch: prift's WeightedSFTTrainer over the same examples once (PriFT-prob on cached statistics, packed
    micro-batches of 4, the loss path `fused_head: auto` picks, AdamW), with gradient checkpointing off and on
    (config/config.yaml trains with it on: the backward recomputes each layer's forward).
Each run is a fresh subprocess (its own peak RSS); the three alternate over `--rounds` rounds; the ratio is of the
medians, with its range over the rounds.

    .venv/bin/python benchmarks/bench_reference_pass.py    # writes benchmarks/results/reference_pass.{json,md}
    .venv/bin/python benchmarks/bench_reference_pass.py --layers 2 --examples 8 --rounds 1
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import children  # noqa: E402
import sft_steps  # noqa: E402
from bench_packing import MAX_LENGTH, OUT, smollm2_shaped, tokenized_math500  # noqa: E402

KINDS = ("reference", "reference_padded", "sft", "sft_gc")
SCORING = {"topk": 20, "chunk_size": 1024, "max_batch_tokens": 32768}   # config/config.yaml `scoring:`


def run_one(kind: str, layers: int, n_examples: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    examples, vocab = tokenized_math500()
    random.Random(0).shuffle(examples)
    rows = [{"input_ids": e["input_ids"], "labels": e["labels"], "idx": i} for i, e in enumerate(examples[:n_examples])]
    model = smollm2_shaped(layers, vocab)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    extra = {}
    if kind.startswith("reference"):
        from prift.scoring import reference_stats
        t0 = time.perf_counter()
        stats = reference_stats(model.eval(), rows, progress=False, packed=False if kind.endswith("padded") else None,
                                **SCORING)
        secs = time.perf_counter() - t0
        extra["response_tokens"] = sum(len(s["prob"]) for s in stats)
    else:
        trainer, _ = sft_steps.trainer(model, rows, packed=True, gradient_checkpointing=kind == "sft_gc")
        extra["fused_head"] = trainer.fused
        t0 = time.perf_counter()
        trainer.train()
        secs = time.perf_counter() - t0
        extra["steps"] = trainer.state.global_step
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tokens = sum(len(r["input_ids"]) for r in rows)
    return {"kind": kind, "seconds": secs, "tokens": tokens, "tokens_per_s": tokens / secs,
            "peak_rss_bytes": peak, "increment_bytes": peak - rss0, **extra}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--one", choices=KINDS, help=argparse.SUPPRESS)
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--examples", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(OUT / "reference_pass"))
    a = ap.parse_args()
    if a.one:
        children.result(run_one(a.one, a.layers, a.examples, a.threads))
        return
    runs = {k: [] for k in KINDS}
    load = [os.getloadavg()]
    t0 = time.time()
    for r in range(a.rounds):
        for kind in (KINDS if r % 2 == 0 else KINDS[::-1]):
            res = children.run(__file__, ["--one", kind, "--layers", str(a.layers), "--examples", str(a.examples),
                                          "--threads", str(a.threads)], kind)
            runs[kind].append(res)
            print(f"round {r + 1} {kind}: {res['seconds']:.1f} s, {res['tokens_per_s']:.0f} tok/s", flush=True)
    load.append(os.getloadavg())
    med = {k: statistics.median(x["seconds"] for x in rs) for k, rs in runs.items()}
    ratios = {f"{r}/{k}": {"ratio": med[r] / med[k],
                            "range": [min(x["seconds"] for x in runs[r]) / max(y["seconds"] for y in runs[k]),
                                      max(x["seconds"] for x in runs[r]) / min(y["seconds"] for y in runs[k])]}
              for r in ("reference", "reference_padded") for k in ("sft", "sft_gc")}
    ref0, sft0 = runs["reference"][0], runs["sft"][0]
    out = {"what": "reference pass / one SFT epoch on the same data (issue 18 item 3)",
           "date": time.strftime("%Y-%m-%d"),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
           "threads": a.threads, "loadavg_start_end": load, "seconds": round(time.time() - t0),
           "model": f"Llama, SmolLM2-135M shapes, {a.layers} layers, random init, float32",
           "data": f"{a.examples} MATH-500 problems + solutions, SmolLM2 tokenizer, max {MAX_LENGTH}",
           "scoring": SCORING, "rounds": a.rounds, "median_seconds": med, "ratios": ratios,
           "goal": "reference pass <= 0.25 x one SFT epoch", "runs": runs}
    path = Path(a.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(out, indent=1))
    label = {"reference": "reference pass (every statistic, top-K 20), packed rows",
             "reference_padded": "the same in padded batches sorted by length",
             "sft": "SFT epoch, PriFT-prob, packed micro-batches of 4",
             "sft_gc": "SFT epoch, the same with gradient checkpointing (config/config.yaml)"}
    md = ["# Reference pass against one SFT epoch (benchmarks/bench_reference_pass.py)", "",
          f"{out['date']}, {out['machine']}, {a.threads} threads, load average {load[0][0]:.1f} → {load[1][0]:.1f}; "
          f"{out['model']}; {out['data']} ({sft0['tokens']} tokens, {ref0['response_tokens']} of them response "
          f"tokens); SFT loss path {'fused head' if sft0['fused_head'] else 'full logits'} (`fused_head: auto`); "
          f"median of {a.rounds} alternating rounds ({out['seconds'] / 60:.0f} min in all).", "",
          "| run | seconds | tokens/s | peak RSS (MiB) | increment (MiB) |", "|---|---:|---:|---:|---:|"]
    for k in KINDS:
        rs = runs[k]
        md.append(f"| {label[k]} | {med[k]:.1f} | {statistics.median(x['tokens_per_s'] for x in rs):.0f} | "
                  f"{statistics.median(x['peak_rss_bytes'] for x in rs) / 2**20:.0f} | "
                  f"{statistics.median(x['increment_bytes'] for x in rs) / 2**20:.0f} |")
    md += ["", "Reference pass / SFT epoch (goal ≤ 0.25; range over the rounds in brackets):", "",
           "| reference pass | / SFT epoch | / SFT epoch, gradient checkpointing |", "|---|---:|---:|"]
    for r, name in (("reference", "packed rows (default)"), ("reference_padded", "padded batches")):
        cells = [f"{ratios[f'{r}/{k}']['ratio']:.2f} [{ratios[f'{r}/{k}']['range'][0]:.2f}–"
                 f"{ratios[f'{r}/{k}']['range'][1]:.2f}]" for k in ("sft", "sft_gc")]
        md.append(f"| {name} | {' | '.join(cells)} |")
    path.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()

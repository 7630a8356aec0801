"""Benchmark of the frozen reference pass (issue 3).

For a tiny random-init Qwen2 model with the real Qwen vocabulary size (151,936), measures
  * the chunked reference pass (prift.scoring.reference_stats) in tokens/s and its peak RSS, against a naive pass
    that materialises the full [T, V] float32 logits and calls token_stats on them, for several sequence lengths;
  * the ratio (reference-pass time) / (one SFT epoch over the same data: forward + backward + AdamW, batch 1), for
    the 64-wide model over sequence lengths and at 1,024 tokens for wider models (256, and 896 = Qwen2.5-0.5B's
    width). The statistics cost O(V) per token whatever the width, the lm_head matmul O(V * D): at width 64 the
    statistics' passes over V weigh as much as the model itself, at real widths they fade (and the ratio tends to
    the ~1/3 of a forward pass against forward + backward).
Each measurement runs in a fresh subprocess so that peak RSS (ru_maxrss) belongs to that measurement alone.
The ratio at a real depth (30 layers) and real lengths, against prift's own SFT epoch: bench_reference_pass.py.

    .venv/bin/python benchmarks/bench_scoring.py            # writes benchmarks/results/scoring.{json,md}
"""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent / "results"
V = 151_936
N_EXAMPLES = 4


WIDTHS = {64: (128, 4), 256: (704, 4), 896: (4864, 14)}  # hidden -> (intermediate, heads), as Qwen2 shapes


def make_model(hidden: int = 64, seed: int = 0):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(seed)
    inter, heads = WIDTHS[hidden]
    cfg = Qwen2Config(vocab_size=V, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=2,
                      num_attention_heads=heads, num_key_value_heads=2, max_position_embeddings=4096,
                      tie_word_embeddings=True)
    return Qwen2ForCausalLM(cfg).eval()


def make_data(seq_len: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    data = []
    for _ in range(N_EXAMPLES):
        ids = torch.randint(0, V, (seq_len,), generator=g).tolist()
        prompt = seq_len // 8  # the first eighth is prompt (label -100), the rest response
        data.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return data


def run_one(kind: str, seq_len: int, hidden: int = 64) -> dict:
    """One measurement in this (fresh) process."""
    from prift.scoring import reference_stats
    from prift.weighting import token_stats
    torch.set_num_threads(2)
    model = make_model(hidden)
    data = make_data(seq_len)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n_tok = sum(sum(l != -100 for l in d["labels"][1:]) for d in data)
    warmup = 0.0
    if kind == "compiled":  # compile once (on one example), outside the timed pass, and report it
        t0 = time.perf_counter()
        reference_stats(model, data[:1], max_batch_tokens=seq_len, chunk_size=256, progress=False, compile=True)
        warmup = time.perf_counter() - t0
    t0 = time.perf_counter()
    if kind in ("chunked", "compiled"):
        reference_stats(model, data, max_batch_tokens=seq_len, chunk_size=256, progress=False,
                        compile=kind == "compiled")
    elif kind == "naive":
        with torch.no_grad():
            for d in data:
                ids = torch.tensor([d["input_ids"]])
                logits = model(input_ids=ids).logits[0, :-1].float()  # [T, V] float32: the naive way
                lab = torch.tensor(d["labels"][1:])
                m = lab != -100
                token_stats(logits[m], lab[m])
    elif kind == "sft_epoch":
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        for d in data:
            ids = torch.tensor([d["input_ids"]])
            loss = model(input_ids=ids, labels=torch.tensor([d["labels"]])).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    else:
        raise ValueError(kind)
    secs = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"kind": kind, "hidden": hidden, "seq_len": seq_len, "tokens": n_tok, "seconds": round(secs, 3),
            "tokens_per_s": round(n_tok / secs, 1), "compile_s": round(warmup, 1), "peak_rss_mb": round(peak / 1024, 1),
            "peak_over_base_mb": round((peak - base_rss) / 1024, 1)}


REPEATS = 3  # the reference pass and the SFT epoch are timed this many times each, interleaved


def _child(kind: str, seq_len: int, hidden: int) -> dict:
    p = subprocess.run([sys.executable, __file__, kind, str(seq_len), str(hidden)], capture_output=True, text=True,
                       check=True)
    row = json.loads(p.stdout.strip().splitlines()[-1])
    print(row, flush=True)
    return row


def main():
    if len(sys.argv) == 4:  # child
        print(json.dumps(run_one(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
        return
    grid = [(64, L) for L in (256, 512, 1024, 2048)] + [(256, 1024), (896, 1024)]
    load_start = os.getloadavg()[0]
    rows, summary = [], []
    for hidden, L in grid:
        # The machine's speed drifts (shared host): time the reference pass and the SFT epoch in alternation,
        # REPEATS times each, and report the ratio of the medians with the range of the per-pair ratios.
        pairs = [(_child("chunked", L, hidden), _child("sft_epoch", L, hidden)) for _ in range(REPEATS)]
        f = _child("compiled", L, hidden)
        n = _child("naive", L, hidden) if hidden == 64 else {}
        rows += [r for pair in pairs for r in pair] + [f] + ([n] if n else [])
        c_s = statistics.median(c["seconds"] for c, _ in pairs)
        s_s = statistics.median(s["seconds"] for _, s in pairs)
        pair_ratios = [c["seconds"] / s["seconds"] for c, s in pairs]
        c0, s0 = pairs[0]
        summary.append({"hidden": hidden, "seq_len": L, "tokens": c0["tokens"],
                        "chunked_tok_s": round(c0["tokens"] / c_s, 1), "sft_tok_s": round(s0["tokens"] / s_s, 1),
                        "naive_tok_s": n.get("tokens_per_s", "—"), "compiled_tok_s": f["tokens_per_s"],
                        "compile_s": f["compile_s"],
                        "chunked_peak_over_base_mb": max(c["peak_over_base_mb"] for c, _ in pairs),
                        "naive_peak_over_base_mb": n.get("peak_over_base_mb", "—"),
                        "ratio_score_over_sft_epoch": round(c_s / s_s, 3),
                        "ratio_range": [round(min(pair_ratios), 3), round(max(pair_ratios), 3)],
                        "ratio_compiled_over_sft_epoch": round(f["seconds"] / s_s, 3)})
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"vocab": V, "examples": N_EXAMPLES, "repeats": REPEATS,
            "model": "Qwen2, 2 layers, random init, tied embeddings",
            "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 2 threads",
            "date": time.strftime("%Y-%m-%d"), "goal": "ratio <= 0.40; chunked peak flat in sequence length",
            # other processes on the machine slow the measurements unevenly: ratios are only comparable at low load
            "load_avg_1min": [round(load_start, 1), round(os.getloadavg()[0], 1)]}
    (OUT / "scoring.json").write_text(json.dumps({"meta": meta, "rows": rows, "summary": summary}, indent=1))
    lines = ["# Reference pass benchmark (benchmarks/bench_scoring.py)", "", f"{meta}", "",
             f"Reference pass and SFT epoch: median of {REPEATS} interleaved runs each; the ratio is of the medians, "
             "its range over the runs in brackets. Compiled and naive: one run each.", "",
             "| hidden | seq len | chunked tok/s | compiled tok/s (compile s) | naive tok/s | SFT tok/s "
             "| chunked peak MB (over base) | naive peak MB (over base) | score / SFT epoch [range] "
             "| compiled score / SFT epoch |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        lo, hi = s["ratio_range"]
        lines.append(f"| {s['hidden']} | {s['seq_len']} | {s['chunked_tok_s']} | {s['compiled_tok_s']} "
                     f"({s['compile_s']}) | {s['naive_tok_s']} | {s['sft_tok_s']} | {s['chunked_peak_over_base_mb']} | "
                     f"{s['naive_peak_over_base_mb']} | {s['ratio_score_over_sft_epoch']} [{lo}–{hi}] | "
                     f"{s['ratio_compiled_over_sft_epoch']} |")
    (OUT / "scoring.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Benchmark of generation (issue 5): prift.generate.generate, the DAG's sampling call, n = 16 samples per prompt.

CPU (default): the transformers backend (batched sampling with KV cache) for
  * the demo's tiny Qwen2 (built here as the demo builds it: ~0.4 M parameters, byte-level BPE vocabulary ~480), and
  * a random-init Qwen2 with the real Qwen vocabulary size (151,936; hidden 64, 2 layers, as bench_scoring.py), which
    makes the lm-head and the sampling over V the cost of every step,
on the demo's math500 prompts (the qwen-boxed chat template), temperature 1.0, top-p 1.0, a few batch sizes (sequences
per forward = prompts per batch × n). Reports samples/s and completion tokens/s end to end (what a DAG job sees,
model load included) and for sampling alone (load excluded). Writes benchmarks/results/generate.{json,md}.

GPU (--vllm, only where vLLM is installed): the vLLM backend on a 1.5B-class model, n = 16, temperature 1.0, on
MATH-500 (data/math/math500/test.jsonl); writes benchmarks/results/generate_vllm.{json,md}.

    .venv/bin/python benchmarks/bench_generate.py                     # CPU, ~3 min on 1 thread
    python benchmarks/bench_generate.py --vllm --model Qwen/Qwen2.5-Math-1.5B [--max-new-tokens 4096] [--limit 500]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results"
V_REAL = 151_936
N = 16


def build_models(root: Path, tiny: Path | None) -> dict[str, Path]:
    """The demo's tiny backbone (``tiny``: an existing build, e.g. the demo's results/backbones/tiny; None: build it
    as config/demo.yaml does), and a random-init Qwen2 with the real vocabulary size that reuses its tokenizer (ids
    the tokenizer does not know decode to nothing; only the token counts matter here)."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM
    from prift.backbone import build_tiny
    from prift.demo_data import demo_math
    if tiny is None:
        tiny = root / "tiny"
        build_tiny(tiny, demo_math("pretrain", 4000), pretrain_steps=400, seed=0, log=print)  # config/demo.yaml's
    tok = AutoTokenizer.from_pretrained(tiny)
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=V_REAL, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                      tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    big = root / "qwen2-v151936"
    model = Qwen2ForCausalLM(cfg)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(big)
    tok.save_pretrained(big)
    return {"tiny (demo)": tiny, "qwen2 random-init, V=151,936": big}


def run_cpu(args) -> None:
    import torch
    from prift.data import read_jsonl
    from prift.demo_data import demo_math
    from prift.generate import generate
    torch.set_num_threads(args.threads)
    all_problems = [{"id": f"p{i}", "problem": r["problem"]} for i, r in enumerate(demo_math("math500", args.prompts))]
    # the real-vocabulary model samples ~150 ms per step at batch 16 on one thread: fewer prompts and tokens
    settings = {"tiny (demo)": (args.prompts, args.max_new_tokens, args.batch_sizes),
                "qwen2 random-init, V=151,936": (args.big_prompts, args.big_max_new_tokens,
                                                  [b for b in args.batch_sizes if b <= args.big_prompts * N])}
    rows = []
    with tempfile.TemporaryDirectory(prefix="prift-bench-gen-") as tmp:
        models = build_models(Path(tmp), args.tiny)
        for name, path in models.items():
            n_prompts, max_new, batch_sizes = settings[name]
            problems = all_problems[:n_prompts]
            for bs in batch_sizes:
                out = Path(tmp) / f"{path.name}-{bs}.jsonl"
                st = generate(str(path), problems, out, n=N, temperature=1.0, top_p=1.0,
                              max_new_tokens=max_new, seed=0, backend="transformers", batch_size=bs,
                              kind="math", log=lambda *_: None)
                samples = read_jsonl(out)
                assert len(samples) == len(problems) * N
                row = {"model": name, "batch_size": bs, "prompts_per_batch": max(1, bs // N), "prompts": len(problems),
                       "n": N, "samples": len(samples), "max_new_tokens": max_new,
                       "mean_prompt_tokens": round(sum(s["prompt_tokens"] for s in samples) / len(samples), 1),
                       "mean_completion_tokens": round(st["completion_tokens"] / len(samples), 1),
                       "frac_length": round(sum(s["finish_reason"] == "length" for s in samples) / len(samples), 3),
                       "seconds": st["seconds"], "load_seconds": st["load_seconds"],
                       "samples_per_s": st["samples_per_s"], "tokens_per_s": st["tokens_per_s"],
                       "gen_samples_per_s": st["gen_samples_per_s"], "gen_tokens_per_s": st["gen_tokens_per_s"]}
                rows.append(row)
                print(row, flush=True)
    meta = {"backend": "transformers", "device": "cpu", "threads": torch.get_num_threads(),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                       f"load average at start {args.load_avg}",
            "torch": torch.__version__, "transformers": __import__("transformers").__version__,
            "tiny model": (os.path.relpath(args.tiny, REPO) + " (the demo's build)") if args.tiny
                          else "built here as config/demo.yaml builds it",
            "prompts": f"demo math500 (prift.data.demo_math), qwen-boxed template, {args.prompts} prompts",
            "sampling": f"n={N}, temperature 1.0, top-p 1.0, seed 0; max new tokens: tiny {args.max_new_tokens}, "
                        f"V=151,936 model {args.big_max_new_tokens} ({args.big_prompts} prompts)",
            "date": time.strftime("%Y-%m-%d")}
    write(args.results, "generate", meta, rows,
          "Generation throughput, transformers backend on CPU (benchmarks/bench_generate.py)")


def run_vllm(args) -> None:
    if importlib.util.find_spec("vllm") is None:
        raise SystemExit("--vllm: vLLM is not installed in this environment (GPU sessions: environment.yml)")
    import torch
    from prift.benchmarks.math import problem
    from prift.data import load_records, read_jsonl
    from prift.generate import generate
    recs = load_records({"path": str(args.math500)})[:args.limit or None]
    problems = [problem(r, "math500", i) for i, r in enumerate(recs)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="prift-bench-gen-") as tmp:
        out = Path(tmp) / "math500.jsonl"
        st = generate(args.model, problems, out, n=N, temperature=1.0, top_p=1.0, max_new_tokens=args.max_new_tokens,
                      seed=0, backend="vllm", batch_size=len(problems), kind="math", log=print,
                      max_model_len=args.max_model_len, dtype=args.dtype)
        samples = read_jsonl(out)
    rows.append({"model": args.model, "prompts": len(problems), "n": N, "samples": len(samples),
                 "max_new_tokens": args.max_new_tokens,
                 "mean_prompt_tokens": round(sum(s["prompt_tokens"] for s in samples) / len(samples), 1),
                 "mean_completion_tokens": round(st["completion_tokens"] / len(samples), 1),
                 "frac_length": round(sum(s["finish_reason"] == "length" for s in samples) / len(samples), 3),
                 "seconds": st["seconds"], "load_seconds": st["load_seconds"],
                 "samples_per_s": st["samples_per_s"], "tokens_per_s": st["tokens_per_s"],
                 "gen_samples_per_s": st["gen_samples_per_s"], "gen_tokens_per_s": st["gen_tokens_per_s"]})
    print(rows[-1], flush=True)
    meta = {"backend": "vllm", "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "vllm": __import__("vllm").__version__, "torch": torch.__version__,
            "prompts": f"MATH-500 ({os.path.relpath(args.math500, REPO)}), qwen-boxed template", "dtype": args.dtype,
            "sampling": f"n={N}, temperature 1.0, top-p 1.0, max {args.max_new_tokens} new tokens, seed 0, "
                        f"max_model_len {args.max_model_len}",
            "date": time.strftime("%Y-%m-%d")}
    write(args.results, "generate_vllm", meta, rows,
          "Generation throughput, vLLM backend (benchmarks/bench_generate.py --vllm)")


def write(out: Path, stem: str, meta: dict, rows: list[dict], title: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f"{stem}.json.tmp"
    tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    os.replace(tmp, out / f"{stem}.json")
    cols = [("model", "model"), ("batch_size", "batch (seqs)"), ("samples", "samples"), ("max_new_tokens", "max new"),
            ("mean_prompt_tokens", "prompt tok"), ("mean_completion_tokens", "completion tok"),
            ("frac_length", "cut at max"), ("load_seconds", "load s"), ("seconds", "total s"),
            ("samples_per_s", "samples/s"), ("tokens_per_s", "tok/s"), ("gen_samples_per_s", "samples/s (no load)"),
            ("gen_tokens_per_s", "tok/s (no load)")]
    cols = [c for c in cols if c[0] in rows[0]]
    lines = [f"# {title}", "", *[f"- {k}: {v}" for k, v in meta.items()], "",
             "| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[k]) for k, _ in cols) + " |" for r in rows]
    lines += ["", "tok/s counts completion tokens; \"no load\" excludes loading the tokenizer and model (and vLLM's "
              "start-up), which a DAG job pays once per (checkpoint, benchmark)."]
    tmp = out / f"{stem}.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out / f"{stem}.md")
    print("\n".join(lines))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vllm", action="store_true", help="the vLLM backend on a GPU (needs vllm)")
    ap.add_argument("--results", type=Path, default=OUT, help="output directory (default benchmarks/results)")
    ap.add_argument("--model", default="Qwen/Qwen2.5-Math-1.5B", help="--vllm: hub id or local path")
    ap.add_argument("--math500", default=str(REPO / "data" / "math" / "math500" / "test.jsonl"))
    ap.add_argument("--limit", type=int, default=0, help="--vllm: first N MATH-500 problems (0 = all 500)")
    ap.add_argument("--max-model-len", type=int, default=4096, help="--vllm (Qwen2.5-Math has 4096 positions)")
    ap.add_argument("--dtype", default="bfloat16", help="--vllm")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default: 128 on CPU, 3072 with --vllm")
    ap.add_argument("--prompts", type=int, default=16, help="CPU: number of prompts (tiny model)")
    ap.add_argument("--big-prompts", type=int, default=4, help="CPU: number of prompts (V=151,936 model)")
    ap.add_argument("--big-max-new-tokens", type=int, default=48, help="CPU: V=151,936 model")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64, 256], help="CPU: sequences per forward")
    ap.add_argument("--threads", type=int, default=1, help="CPU: torch threads (DAG jobs run with 1)")
    ap.add_argument("--tiny", type=Path, default=None, help="CPU: a built demo backbone (default: the demo's "
                    "results/backbones/tiny when it exists, else one built here as config/demo.yaml does, ~1 min)")
    args = ap.parse_args(argv)
    args.load_avg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    from prift.paths import Layout
    demo_tiny = REPO / Layout("results").backbone("tiny")   # config/demo.yaml's results tree
    if args.tiny is None and (demo_tiny / "config.json").is_file():
        args.tiny = demo_tiny
    if args.vllm:
        args.max_new_tokens = args.max_new_tokens or 3072
        run_vllm(args)
    else:
        args.max_new_tokens = args.max_new_tokens or 128
        run_cpu(args)


if __name__ == "__main__":
    main()

"""Benchmark of one DAPO step (issue 8): RL step wall time and generation throughput.

Runs `prift.rl.train_rl` for a few RL steps on demo prompts and reads, per RL step, the wall time (from the
trainer's log callback) and the generation counters the DAPO trainer logs (seconds in generation, tokens generated,
tokens/s of this process), with dynamic sampling on (the refill rounds are part of the step time).

    .venv/bin/python benchmarks/bench_rl.py                       # tiny backbone on CPU → benchmarks/results/rl_step.json
    .venv/bin/python benchmarks/bench_rl.py --model results/sft/math/tiny/sft/final
    # GPU session, a 1.5B-class checkpoint, App. E shapes scaled down (vLLM colocated when available):
    python benchmarks/bench_rl.py --model <qwen2.5-math-1.5b dir> --prompt-batch 16 --mini-batch 4 --n 32 \\
        --max-response 3072 --micro-batch 8 --out benchmarks/results/rl_step_gpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None) -> dict:
    from transformers import TrainerCallback
    from prift.demo_data import demo_math
    from prift.rl import RLRecipe, rl_prompts, train_rl

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="checkpoint to start from (default: build the tiny backbone)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--prompt-batch", type=int, default=8)
    ap.add_argument("--mini-batch", type=int, default=4)
    ap.add_argument("--n", type=int, default=8, help="rollouts per prompt")
    ap.add_argument("--max-response", type=int, default=64)
    ap.add_argument("--overlong-buffer", type=int, default=16)
    ap.add_argument("--micro-batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--use-vllm", default="auto")
    ap.add_argument("--max-gen-rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="CPU: torch intra-op threads, one run per value (the tiny model's small ops are slower with "
                         "more threads on a loaded machine)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "rl_step.json"))
    a = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench_rl_"))
    model = a.model
    if model is None:
        from prift.backbone import build_tiny
        model = str(work / "tiny")
        n_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        build_tiny(model, demo_math("pretrain", 1500), pretrain_steps=60, seed=0, log=lambda *_: None)
        torch.set_num_threads(n_threads)
    prompts = rl_prompts(demo_math("train", 256, seed=1))
    use_vllm = {"auto": "auto", "true": True, "false": False}[str(a.use_vllm).lower()]
    recipe = RLRecipe(steps=a.steps, prompt_batch_size=a.prompt_batch, mini_batch_size=a.mini_batch,
                      rollouts_per_prompt=a.n, lr=a.lr, warmup_steps=0, max_prompt_length=256,
                      max_response_length=a.max_response, overlong_buffer=a.overlong_buffer,
                      micro_batch_size=a.micro_batch, use_vllm=use_vllm, gradient_checkpointing=torch.cuda.is_available(),
                      save_steps=10 ** 6, max_gen_rounds=a.max_gen_rounds, seed=0)

    def run(threads: int) -> dict:
        if not torch.cuda.is_available():
            torch.set_num_threads(threads)
        marks = []

        class Clock(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):
                marks.append(("begin", time.perf_counter()))

            def on_log(self, args, state, control, logs=None, **kw):
                if logs and "reward" in logs:
                    marks.append((dict(logs), time.perf_counter()))

        load = os.getloadavg()
        t0 = time.perf_counter()
        summary = train_rl(model_path=model, prompts=prompts, out_dir=work / f"rl-{threads}" / "final",
                           recipe=recipe, callbacks=[Clock()], log=print)
        total = time.perf_counter() - t0
        steps = []
        for (_, t_prev), (logs, t) in zip(marks, marks[1:]):
            steps.append({"rl_step": len(steps) + 1, "wall_s": round(t - t_prev, 3),
                          "generation_s": round(logs.get("generation/seconds", float("nan")), 3),
                          "tokens_generated": logs.get("generation/tokens"),
                          "sequences_generated": logs.get("generation/sequences"),
                          "generated_tokens_per_s": round(logs.get("generation/tokens_per_s", float("nan")), 1),
                          "rounds": logs.get("dynamic_sampling/rounds"),
                          "frac_filtered": logs.get("dynamic_sampling/frac_filtered"),
                          "mean_response_tokens": logs.get("completions/mean_length"),
                          "reward": logs.get("reward"), "correct": logs.get("rewards/correct/mean")})
        steady = steps[1:] or steps  # the first step carries one-off costs (lazy imports, allocator warm-up)
        return {
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else
            f"CPU ({os.cpu_count()} cores), torch threads {torch.get_num_threads()}",
            "load_average_at_start": round(load[0], 2), "use_vllm": summary["use_vllm"],
            "median_step_s": round(statistics.median(s["wall_s"] for s in steady), 3),
            "median_generation_s": round(statistics.median(s["generation_s"] for s in steady), 3),
            "median_generated_tokens_per_s": round(statistics.median(s["generated_tokens_per_s"] for s in steady), 1),
            "median_tokens_generated_per_step": statistics.median(s["tokens_generated"] for s in steady),
            "median_s_per_generation_round": round(statistics.median(s["wall_s"] / s["rounds"] for s in steady), 3),
            "total_s": round(total, 1), "steps": steps}

    runs = [run(t) for t in (a.threads if not torch.cuda.is_available() else [0])]
    res = {
        "what": "DAPO RL step (prift.rl.train_rl): generation (all dynamic-sampling rounds) + reward + old/ref "
                "log-probs + PPO updates; wall time per RL step and generation throughput of this process",
        "note": "shared 2-core machine with other jobs running (see load_average_at_start); first step excluded "
                "from the medians",
        "platform": platform.platform(), "torch": torch.__version__,
        "model": "tiny Qwen2 backbone (built here, 60 pre-training steps)" if a.model is None else a.model,
        "recipe": {"prompt_batch_size": a.prompt_batch, "mini_batch_size": a.mini_batch, "rollouts_per_prompt": a.n,
                   "max_response_length": a.max_response, "overlong_buffer": a.overlong_buffer,
                   "micro_batch_size": a.micro_batch, "updates_per_rl_step": recipe.updates_per_rl_step,
                   "steps": a.steps, "lr": a.lr, "dynamic_sampling": True, "filter_metric": recipe.filter_metric},
        "runs": runs,
    }
    from prift.backbone import load_model
    res["n_params"] = sum(p.numel() for p in load_model(model).parameters())
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(json.dumps({**res, "runs": [{k: v for k, v in r.items() if k != "steps"} for r in runs]}, indent=1))
    return res


if __name__ == "__main__":
    main()

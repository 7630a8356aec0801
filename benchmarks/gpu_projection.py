"""The paper's stages projected from the GPU check's measured rates (issue 18, item 4): GPU-hours of each stage beside
the paper's Appendix F, and whether each fits the time its SLURM job asks for (workflow/profiles/default/
resources.yaml). Pure arithmetic over the measured rates, config/config.yaml and the resource table; gpu_check.py
feeds it and writes its table.

Each stage's work is its tokens: the paper's data sizes and sampling settings (config/config.yaml) times the mean
lengths of MATH-500 examples through a byte-level BPE tokenizer (benchmarks/math500_lengths.json), a stand-in for
NuminaMath-CoT's solutions and for the models' samples, which this workplace cannot read or make. So each row also
gives the mean length at which the measured rate would take exactly the paper's time: where that is far above the
stand-in, the paper's time is spent on longer sequences (or slower hardware), not on a slower pipeline.

Rates are per GPU: SFT (packed, gradient checkpointing as config/config.yaml), the reference pass (a forward), and
decoding (transformers, an upper bound on vLLM's time). A job of G GPUs is taken to run G times as fast as one
(data parallel over one node). Qwen3-8B-Base (DAPO, Table 5) is not measured: its rates are the 7B's scaled by the
parameter counts (training and forward work, and decoding's weight reads, are proportional to them).
"""
from __future__ import annotations

import math

# Appendix F (paper): "a Qwen2.5-Math-1.5B run takes approximately 1 hour on 4 H200 GPUs, corresponding to about 4
# GPU-hours. A Qwen2.5-Math-7B run takes approximately 2 hours on 4 H200 GPUs, corresponding to about 8 GPU-hours.
# These estimates include the additional reference forward pass ... Standard 16-sample mathematical reasoning
# evaluation takes around 20 minutes when parallelized over 4 GPUs ... each DAPO run takes approximately 7 hours on
# 4 GPUs."
APP_F_GPU_HOURS = {"sft+score": {"qwen2.5-math-1.5b": 4.0, "qwen2.5-math-7b": 8.0},
                   "generate": 20 / 60 * 4, "rl": 7 * 4}
# The shapes the memory arithmetic needs (the models' config.json): layers, KV heads, head size
KV_SHAPES = {"qwen2.5-math-1.5b": (28, 2, 128), "qwen2.5-math-7b": (28, 4, 128), "qwen3-8b-base": (36, 8, 128)}
MEASURED = {"qwen2.5-math-1.5b": "1.5B", "qwen2.5-math-7b": "7B"}   # the gpu check's shapes
FSDP_FROM_B = 3.0   # workflow/rules/common.smk `launcher`: FSDP for training runs of backbones of >= 3B, DDP below


def mean_lengths(lengths: list[tuple[int, int]]) -> dict:
    """Mean prompt, response and total tokens of (prompt, total) pairs."""
    n = len(lengths)
    prompt = sum(p for p, _ in lengths) / n
    total = sum(t for _, t in lengths) / n
    return {"prompt": prompt, "response": total - prompt, "total": total}


def rates_of(backbone: str, cfg: dict, rates: dict) -> dict:
    """{sft, score, decode} tokens/s per GPU for a backbone: measured (MEASURED) or scaled from the 7B's by size_b."""
    if backbone in MEASURED:
        return {k: rates[k][MEASURED[backbone]] for k in ("sft", "score", "decode")}
    f = cfg["backbones"]["qwen2.5-math-7b"]["size_b"] / cfg["backbones"][backbone]["size_b"]
    return {k: rates[k]["7B"] * f for k in ("sft", "score", "decode")}


def rl_recipe(cfg: dict, backbone: str):
    """A backbone's DAPO recipe as `prift rl` reads it: `rl.recipe` with `rl.backbones.<backbone>` over it."""
    from prift.recipes import RLRecipe
    return RLRecipe.from_config(cfg["rl"].get("recipe") or {}, cfg["rl"]["backbones"][backbone])


def math_problems(cfg: dict, count_lines) -> dict[str, int]:
    """Problems of each math benchmark (count_lines(path) reads the data file)."""
    return {b: count_lines(cfg["benchmarks"][b]["data"]["path"]) for b in cfg["domains"]["math"]["benchmarks"]}


def stages(cfg: dict, table: dict, rates: dict, lengths: dict, problems: dict[str, int]) -> list[dict]:
    """One row per (stage, backbone): tokens of work, GPU-hours at the measured rate, the job's request (GPUs,
    minutes) and the projected wall time on its GPUs, the paper's GPU-hours, and the mean length that would make
    the projection equal the paper's. `rates`: {sft | score | decode: {"1.5B" | "7B": tokens/s per GPU}}."""
    from prift import resources
    rows = []
    n_train = cfg["domains"]["math"]["train"]["limit"] * cfg["training"]["default"]["epochs"]
    gen = cfg["generation"]

    def row(stage, backbone, what, tokens, seconds, paper=None, implied=None, job_stage=None, job_seconds=None):
        size = cfg["backbones"][backbone]["size_b"]
        req = resources.request(table, job_stage or stage, size)
        wall_min = (seconds if job_seconds is None else job_seconds) / 60 / req["gpu"]
        rows.append({"stage": stage, "backbone": backbone, "what": what, "tokens": tokens,
                     "gpu_hours": seconds / 3600, "gpus": req["gpu"], "limit_min": req["runtime"],
                     "wall_min": wall_min, "fits": wall_min <= req["runtime"], "paper_gpu_hours": paper,
                     "implied_mean_tokens": implied})

    for backbone in ("qwen2.5-math-1.5b", "qwen2.5-math-7b"):
        r = rates_of(backbone, cfg, rates)
        tokens = n_train * lengths["total"]
        score_s, sft_s = tokens / r["score"], tokens / r["sft"]
        paper = APP_F_GPU_HOURS["sft+score"][backbone]
        per_token = 1 / r["score"] + 1 / r["sft"]   # seconds per training token, both stages
        row("score", backbone, f"{n_train:,} examples, 1 forward", tokens, score_s)
        row("sft", backbone, f"{n_train:,} examples, 1 epoch", tokens, sft_s)
        rows.append({"stage": "sft+score", "backbone": backbone, "what": "App. F's SFT run (reference pass "
                     "included)", "tokens": tokens, "gpu_hours": (score_s + sft_s) / 3600, "gpus": None,
                     "limit_min": None, "wall_min": None, "fits": None, "paper_gpu_hours": paper,
                     "implied_mean_tokens": paper * 3600 / per_token / n_train})
    samples = sum(problems.values()) * gen["n"]
    largest = max(problems, key=problems.get)
    for backbone in ("qwen2.5-math-1.5b", "qwen2.5-math-7b"):
        r = rates_of(backbone, cfg, rates)
        tokens = samples * lengths["response"]
        paper = APP_F_GPU_HOURS["generate"]
        row("generate", backbone, f"{sum(problems.values()):,} problems × {gen['n']} samples (largest job: "
            f"{largest}, {problems[largest]})", tokens, tokens / r["decode"], paper,
            paper * 3600 * r["decode"] / samples,
            job_seconds=problems[largest] * gen["n"] * lengths["response"] / r["decode"])
    for backbone in cfg["rl"]["backbones"]:
        r = rates_of(backbone, cfg, rates)
        rl = rl_recipe(cfg, backbone)
        rollouts = rl.steps * rl.prompt_batch_size * rl.rollouts_per_prompt
        # per rollout: its response decoded, then (prompt + response) through the policy's forward and backward
        # and two forwards (the old policy's log-probabilities, the reference's for the KL term)
        per_rollout = lambda resp: resp / r["decode"] + (lengths["prompt"] + resp) * (1 / r["sft"] + 2 / r["score"])
        seconds = rollouts * per_rollout(lengths["response"])
        paper = APP_F_GPU_HOURS["rl"]
        # the mean response length at which `seconds` equals the paper's: per_rollout is linear in it
        a = per_rollout(0.0)
        b = per_rollout(1.0) - a
        row("rl", backbone, f"{rl.steps} steps × {rl.prompt_batch_size} prompts × "
            f"{rl.rollouts_per_prompt} rollouts (one generation round)", rollouts * lengths["total"], seconds,
            paper, (paper * 3600 / rollouts - a) / b)
    return rows


def colocated_memory(cfg: dict, table: dict, gpu_gib: float) -> list[dict]:
    """Per GPU of a DAPO job: vLLM's share (the recipe's `vllm_gpu_memory_utilization` of the GPU, TRL's colocate
    mode) against its bf16 weights (the KV
    cache gets the rest: in tokens), and the training state beside it: fp32 weights, gradients and AdamW's two
    moments (16 bytes per parameter) - whole on each GPU under DDP, a 1/G shard under FSDP - and the bf16 reference
    for the KL term (sharded likewise). What is left holds the activations."""
    from prift import resources
    out = []
    for backbone in cfg["rl"]["backbones"]:
        n = cfg["backbones"][backbone]["size_b"] * 1e9
        gpus = resources.request(table, "rl", cfg["backbones"][backbone]["size_b"])["gpu"]
        shard = gpus if cfg["backbones"][backbone]["size_b"] >= FSDP_FROM_B else 1
        layers, kv, d = KV_SHAPES[backbone]
        util = rl_recipe(cfg, backbone).vllm_gpu_memory_utilization
        share = util * gpu_gib
        weights = 2 * n / 2**30
        kv_tokens = max(share - weights, 0.0) * 2**30 / (2 * layers * kv * d * 2)
        train = 16 * n / shard / 2**30
        ref = 2 * n / shard / 2**30
        out.append({"backbone": backbone, "gpu_gib": gpu_gib, "vllm_utilization": util, "vllm_share_gib": share,
                    "vllm_weights_gib": weights, "kv_cache_tokens": kv_tokens,
                    "parallelism": "FSDP" if shard > 1 else "DDP", "train_state_gib": train, "reference_gib": ref,
                    "left_gib": gpu_gib - share - train - ref})
    return out


def markdown(rows: list[dict], memory: list[dict], lengths: dict, gpu: str) -> list[str]:
    def num(x, fmt):
        return "" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)
    L = ["## The paper's stages, projected (benchmarks/gpu_projection.py)", "",
         f"Work in tokens at the mean lengths of benchmarks/math500_lengths.json (prompt {lengths['prompt']:.0f}, "
         f"response {lengths['response']:.0f} tokens): a stand-in for NuminaMath-CoT's solutions and the models' "
         f"samples. GPU-hours at this check's rates on {gpu} (per GPU; a job's G GPUs taken as G times one). "
         "\"Fits\": the projected wall time on the job's GPUs against the time limit its SLURM job asks for "
         "(workflow/profiles/default/resources.yaml). \"Mean length for App. F\": the mean example (SFT), sample "
         "(evaluation) or response (DAPO) length at which the measured rates take exactly the paper's time.", "",
         "| stage | backbone | work | tokens | GPU-h (projected) | App. F GPU-h | job: GPUs × limit | wall (min) | "
         "fits | mean length for App. F |", "|---|---|---|---:|---:|---:|---|---:|---|---:|"]
    for r in rows:
        job = "" if r["gpus"] is None else f"{r['gpus']} × {r['limit_min']} min"
        fits = "" if r["fits"] is None else ("yes" if r["fits"] else "**no**")
        L.append(f"| {r['stage']} | {r['backbone']} | {r['what']} | {r['tokens']:,.0f} | {r['gpu_hours']:.2f} | "
                 f"{num(r['paper_gpu_hours'], '.2f')} | {job} | {num(r['wall_min'], '.0f')} | {fits} | "
                 f"{num(r['implied_mean_tokens'], ',.0f')} |")
    L += ["", "DAPO with vLLM colocated (per GPU; 16 bytes of training state per parameter, bf16 weights for vLLM and "
          "the reference; vLLM's share: the recipe's `vllm_gpu_memory_utilization`):", "",
          "| backbone | GPU (GiB) | parallelism | vLLM share | its weights | "
          "KV cache (tokens) | training state | reference | left for activations |",
          "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for m in memory:
        L.append(f"| {m['backbone']} | {m['gpu_gib']:.1f} | {m['parallelism']} | {m['vllm_share_gib']:.1f} | "
                 f"{m['vllm_weights_gib']:.1f} | {m['kv_cache_tokens']:,.0f} | {m['train_state_gib']:.1f} | "
                 f"{m['reference_gib']:.1f} | {m['left_gib']:.1f} |")
    return L

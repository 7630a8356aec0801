"""DAPO reinforcement learning from an SFT checkpoint (Table 5; the recipe of App. E) on TRL's GRPOTrainer.

What DAPO is made of, and where each part lives here:
  token-level loss                 TRL's ``loss_type="dapo"`` (Σ over the tokens of a mini-batch / its token count)
  clip-higher                      TRL's ``epsilon`` (0.2, low) and ``epsilon_high`` (0.28)
  GRPO advantages                  TRL's ``scale_rewards="group"``: (r − mean_group) / (std_group + 1e-4)
  rule reward                      `correctness_reward`: +1 for a correct boxed answer, −1 otherwise, judged by
                                   `prift.grading.math_correct` (the evaluation's verdict function)
  soft overlong punishment         TRL's `trl.rewards.get_soft_overlong_punishment` (DAPO Eq. 13), weighted by the
                                   penalty factor (`reward_functions`)
  dynamic sampling                 not in TRL: `prift.dapo.DAPOTrainer` (a GRPOTrainer subclass) drops the prompt groups whose
                                   rollouts all get the same verdict and generates more prompts until the batch of
                                   informative groups is full (see `GroupCollector` and `DAPOTrainer`)
  KL to the initial policy         TRL's ``beta`` (0.01; k3 estimator, the reference is the SFT checkpoint)
Generation runs through vLLM colocated with training on GPU (TRL's ``use_vllm``, ``vllm_mode="colocate"``) and
through ``model.generate`` otherwise, so the CPU tests run the same trainer code.

Batch sizes (verl's semantics, which the App. E recipe is written in) → GRPOConfig
  verl: every RL step generates ``prompt_batch_size`` (128) prompts × n rollouts, then makes
  ``prompt_batch_size / mini_batch_size`` (128/32 = 4) optimizer updates of ``mini_batch_size × n`` rollouts each,
  ``ppo_epochs`` (1) times. TRL counts optimizer steps and micro-batches, so with W processes and micro-batches of
  ``micro_batch_size`` sequences per process:
    num_generations             = n
    gradient_accumulation_steps = mini_batch_size·n / (micro_batch_size·W)        (one update = one PPO mini-batch)
    steps_per_generation        = gradient_accumulation_steps · prompt_batch_size / mini_batch_size
                                  (so generation_batch_size = prompt_batch_size·n rollouts per RL step)
    num_iterations              = ppo_epochs
    max_steps                   = steps · updates_per_rl_step       (updates_per_rl_step = 128/32 · ppo_epochs = 4)
    warmup_steps                = warmup_steps · updates_per_rl_step, lr_scheduler_type "constant_with_warmup"
    save_steps / logging_steps  = whole RL steps (checkpoints always sit at a generation boundary, so a resumed run
                                  regenerates exactly where the killed one would have)
  Since the generation batch spans several updates, TRL computes the old-policy log-probs once per generation and the
  ratio of updates 2..4 is off-policy, as in PPO with mini-batches.

verl 0.4 (the authors' RL code) vs TRL 1.16, item by item (docs/protocol.md lists them with their tests):
  set to verl's behaviour here
    importance sampling   TRL corrects the vLLM-vs-trainer probability mismatch by default
                          (`vllm_importance_sampling_correction`); verl 0.4 applies no correction: off
                          (`importance_sampling_correction: false`; true turns TRL's correction back on)
    refill exhausted      verl raises once `max_num_gen_batches` rounds leave the batch short of informative groups;
                          `on_exhausted: error` does the same (`mask` completes the batch with zero-loss groups)
    batch sizes, clip-higher, token-level loss, k3 KL, group-normalised advantages, overlong punishment: above
  remaining differences
    mini-batch cut        TRL shuffles rollouts across the generation batch before cutting mini-batches; verl cuts
                          whole prompt groups in order (advantages are computed on whole groups first, so the
                          estimator is the same)
    warm-up               TRL's ramps per optimizer update, verl steps its scheduler once per RL step (the same
                          10-RL-step ramp, finer grained)
    refill prompts        drawn at random from the prompts unused in the RL step (verl: the next dataloader batches)
    old log-probs         TRL computes them inside each generation round, also for groups then dropped (cost only)
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import asdict
from pathlib import Path

import torch

from prift import paths
from prift.dapo import DAPOTrainer
from prift.recipes import RLRecipe

def batch_mapping(recipe: RLRecipe, world_size: int = 1) -> dict:
    """The GRPOConfig batch arguments that realise the recipe's (verl) batch sizes; see the module doc."""
    recipe.validate(world_size)
    n = recipe.rollouts_per_prompt
    accum = recipe.mini_batch_size * n // (recipe.micro_batch_size * world_size)
    return {"num_generations": n, "per_device_train_batch_size": recipe.micro_batch_size,
            "gradient_accumulation_steps": accum,
            "steps_per_generation": accum * (recipe.prompt_batch_size // recipe.mini_batch_size),
            "num_iterations": recipe.ppo_epochs,
            "max_steps": recipe.steps * recipe.updates_per_rl_step,
            "warmup_steps": recipe.warmup_steps * recipe.updates_per_rl_step,
            "save_steps": recipe.save_steps * recipe.updates_per_rl_step,
            "logging_steps": recipe.updates_per_rl_step}


# ----------------------------------------------------------------------------------------------------------------------
# Rewards


def completion_text(c) -> str:
    """The text of one completion as TRL passes it: a string (standard prompts), or a list of messages /
    one message (conversational prompts), whose content may be a string or a list of typed parts."""
    if c is None:
        return ""
    if isinstance(c, str):
        return c
    if isinstance(c, dict):
        content = c.get("content", "")
        if isinstance(content, list):
            return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
        return "" if content is None else str(content)
    if isinstance(c, (list, tuple)):
        msgs = [m for m in c if not isinstance(m, dict) or m.get("role", "assistant") == "assistant"]
        return "".join(completion_text(m) for m in msgs)
    return str(c)


def verdict(text: str, gold: str, require_boxed: bool = True) -> bool:
    """Whether a response is correct: the evaluation's `math_correct` (and, with `require_boxed`, a boxed answer)."""
    from prift.grading import math_correct
    from prift.grading.answers import _last_boxed
    if require_boxed and _last_boxed(text) is None:
        return False
    return bool(math_correct(text, str(gold)))


class CorrectnessReward:
    """+1 for a correct (boxed) answer, −1 otherwise. A TRL reward function: (completions, gold, **kwargs)."""
    __name__ = "correct"

    def __init__(self, require_boxed: bool = True):
        self.require_boxed = require_boxed

    def __call__(self, completions, gold, **kwargs) -> list[float]:
        return [1.0 if verdict(completion_text(c), g, self.require_boxed) else -1.0
                for c, g in zip(completions, gold, strict=True)]


def reward_functions(recipe: RLRecipe) -> tuple[list, list[float]]:
    """The RL reward as TRL's reward functions and their weights (each is logged apart): ±1 from the evaluation's
    verdict (`CorrectnessReward`), plus `overlong_penalty` × DAPO's soft overlong punishment (Eq. 13, TRL's
    `get_soft_overlong_punishment`: 0 up to max_response_length − overlong_buffer tokens, then linear down to −1)."""
    funcs, weights = [CorrectnessReward(recipe.require_boxed)], [1.0]
    if recipe.overlong_buffer > 0:
        from trl.rewards import get_soft_overlong_punishment
        funcs.append(get_soft_overlong_punishment(recipe.max_response_length, recipe.overlong_buffer))
        weights.append(recipe.overlong_penalty)
    return funcs, weights


# ----------------------------------------------------------------------------------------------------------------------
# Prompts

_DAPO_PREFIX = re.compile(r"^\s*Solve the following math problem[^\n]*\n+", re.S)
_DAPO_SUFFIX = re.compile(r"\n+\s*Remember to put your answer on its own line after \"Answer:\"\.?\s*$", re.S)


def rl_prompts(records: list[dict]) -> list[dict]:
    """{id, problem, gold} from RL prompt records, deduplicated by problem text (dapo-math-17k repeats each of its
    17,398 prompts ~100 times). Accepted formats: verl / DAPO (``prompt`` = chat messages wrapping the problem in
    DAPO's "Answer:" instruction, ``reward_model.ground_truth``; the instruction is stripped since prompts use the
    evaluation's qwen-boxed template), {problem, answer} (the demo generator, open-r1's processed DAPO: ``prompt`` +
    ``solution``), or already {id, problem, gold}."""
    out, seen = [], set()
    for i, r in enumerate(records):
        if "problem" in r:
            problem = r["problem"]
        elif isinstance(r.get("prompt"), list):
            problem = next((m["content"] for m in reversed(r["prompt"]) if m.get("role") == "user"),
                           r["prompt"][-1]["content"])
            problem = _DAPO_SUFFIX.sub("", _DAPO_PREFIX.sub("", problem)).strip()
        elif isinstance(r.get("prompt"), str):
            problem = r["prompt"]
        else:
            raise ValueError(f"RL prompt record {i}: no 'problem' or 'prompt' field")
        if "gold" in r:
            gold = r["gold"]
        elif isinstance(r.get("reward_model"), dict):
            gold = r["reward_model"]["ground_truth"]
        elif "answer" in r:
            gold = r["answer"]
        elif "solution" in r:
            gold = r["solution"]
        else:
            raise ValueError(f"RL prompt record {i}: no gold answer ('gold', 'reward_model', 'answer' or 'solution')")
        if problem in seen:
            continue
        seen.add(problem)
        extra = r.get("extra_info") if isinstance(r.get("extra_info"), dict) else {}
        pid = r.get("id", extra.get("index", len(out)))
        out.append({"id": str(pid), "problem": problem, "gold": str(gold)})
    return out


def prepare_rl_prompts(spec: dict, exclude_problems: set[str] = frozenset(), *, base_dir: str | Path = ".") -> list[dict]:
    """The RL prompt set of a config dataset entry (`rl.prompts`: generator / path / hub, as every dataset):
    deduplicated {id, problem, gold}, without the problems of the evaluation benchmarks (`exclude_problems`)."""
    from prift.data import load_records
    return [p for p in rl_prompts(load_records(spec, base_dir=base_dir)) if p["problem"] not in exclude_problems]


# ----------------------------------------------------------------------------------------------------------------------
# `prift rl`


def resolve_use_vllm(flag) -> bool:
    import importlib.util
    if flag == "auto":
        return torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None
    return bool(flag)


def _progress_callback(log, recipe: RLRecipe):
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "reward" not in logs or not state.is_world_process_zero:
                return
            step = state.global_step // recipe.updates_per_rl_step

            def f(k, fmt="{:.3f}"):
                v = logs.get(k)
                return "-" if v is None else fmt.format(v)
            log(f"rl step {step}/{recipe.steps}: reward {f('reward')} ± {f('reward_std')}, "
                f"correct {f('rewards/correct/mean')}, filtered {f('dynamic_sampling/frac_filtered', '{:.0%}')} "
                f"({f('dynamic_sampling/rounds', '{:.0f}')} rounds, short {f('dynamic_sampling/groups_short', '{:.0f}')}), "
                f"len {f('completions/mean_length', '{:.0f}')}, kl {f('kl', '{:.4f}')}, entropy {f('entropy')}, "
                f"clip {f('clip_ratio/region_mean', '{:.4f}')}, loss {f('loss', '{:.4f}')}")

    return _Progress()


def vllm_args(recipe: RLRecipe) -> dict:
    """GRPOConfig's vLLM arguments: colocated with training, TRL's importance-sampling correction as the recipe says
    (verl 0.4, the paper's RL code, has none)."""
    return {"use_vllm": True, "vllm_mode": "colocate",
            "vllm_importance_sampling_correction": recipe.importance_sampling_correction,
            "vllm_max_model_length": recipe.max_prompt_length + recipe.max_response_length,
            "vllm_gpu_memory_utilization": recipe.vllm_gpu_memory_utilization,
            "vllm_enable_sleep_mode": recipe.vllm_enable_sleep_mode}


# recipe keys that change no weight: left out of the run's fingerprint
RL_OPERATIONAL = ("save_steps", "save_total_limit", "cpu_threads", "keep_checkpoints")


def train_rl(*, model_path: str, prompts: list[dict], out_dir: str | Path, recipe: RLRecipe,
             ckpt_dir: str | Path | None = None, callbacks: list | None = None, provenance: dict | None = None,
             log=print) -> dict:
    """DAPO from the checkpoint `model_path` on `prompts` ({id, problem, gold}); writes a Hugging Face checkpoint to
    `out_dir` atomically (with train_log.json and prift_run.json). Resumes from the last healthy trainer checkpoint
    in `ckpt_dir` (default: beside `out_dir`, prift.paths.checkpoints_beside) made with the same fingerprint (recipe,
    initial weights, prompts, `provenance`: the backbone entry), else starts from step 0 (prift.runs); a finished run
    of the same fingerprint is never redone. Under torchrun / accelerate launch every process calls this."""
    from datasets import Dataset
    from trl import GRPOConfig
    from prift import runs
    from prift.backbone import load_model, load_tokenizer
    from prift.data import dataset_hash, math_messages

    out_dir = Path(out_dir)
    describe = {"recipe": {k: v for k, v in asdict(recipe).items() if k not in RL_OPERATIONAL},
                "model": runs.model_identity(model_path), "prompts": dataset_hash(prompts),
                "provenance": provenance or {}}
    fp = runs.fingerprint(describe)
    summary = runs.completed(out_dir, fp, log)
    if summary is not None:
        return summary
    ckpt_dir = Path(ckpt_dir) if ckpt_dir else paths.checkpoints_beside(out_dir)
    t0 = time.time()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    bm = batch_mapping(recipe, world)
    use_vllm = resolve_use_vllm(recipe.use_vllm)
    cuda = torch.cuda.is_available()
    if not cuda and recipe.cpu_threads:
        torch.set_num_threads(recipe.cpu_threads)

    tok = load_tokenizer(model_path)
    rows, too_long = [], 0
    for p in prompts:
        msgs = math_messages(p["problem"], recipe.template)
        ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        if len(ids) > recipe.max_prompt_length:
            too_long += 1
            continue
        rows.append({"prompt": msgs, "gold": str(p["gold"]), "id": str(p["id"])})
    if too_long:
        log(f"dropped {too_long} prompts longer than max_prompt_length={recipe.max_prompt_length} tokens")
    if len(rows) < recipe.prompt_batch_size:
        raise ValueError(f"{len(rows)} usable prompts, fewer than prompt_batch_size={recipe.prompt_batch_size}")
    ds = Dataset.from_list(rows)

    model = load_model(model_path, dtype=recipe.dtype)
    n = recipe.rollouts_per_prompt
    reward_funcs, reward_weights = reward_functions(recipe)

    vllm_kwargs = vllm_args(recipe) if use_vllm else {}
    args = GRPOConfig(
        output_dir=str(ckpt_dir), seed=recipe.seed, data_seed=recipe.seed, report_to=[], disable_tqdm=True,
        use_cpu=not cuda, bf16=bool(recipe.bf16 and cuda), fp16=False,
        # batch sizes (see the module doc)
        num_generations=n, per_device_train_batch_size=bm["per_device_train_batch_size"],
        gradient_accumulation_steps=bm["gradient_accumulation_steps"],
        steps_per_generation=bm["steps_per_generation"], num_iterations=bm["num_iterations"],
        max_steps=bm["max_steps"],
        # optimisation
        learning_rate=recipe.lr, lr_scheduler_type="constant_with_warmup", warmup_steps=bm["warmup_steps"],
        weight_decay=recipe.weight_decay, adam_beta1=recipe.betas[0], adam_beta2=recipe.betas[1],
        max_grad_norm=recipe.grad_clip, gradient_checkpointing=recipe.gradient_checkpointing,
        # DAPO objective
        loss_type=recipe.loss_type, epsilon=recipe.epsilon, epsilon_high=recipe.epsilon_high, beta=recipe.kl_coef,
        scale_rewards="group", reward_weights=reward_weights,
        mask_truncated_completions=recipe.mask_truncated_completions,
        # sampling
        max_completion_length=recipe.max_response_length, temperature=recipe.temperature, top_p=recipe.top_p,
        # checkpoints and logs (whole RL steps)
        save_strategy="steps", save_steps=bm["save_steps"], save_total_limit=recipe.save_total_limit,
        logging_steps=bm["logging_steps"], log_completions=False, dataloader_num_workers=0,
        **vllm_kwargs,
    )
    args.mixed_precision = "bf16" if args.bf16 else "no"  # the recipe decides, not the launcher (see prift.sft.train)
    trainer = DAPOTrainer(model=model, reward_funcs=reward_funcs, args=args, train_dataset=ds, processing_class=tok,
                      callbacks=[_progress_callback(log, recipe), runs.health_callback(), *(callbacks or [])],
                      dynamic_sampling=recipe.dynamic_sampling, filter_metric=recipe.filter_metric,
                      max_gen_rounds=recipe.max_gen_rounds, on_exhausted=recipe.on_exhausted)
    parallelism = runs.parallelism(trainer, log=log)
    resume = runs.prepare_checkpoints(ckpt_dir, fp, describe, log=log)
    if resume:
        log(f"resuming from {resume}")
    log(f"DAPO: {recipe.steps} RL steps × {recipe.prompt_batch_size} prompts × {n} rollouts, "
        f"{recipe.updates_per_rl_step} updates per step (GRPOConfig: {bm}), vLLM: {use_vllm}, {len(ds)} prompts")
    result = trainer.train(resume_from_checkpoint=resume)

    step_logs = [h for h in trainer.state.log_history if "reward" in h]
    summary = {"recipe": asdict(recipe) | {"betas": list(recipe.betas)}, "model_path": str(model_path),
               "n_prompts": len(ds), "n_prompts_too_long": too_long,
               "rl_steps": trainer.state.global_step // recipe.updates_per_rl_step,
               "optimizer_steps": trainer.state.global_step, "grpo_config": bm, "world_size": world,
               "parallelism": parallelism, "mixed_precision": trainer.accelerator.mixed_precision,
               "use_vllm": use_vllm, "train_loss": result.training_loss, "resumed_from": resume,
               "seconds": round(time.time() - t0, 1), "fingerprint": fp,
               "save_dtype": runs.resolve_save_dtype(recipe.save_dtype, bool(recipe.bf16 and cuda)),
               "final_reward": step_logs[-1].get("reward") if step_logs else None,
               "tokens": trainer.state.num_input_tokens_seen}   # prompt + completion tokens (TRL's count)
    runs.publish(trainer, out_dir, ckpt_dir, tok, summary, keep_checkpoints=recipe.keep_checkpoints, log=log)
    if trainer.is_world_process_zero():
        log(f"DAPO: {summary['rl_steps']} RL steps, {summary['seconds']} s → {out_dir}")
    return summary

"""DAPO reinforcement learning from an SFT checkpoint (Table 5; the recipe of App. E) on TRL's GRPOTrainer.

What DAPO is made of, and where each part lives here:
  token-level loss                 TRL's ``loss_type="dapo"`` (Σ over the tokens of a mini-batch / its token count)
  clip-higher                      TRL's ``epsilon`` (0.2, low) and ``epsilon_high`` (0.28)
  GRPO advantages                  TRL's ``scale_rewards="group"``: (r − mean_group) / (std_group + 1e-4)
  rule reward                      `correctness_reward`: +1 for a correct boxed answer, −1 otherwise, judged by
                                   `prift.grading.math_correct` (the evaluation's verdict function)
  soft overlong punishment         TRL's `trl.rewards.get_soft_overlong_punishment` (DAPO Eq. 13), weighted by the
                                   penalty factor (`reward_functions`)
  dynamic sampling                 not in TRL: `DAPOTrainer` (a GRPOTrainer subclass) drops the prompt groups whose
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
from trl import GRPOTrainer

from prift import paths
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
# Dynamic sampling (DAPO §3.2): the pure part


def filter_groups(rewards, group_size: int, tol: float = 0.0) -> list[int]:
    """Indices of the prompt groups (consecutive runs of `group_size` rollouts) whose rewards are NOT all equal: a
    group whose rollouts all score the same has zero advantage everywhere and carries no gradient. `tol`: values
    within tol count as equal."""
    r = torch.as_tensor(rewards, dtype=torch.float64).reshape(-1)
    if r.numel() % group_size:
        raise ValueError(f"{r.numel()} rewards do not split into groups of {group_size}")
    g = r.view(-1, group_size)
    spread = g.max(dim=1).values - g.min(dim=1).values
    return [i for i, s in enumerate(spread.tolist()) if s > tol]


class GroupCollector:
    """Refill logic of dynamic sampling, independent of any model: rounds of generated groups come in (their rewards),
    informative groups are kept until `target` of them are collected; degenerate groups are remembered as filler,
    in case the rounds run out (`max_rounds`), to keep the batch shape (the trainer masks them out of the loss).

    add(rewards) → (keep, filler): the group indices of this round to retain as informative / as filler candidates.
    final() → (keep_refs, filler_refs) with refs (round, group) in order: exactly `target` refs in all."""

    def __init__(self, target: int, group_size: int, max_rounds: int = 10, tol: float = 0.0):
        self.target, self.group_size, self.max_rounds, self.tol = target, group_size, max_rounds, tol
        self.rounds = 0
        self.kept: list[tuple[int, int]] = []
        self.filler: list[tuple[int, int]] = []
        self.generated = 0
        self.filtered = 0

    @property
    def done(self) -> bool:
        return len(self.kept) >= self.target

    @property
    def exhausted(self) -> bool:
        return self.done or self.rounds >= self.max_rounds

    def add(self, rewards) -> tuple[list[int], list[int]]:
        informative = filter_groups(rewards, self.group_size, self.tol)
        n_groups = len(torch.as_tensor(rewards).reshape(-1)) // self.group_size
        rnd = self.rounds
        self.rounds += 1
        self.generated += n_groups
        self.filtered += n_groups - len(informative)
        keep = informative[: max(0, self.target - len(self.kept))]
        self.kept += [(rnd, g) for g in keep]
        inf = set(informative)
        need_filler = max(0, self.target - len(self.kept) - len(self.filler))
        filler = [g for g in range(n_groups) if g not in inf][:need_filler]
        self.filler += [(rnd, g) for g in filler]
        return keep, filler

    def final(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        short = max(0, self.target - len(self.kept))
        if short > len(self.filler):
            raise RuntimeError(f"dynamic sampling: {short} groups short and only {len(self.filler)} filler groups")
        return self.kept[: self.target], self.filler[:short]

    def stats(self) -> dict:
        short = max(0, self.target - len(self.kept))
        return {"rounds": self.rounds, "groups_generated": self.generated, "groups_filtered": self.filtered,
                "frac_filtered": self.filtered / max(1, self.generated), "groups_kept": min(len(self.kept), self.target),
                "groups_short": short}


# ----------------------------------------------------------------------------------------------------------------------
# Dynamic sampling: the trainer

_LEFT_PADDED = ("prompt_ids", "prompt_mask")


def _select_rows(out: dict, rows: list[int]) -> dict:
    idx = None
    res = {}
    for k, v in out.items():
        if isinstance(v, torch.Tensor) and v.ndim >= 1:
            if idx is None or idx.device != v.device:
                idx = torch.as_tensor(rows, dtype=torch.long, device=v.device)
            res[k] = v.index_select(0, idx)
        elif k == "num_items_in_batch":
            continue
        elif isinstance(v, list):
            res[k] = [v[i] for i in rows]
        else:
            res[k] = v
    return res


def _merge_rows(parts: list[dict], pad_token_id: int) -> dict:
    """Concatenate row selections of several generation rounds: prompt-side tensors are left-padded, completion-side
    tensors right-padded to the widest round."""
    out = {}
    for k in parts[0]:
        vals = [p[k] for p in parts]
        v0 = vals[0]
        if isinstance(v0, torch.Tensor) and v0.ndim >= 1:
            if v0.ndim == 1 or len({v.shape[1] for v in vals}) == 1:
                out[k] = torch.cat(vals, 0)
                continue
            width = max(v.shape[1] for v in vals)
            fill = pad_token_id if k in ("prompt_ids", "completion_ids") else 0
            padded = []
            for v in vals:
                extra = v.new_full((v.shape[0], width - v.shape[1], *v.shape[2:]), fill)
                padded.append(torch.cat([extra, v] if k in _LEFT_PADDED else [v, extra], 1))
            out[k] = torch.cat(padded, 0)
        elif isinstance(v0, list):
            out[k] = [x for v in vals for x in v]
        else:
            out[k] = v0
    return out


class DAPOTrainer(GRPOTrainer):
    """GRPOTrainer + DAPO's dynamic sampling.

    Hook: `_generate_and_score_completions(inputs)` is the one method through which TRL 1.16 turns a generation
    batch of prompts (each repeated n times) into the tensors of that batch (ids, masks, advantages, old/ref
    log-probs); `_prepare_inputs` then shuffles and cuts it into the micro-batches of the RL step. The override
    calls the original once per round, reads the rewards of the round (captured in `_calculate_rewards`), keeps
    the rows of informative groups (advantages are per group with scale_rewards="group", so dropping other groups
    does not change them) and draws a fresh round of prompts from the training set until the batch holds as many
    informative groups as it had prompts. If `max_gen_rounds` rounds do not suffice, the run stops with an error
    as verl's does (`on_exhausted="error"`), or (`"mask"`) the batch is completed with filtered groups whose loss
    mask is zeroed (no policy, KL or token-count contribution) and the shortfall is logged. The token normaliser of the dapo loss (`num_items_in_batch`) is recomputed on the final batch.

    Refill prompts are drawn uniformly without replacement from the prompts not yet used in this RL step, by an
    RNG keyed on (seed, global step, round, process): deterministic under resume. (verl instead takes the next
    batches of its dataloader; with 100 steps × 128 prompts < one epoch of 17,398 prompts both sample fresh
    prompts from the same set.) Cost caveat: TRL computes the old/reference log-probs inside the scoring step,
    i.e. also for the groups that are then dropped.
    Multi-process: each process keeps whole groups (prompt_batch_size divisible by the process count); all
    processes run the same number of rounds (the collective ops inside TRL's step require it).
    """

    def __init__(self, *args, dynamic_sampling: bool = True, filter_metric: str = "acc", max_gen_rounds: int = 10,
                 on_exhausted: str = "error", **kwargs):
        super().__init__(*args, **kwargs)
        self.dynamic_sampling = dynamic_sampling
        self.filter_metric = filter_metric
        self.max_gen_rounds = max_gen_rounds
        self.on_exhausted = on_exhausted
        self._last_rewards_per_func = None
        self._ds_ids = None
        self._gen_seconds, self._gen_tokens, self._gen_sequences = 0.0, 0, 0
        if dynamic_sampling and self.args.scale_rewards != "group":
            raise ValueError("dynamic sampling needs per-group advantages (scale_rewards='group')")

    # -- generation throughput (this process): seconds in generation and tokens generated, per logged step
    def _generate_single_turn(self, prompt_ids, *args, **kwargs):
        t = time.perf_counter()
        completion_ids, logprobs = super()._generate_single_turn(prompt_ids, *args, **kwargs)
        if self.model.training:
            self._gen_seconds += time.perf_counter() - t
            self._gen_tokens += sum(len(c) for c in completion_ids)
            self._gen_sequences += len(completion_ids)
        return completion_ids, logprobs

    def log(self, logs, start_time=None):
        if self.model.training and self._gen_sequences:
            logs["generation/seconds"] = self._gen_seconds
            logs["generation/tokens"] = float(self._gen_tokens)
            logs["generation/sequences"] = float(self._gen_sequences)
            logs["generation/tokens_per_s"] = self._gen_tokens / max(self._gen_seconds, 1e-9)
            self._gen_seconds, self._gen_tokens, self._gen_sequences = 0.0, 0, 0
        super().log(logs, start_time)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        r = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_rewards_per_func = r  # gathered over processes: [rows of all processes, reward funcs]
        return r

    def _round_rewards(self, n_local: int) -> torch.Tensor:
        r = self._last_rewards_per_func
        start = self.accelerator.process_index * n_local
        r = r[start:start + n_local]
        if self.filter_metric == "acc":
            return r[:, 0].detach().cpu()
        w = self.reward_weights.to(r.device)
        return (r * w.unsqueeze(0)).nansum(dim=1).detach().cpu()

    def _refill_inputs(self, n_prompts: int, used: set, rnd: int) -> list[dict]:
        import numpy as np
        G = self.num_generations
        ds = self.train_dataset
        if getattr(self, "_ds_ids", None) is None:
            self._ds_ids = [str(i) for i in ds["id"]]
        rng = np.random.default_rng([int(self.args.seed), int(self.state.global_step), rnd,
                                     int(self.accelerator.process_index)])
        order = rng.permutation(len(ds))
        picked = [int(i) for i in order if self._ds_ids[int(i)] not in used][:n_prompts]
        if len(picked) < n_prompts:  # a prompt set smaller than a round: allow repeats
            picked += [int(i) for i in rng.integers(0, len(ds), n_prompts - len(picked))]
        rows = []
        for i in picked:
            ex = dict(ds[i])
            used.add(str(ex["id"]))
            rows += [dict(ex) for _ in range(G)]
        return rows

    def _all_processes(self, flag: bool) -> bool:
        if self.accelerator.num_processes == 1:
            return flag
        t = torch.tensor([1 if flag else 0], device=self.accelerator.device)
        return bool(self.accelerator.gather(t).min().item())

    def _generate_and_score_completions(self, inputs):
        if not (self.model.training and self.dynamic_sampling):
            return super()._generate_and_score_completions(inputs)
        G = self.num_generations
        n_rows = len(inputs)
        if n_rows % G:
            raise ValueError(f"dynamic sampling: a process holds {n_rows} rollouts, not whole groups of {G}")
        target = n_rows // G
        collector = GroupCollector(target, G, self.max_gen_rounds)
        used = {str(x["id"]) for x in inputs}
        parts, filler_parts = [], []
        batch = inputs
        while True:
            out = super()._generate_and_score_completions(batch)
            rewards = self._round_rewards(len(batch))
            keep, filler = collector.add(rewards)
            if keep:
                parts.append(_select_rows(out, [g * G + j for g in keep for j in range(G)]))
            if filler:
                filler_parts.append(_select_rows(out, [g * G + j for g in filler for j in range(G)]))
            del out
            if self._all_processes(collector.exhausted):
                break
            batch = self._refill_inputs(target, used, collector.rounds)
        _, filler_refs = collector.final()
        # final() returns the first `target` kept groups (all of `parts`) and the first `short` filler groups
        short = len(filler_refs)
        if self.on_exhausted == "error" and not self._all_processes(short == 0):
            st = collector.stats()
            raise RuntimeError(f"dynamic sampling: {st['rounds']} generation rounds (max_gen_rounds="
                               f"{self.max_gen_rounds}) left the batch short of informative prompt groups "
                               f"({st['groups_kept']} of {target} on this process, {st['groups_filtered']} of "
                               f"{st['groups_generated']} filtered) at step {self.state.global_step}; verl 0.4 "
                               f"stops here too. Raise max_gen_rounds, or set on_exhausted: mask to complete "
                               f"the batch with zero-loss groups")
        if short:
            fill = _merge_rows(filler_parts, self._tokenizer.pad_token_id)
            fill = _select_rows(fill, list(range(short * G)))
            fill["completion_mask"] = torch.zeros_like(fill["completion_mask"])
            fill["advantages"] = torch.zeros_like(fill["advantages"])
            parts.append(fill)
        merged = _merge_rows(parts, self._tokenizer.pad_token_id)
        loss_mask = merged["completion_mask"]
        if "tool_mask" in merged:
            loss_mask = loss_mask * merged["tool_mask"]
        merged["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
        # per-step statistics, summed over processes
        st = collector.stats()
        keys = ("rounds", "groups_generated", "groups_filtered", "groups_kept", "groups_short")
        vals = torch.tensor([float(st[k]) for k in keys], device=self.accelerator.device)
        if self.accelerator.num_processes > 1:
            vals = self.accelerator.gather(vals).view(-1, len(keys))
            vals = torch.cat([vals[:, :1].max(0).values, vals[:, 1:].sum(0)])
        tot = dict(zip(keys, vals.tolist()))
        m = self._metrics["train"]
        for k in keys:
            m[f"dynamic_sampling/{k}"].append(tot[k])
        m["dynamic_sampling/frac_filtered"].append(tot["groups_filtered"] / max(1.0, tot["groups_generated"]))
        return merged



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
               "final_reward": step_logs[-1].get("reward") if step_logs else None}
    runs.publish(trainer, out_dir, ckpt_dir, tok, summary, keep_checkpoints=recipe.keep_checkpoints, log=log)
    if trainer.is_world_process_zero():
        log(f"DAPO: {summary['rl_steps']} RL steps, {summary['seconds']} s → {out_dir}")
    return summary

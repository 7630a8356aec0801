"""DAPO's dynamic sampling (DAPO §3.2), which TRL does not have: drop the prompt groups whose rollouts all get the
same verdict and generate more prompts until the batch of informative groups is full. `filter_groups` and
`GroupCollector` are the pure part; `DAPOTrainer` (a GRPOTrainer subclass, prift.rl trains with it) the trainer.
"""
from __future__ import annotations

import time

import torch
from trl import GRPOTrainer

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

"""Weighted SFT: one (domain, backbone, method) run on TRL's SFTTrainer.

A method is a weighting rule × a source of token statistics (+ optional loss extras):
  source ``online``      statistics of the current forward, stop-gradient (DFT, EAFT, IDFT, TALR, ProFit, ASFT);
  source ``pretrained``  statistics of the frozen initial checkpoint, read from the cached reference pass
                         (PriFT-prob, PriFT-mass, the pretrained variants of Table 6);
  source ``reference``   the cached statistics of any other frozen model (Table 8) or of a partly fine-tuned
                         checkpoint (Fig. 1c): the same cache, another reference;
  source ``ema``         statistics of an EMA of the online model with momentum ρ (Fig. 6a), computed online.
Loss: Σ_t m_t · CE_t · mask_t / N, weights not renormalised; N is the micro-batch's response tokens, and the
micro-batch losses are averaged over accumulation steps and processes (recipe `loss_norm: micro_batch`, the authors'
code), or N is the response tokens of the whole accumulated global batch (`loss_norm: global_tokens`).

TRL's collator and its `compute_loss_func` drop per-token columns, so examples are pre-tokenised here, the collator
is ours (it attaches the cached statistics by example index) and so is `compute_loss`.

The loss itself, in its two implementations (full logits, fused head), is prift.losses.
"""
from __future__ import annotations

import copy
import functools
import os
import time
from pathlib import Path

import torch
from transformers import TrainerCallback
from trl import SFTTrainer

from prift import weighting as W
from prift.methods import Method
from prift.recipes import Recipe, grad_accum_steps
from prift import losses, packing, paths, runs
from prift.runs import last_checkpoint



# ----------------------------------------------------------------------------------------------------------------------
# Data: pre-tokenised examples + a collator that attaches cached statistics by index

class WeightedCollator:
    """A micro-batch of pre-tokenised examples: right-padded rows [B, L] (`packed=False`), or one padding-free row
    [1, T] of the examples one after the other (`packed=True`) with `position_ids` restarting at each example (the
    model's attention then never crosses an example: transformers builds a block-diagonal causal mask, or takes
    flash-attention's variable-length path) and `seq_lens` [B]. The same examples either way, so the micro-batch's
    token count (its loss normalisation) and its batch-level rules (quantile, TALR's τ) are unchanged. For cached
    sources, each example's reference statistics go to its response-token positions (`ref_<stat>`, aligned with
    `labels`, 0 elsewhere)."""

    def __init__(self, pad_token_id: int, cache=None, stat_keys=W.STAT_KEYS, packed: bool = False):
        self.pad = pad_token_id
        self.cache = cache
        self.keys = stat_keys
        self.packed = packed

    def _stats(self, f: dict, labels: torch.Tensor) -> dict:
        stats = self.cache[int(f["idx"])]
        pos = (labels != -100).nonzero().squeeze(-1)
        pos = pos[pos > 0]  # the first token is never predicted
        if len(pos) != len(stats["prob"]):
            raise ValueError(f"example {f['idx']}: {len(pos)} response tokens but the cache holds "
                             f"{len(stats['prob'])}; the statistics were computed for other data")
        return {k: (pos, stats[k].float()) for k in self.keys}

    def __call__(self, features: list[dict]) -> dict:
        if self.packed:
            return self._packed(features)
        L = max(len(f["input_ids"]) for f in features)
        B = len(features)
        batch = {"input_ids": torch.full((B, L), self.pad, dtype=torch.long),
                 "attention_mask": torch.zeros((B, L), dtype=torch.long),
                 "labels": torch.full((B, L), -100, dtype=torch.long)}
        if self.cache is not None:
            for k in self.keys:
                batch[f"ref_{k}"] = torch.zeros((B, L), dtype=torch.float32)
        for r, f in enumerate(features):
            n = len(f["input_ids"])
            batch["input_ids"][r, :n] = torch.as_tensor(f["input_ids"])
            batch["attention_mask"][r, :n] = 1
            labels = torch.as_tensor(f["labels"])
            batch["labels"][r, :n] = labels
            if self.cache is not None:
                for k, (pos, v) in self._stats(f, labels).items():
                    batch[f"ref_{k}"][r, pos] = v
        return batch

    def _packed(self, features: list[dict]) -> dict:
        lens = [len(f["input_ids"]) for f in features]
        T = sum(lens)
        batch = {"input_ids": torch.cat([torch.as_tensor(f["input_ids"]) for f in features])[None],  # [1, T]
                 "position_ids": torch.cat([torch.arange(n) for n in lens])[None],                 # [1, T]
                 "labels": torch.full((1, T), -100, dtype=torch.long), "seq_lens": torch.tensor(lens)}
        if self.cache is not None:
            for k in self.keys:
                batch[f"ref_{k}"] = torch.zeros((1, T), dtype=torch.float32)
        start = 0
        for f, n in zip(features, lens):
            labels = torch.as_tensor(f["labels"])
            # an example's first token is never a target (as in a padded row): the last token of the example before
            # it must not learn to predict it
            batch["labels"][0, start + 1:start + n] = labels[1:]
            if self.cache is not None:
                for k, (pos, v) in self._stats(f, labels).items():
                    batch[f"ref_{k}"][0, start + pos] = v
            start += n
        return batch


# ----------------------------------------------------------------------------------------------------------------------
# The trainer

EMA_FILE = "prift_ema.pt"


def largest_micro_batch(lengths, batch: int, packed: bool) -> int:
    """The most positions one micro-batch of `batch` of these examples (token counts `lengths`, as the collator
    feeds them: it cuts nothing) can hold: `batch` × the longest right-padded, the sum of the `batch` longest
    packed."""
    longest = sorted((int(n) for n in lengths), reverse=True)[:batch]
    if not longest:
        return 0
    return sum(longest) if packed else batch * longest[0]


def _example_lengths(dataset):
    """Token counts of a pre-tokenised dataset's `input_ids` (read from its Arrow column, no rows decoded), or None
    when the dataset has no such column to read (an iterable dataset)."""
    table = getattr(dataset, "data", None)
    if table is None or "input_ids" not in getattr(dataset, "column_names", ()):
        return None
    import pyarrow.compute as pc
    return pc.list_value_length(table.column("input_ids")).to_pylist()


class _Hooks(TrainerCallback):
    def __init__(self, trainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer._t_log = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer._ema_step()
        self.trainer._check_selection()


class WeightedSFTTrainer(SFTTrainer):
    """SFTTrainer whose loss is the method's (rule × source + extras), normalised per micro-batch (the authors')
    or over the global batch (recipe `loss_norm`)."""

    def __init__(self, *args, method: Method, ref_model=None, fused_head: bool | str = "auto",
                 loss_norm: str = "micro_batch", **kwargs):
        model = kwargs.get("model")
        packed = getattr(kwargs.get("data_collator"), "packed", False)
        if packed:
            # packed rows: each sequence attends to itself at the cost of its own length (prift.packing)
            for m in (model, ref_model):
                packing.use_varlen_sdpa(m)
        # The EMA copy is taken before SFTTrainer patches the model's forward (a deepcopy of the patched forward
        # would still call the online model's original forward).
        ema = copy.deepcopy(model).eval().requires_grad_(False) if method.source == "ema" else None
        super().__init__(*args, **kwargs)
        self.method = method
        self.loss_norm = loss_norm
        # global_tokens: compute_loss divides by num_items_in_batch (the response tokens of the whole accumulated
        # global batch), which Trainer then counts for any model; micro_batch: by the micro-batch's own tokens,
        # and Trainer divides by the accumulation steps (DDP/FSDP average over the processes).
        self.loss_is_scaled_for_ga = loss_norm == "global_tokens"
        self.model_accepts_loss_kwargs = loss_norm == "global_tokens"
        self._sel = None  # [2]: response tokens selected (m_t > 0), response tokens, since the start (this process)
        # the size that decides `auto` on CPU: the largest micro-batch this run's examples can form (without
        # their lengths, per_device_batch_size × max_length positions)
        batch = self.args.per_device_train_batch_size
        lengths = _example_lengths(kwargs.get("train_dataset"))
        tokens = batch * self.args.max_length if lengths is None else largest_micro_batch(lengths, batch, packed)
        self.fused = losses.loss_path(fused_head, self.model, device=self.args.device.type, tokens=tokens)
        if self.fused:
            losses.add_prift_head(self.model)
        dev = self.args.device
        self.ref_model = ref_model.to(dev).eval().requires_grad_(False) if ref_model is not None else None
        self.ema_model = ema.to(dev) if ema is not None else None
        if self.ema_model is not None and self.is_fsdp_enabled:
            raise ValueError(f"method '{method.name}': the EMA source is not supported under FSDP (the EMA copy "
                             f"would need the same sharding); use DDP")
        self._acc: dict[str, torch.Tensor] = {}
        self._t_log = None
        self.tokens_seen = 0   # real (non-padding) input tokens of this session, all processes (the cost table)
        self.add_callback(_Hooks(self))

    # -- loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        ref = {k: inputs.pop(k) for k in list(inputs) if k.startswith("ref_")} or None
        labels = inputs.pop("labels")
        seq_lens = inputs.pop("seq_lens", None)   # a packed micro-batch: one row, position_ids restart per example
        fwd = {k: inputs[k] for k in ("input_ids", "attention_mask", "position_ids") if k in inputs}
        global_tokens = self.loss_norm == "global_tokens" and num_items_in_batch is not None
        n = num_items_in_batch if global_tokens else (labels[:, 1:] != -100).sum()
        n = torch.as_tensor(n, device=labels.device).clamp(min=1)
        m = self.method
        if self.fused:
            ref_hidden = ema_hidden = None
            ref_head = ema_head = (None, None)
            with torch.no_grad():
                if m.needs_ref_logits:
                    ref_hidden = self.ref_model.base_model(**fwd, use_cache=False).last_hidden_state
                    h = self.ref_model.get_output_embeddings()
                    ref_head = (h.weight, h.bias)
                if self.ema_model is not None:
                    ema_hidden = self.ema_model.base_model(**fwd, use_cache=False).last_hidden_state
                    h = self.ema_model.get_output_embeddings()
                    ema_head = (h.weight, h.bias)
            head = functools.partial(losses.method_loss_hidden, m, labels=labels, num_tokens=n, ref=ref,
                                     ref_hidden=ref_hidden, ref_head=ref_head, ema_hidden=ema_hidden,
                                     ema_head=ema_head, seq_lens=seq_lens)
            loss, diag = model(**fwd, prift_head=head)
        else:
            outputs = model(**fwd, use_cache=False)
            ref_logits = ema_logits = None
            with torch.no_grad():
                if m.needs_ref_logits:
                    ref_logits = self.ref_model(**fwd, use_cache=False).logits
                if self.ema_model is not None:
                    ema_logits = self.ema_model(**fwd, use_cache=False).logits
            loss, diag = losses.method_loss(m, outputs.logits, labels, n, ref, ref_logits, ema_logits, seq_lens)
        if not torch.isfinite(loss):
            step = self.state.global_step + 1
            last = last_checkpoint(Path(self.args.output_dir))
            raise FloatingPointError(f"non-finite loss ({loss.item()}) at step {step} (method '{m.name}'); "
                                     f"the last good checkpoint is {last or 'none (no checkpoint saved yet)'}")
        # num_items_in_batch counts the tokens of every rank and DDP averages the gradients over the ranks
        if global_tokens and self.args.average_tokens_across_devices:
            loss = loss * self.accelerator.num_processes
        sel = torch.stack([diag["selected"], diag["resp_tokens"]]).detach().double()
        self._sel = sel if self._sel is None else self._sel + sel
        diag = {k: diag[k] for k in ("weight_sum", "selected", "resp_tokens", "kl_sum") if k in diag}
        ids = inputs["input_ids"]   # tokens of the micro-batch (a packed one has no padding, hence no mask)
        diag["tokens"] = inputs["attention_mask"].sum() if "attention_mask" in inputs else ids.new_tensor(ids.numel())
        for k, v in diag.items():
            v = v.detach().double()
            self._acc[k] = self._acc[k] + v if k in self._acc else v
        return (loss, None) if return_outputs else loss

    # -- per-step logs: mean token weight, fraction selected, KL to the reference, tokens/s (all ranks)
    def log(self, logs, start_time=None):
        if self._acc:
            keys = sorted(self._acc)
            vals = torch.stack([self._acc[k] for k in keys])
            if self.accelerator.num_processes > 1:
                vals = self.accelerator.reduce(vals, reduction="sum")
            d = dict(zip(keys, vals.tolist()))
            self.tokens_seen += int(d["tokens"])
            logs.update(losses.diag_means(d))
            now = time.perf_counter()
            if self._t_log is not None and now > self._t_log:
                logs["tokens_per_s"] = d["tokens"] / (now - self._t_log)
            self._t_log = now
            self._acc = {}
        super().log(logs, start_time)

    # -- a method whose weights select (almost) nothing stops: all processes, after every optimizer step
    def _check_selection(self):
        sel = torch.zeros(2, dtype=torch.float64, device=self.accelerator.device) if self._sel is None else self._sel
        if self.accelerator.num_processes > 1:
            sel = self.accelerator.reduce(sel.to(self.accelerator.device), reduction="sum")
        selected, total = sel.tolist()
        m = self.method
        if total > 0 and selected / total < m.min_selected_frac:
            raise RuntimeError(f"method '{m.name}' (rule {m.rule!r}, params {m.params}, source {m.source!r}): its "
                               f"weights select {int(selected)} of {int(total)} response tokens so far "
                               f"({selected / total:.2%} < min_selected_frac={m.min_selected_frac:g}); check the "
                               f"rule's parameters, or set min_selected_frac: 0 in its config entry if this is "
                               f"intended")

    # -- EMA source
    def _ema_step(self):
        if self.ema_model is not None:
            W.ema_update(list(self.ema_model.parameters()),
                         list(self.accelerator.unwrap_model(self.model).parameters()), self.method.ema_rho)

    def _save_checkpoint(self, model, trial):
        if self.ema_model is not None and self.args.should_save:
            d = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            os.makedirs(d, exist_ok=True)
            torch.save(self.ema_model.state_dict(), os.path.join(d, EMA_FILE))
        super()._save_checkpoint(model, trial)  # trainer_state.json last: the checkpoint is then complete

    def load_ema(self, ckpt: str):
        if self.ema_model is not None:
            path = os.path.join(ckpt, EMA_FILE)
            if not os.path.exists(path):
                raise FileNotFoundError(f"{ckpt} has no EMA state ({EMA_FILE}); cannot resume the EMA source")
            self.ema_model.load_state_dict(torch.load(path, map_location=self.args.device, weights_only=True))



# ----------------------------------------------------------------------------------------------------------------------
# `prift sft`

def train(*, model_path: str, examples: list[dict], out_dir: str | Path, method: Method, recipe: Recipe,
          scores_path: str | Path | None = None, ref_model_path: str | None = None, dtype: str | None = None,
          ckpt_dir: str | Path | None = None, heldout: list[dict] | None = None, analysis: dict | None = None,
          provenance: dict | None = None, callbacks: list | None = None, log=print) -> dict:
    """Train one run and write a Hugging Face checkpoint to `out_dir` (atomically).

    Resumes from the last healthy trainer checkpoint in `ckpt_dir` (default: beside `out_dir`,
    prift.paths.checkpoints_beside) made by a run of the same fingerprint (optimizer, scheduler, data position, RNG);
    checkpoints of another configuration are discarded and the run starts from step 0 (prift.runs). A finished run of the same fingerprint is never redone.
    `provenance`: what else decides the weights and is not in the arguments (the config's backbone entries: hub id,
    revision, path).

    Weights are kept in float32 and bf16 runs under autocast (mixed precision, fp32 master weights), unless `dtype`
    names another dtype for the trained weights. Under torchrun / accelerate launch every process calls this; the
    global batch stays `recipe.global_batch_size` through gradient accumulation.

    `analysis` = {every, kl}: with `heldout` examples, a DriftProbe (prift.analysis) records every `every` steps how
    far the online model's token statistics have moved from the frozen pretrained model on them (Fig. 1a/1b/3a/3c);
    the records go to probes.jsonl beside `out_dir` while training (prift.paths.probes_beside; a resumed run continues
    it) and into the final checkpoint directory."""
    from datasets import Dataset
    from trl import SFTConfig
    from prift.backbone import load_model, load_tokenizer
    from prift.data import TOKENIZATION, check_lengths, dataset_hash, length_report, tokenize_all, tokenizer_hash
    from prift.scoring import ScoreCache

    out_dir = Path(out_dir)
    ckpt_dir = Path(ckpt_dir) if ckpt_dir else paths.checkpoints_beside(out_dir)
    t0 = time.time()
    tok = load_tokenizer(model_path)
    tokenized = tokenize_all(tok, examples, recipe.max_length)
    lengths = length_report(tokenized)
    check_lengths(lengths, max_truncated_frac=recipe.max_truncated_frac, max_empty_frac=recipe.max_empty_frac,
                  what=f"training data of '{method.name}'", log=log)
    cache = None
    if method.cached:
        if scores_path is None:
            raise ValueError(f"method '{method.name}' reads cached reference statistics: pass scores_path")
        cache = ScoreCache(scores_path, expect={"tokenizer_hash": tokenizer_hash(tok),
                                                "dataset_hash": dataset_hash(examples),
                                                "max_length": recipe.max_length, "n_examples": len(examples),
                                                "tokenization": TOKENIZATION})
    world = int(os.environ.get("WORLD_SIZE", "1"))
    accum = grad_accum_steps(recipe.global_batch_size, recipe.per_device_batch_size, world)
    use_bf16 = recipe.bf16 and torch.cuda.is_available()
    ref_path = (ref_model_path or model_path) if method.needs_ref_logits else None
    describe = {"method": {k: v for k, v in method.__dict__.items() if k not in ("name", "min_selected_frac")},
                "recipe": recipe.weights_part(), "model": runs.model_identity(model_path),
                "provenance": provenance or {}, "tokenization": TOKENIZATION, "tokenizer": tokenizer_hash(tok),
                "data": dataset_hash(examples), "scores": cache.provenance if cache is not None else None,
                "ref_model": runs.model_identity(ref_path) if ref_path else None, "dtype": dtype, "bf16": use_bf16,
                "analysis": analysis if heldout else None, "heldout": dataset_hash(heldout) if heldout else None}
    fp = runs.fingerprint(describe)
    summary = runs.completed(out_dir, fp, log)
    if summary is not None:
        return summary
    ds = Dataset.from_list([{"input_ids": t["input_ids"], "labels": t["labels"], "idx": i}
                            for i, t in enumerate(tokenized)])
    model = load_model(model_path, dtype=dtype or "float32")
    ref_model = load_model(ref_path, dtype="bfloat16" if use_bf16 else "float32") if ref_path else None
    args = SFTConfig(
        output_dir=str(ckpt_dir), per_device_train_batch_size=recipe.per_device_batch_size,
        gradient_accumulation_steps=accum, num_train_epochs=recipe.epochs, max_steps=recipe.max_steps,
        learning_rate=recipe.lr, adam_beta1=recipe.betas[0], adam_beta2=recipe.betas[1],
        weight_decay=recipe.weight_decay, lr_scheduler_type=recipe.scheduler, warmup_steps=recipe.warmup_ratio,
        max_grad_norm=recipe.grad_clip, bf16=use_bf16, seed=recipe.seed, data_seed=recipe.seed,
        save_strategy="steps", save_steps=recipe.save_steps, save_total_limit=2, logging_steps=recipe.logging_steps,
        report_to=[], max_length=recipe.max_length, remove_unused_columns=False,
        # gradient_checkpointing, not activation_checkpointing: transformers 5.17, the cluster lock's (vLLM 0.31 requires
        # < 5.18), has only the old name; later 5.x releases keep it as a deprecated alias until v6
        dataset_kwargs={"skip_prepare_dataset": True}, gradient_checkpointing=recipe.gradient_checkpointing,
        dataloader_num_workers=0, disable_tqdm=False, use_cpu=not torch.cuda.is_available(),
        average_tokens_across_devices=recipe.loss_norm == "global_tokens",
    )
    # The recipe decides mixed precision, not the launcher: TrainingArguments otherwise takes accelerate's
    # ACCELERATE_MIXED_PRECISION (bf16 in config/accelerate/*.yaml), which would put a CPU or fp32 run under bf16
    # autocast while the fingerprint says bf16: false.
    args.mixed_precision = "bf16" if use_bf16 else "no"
    keys = method.stats if method.cached else ()
    trainer = WeightedSFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, method=method,
                      ref_model=ref_model, fused_head=recipe.fused_head, loss_norm=recipe.loss_norm,
                      data_collator=WeightedCollator(tok.pad_token_id, cache, stat_keys=keys, packed=recipe.packing),
                      callbacks=[runs.health_callback(), *(callbacks or [])])
    parallelism = runs.parallelism(trainer, log=log)
    # once the trainer has set up the processes of the launch, which prepare_checkpoints synchronises
    resume = runs.prepare_checkpoints(ckpt_dir, fp, describe, after_nan=recipe.after_nan, log=log)
    probes = paths.probes_beside(out_dir)
    if analysis and analysis.get("every") and heldout:
        from prift.analysis import DriftProbe
        # the probes' frozen reference, on every rank (see DriftProbe._probe); bf16 when training in bf16, so that a
        # 7-8B reference takes 16 GB of each GPU rather than 32 (statistics are computed in float32 either way)
        probe_ref = load_model(model_path, dtype="bfloat16" if use_bf16 else "float32").to(trainer.args.device)
        trainer.add_callback(DriftProbe(tokenize_all(tok, heldout, recipe.max_length), probes, analysis["every"],
                                        ref_model=probe_ref, kl=analysis.get("kl", True),
                                        tokens=analysis.get("tokens", 1)))
    if not resume and probes.exists():  # a run started afresh does not continue an old run's probes
        probes.unlink()
    if resume:
        log(f"resuming from {resume}")
        trainer.load_ema(resume)
    try:
        result = trainer.train(resume_from_checkpoint=resume)
    except FloatingPointError as e:
        if trainer.is_world_process_zero():
            runs.mark_stopped(ckpt_dir, str(e))
        log(f"stopped: {e}")
        raise

    summary = {"method": method.__dict__, "recipe": recipe.__dict__ | {"betas": list(recipe.betas)},
               "model_path": model_path, "scores_path": str(scores_path) if scores_path else None,
               "n_examples": len(examples), "data": lengths, "global_steps": trainer.state.global_step,
               "train_loss": result.training_loss, "resumed_from": resume, "seconds": round(time.time() - t0, 1),
               "grad_accum": accum, "world_size": world, "parallelism": parallelism,
               "mixed_precision": trainer.accelerator.mixed_precision, "fused_head": trainer.fused, "fingerprint": fp,
               "save_dtype": runs.resolve_save_dtype(recipe.save_dtype, use_bf16),
               "tokens": trainer.tokens_seen}
    runs.publish(trainer, out_dir, ckpt_dir, tok, summary, keep_checkpoints=recipe.keep_checkpoints,
                 files={paths.PROBES: probes}, log=log)
    if trainer.is_world_process_zero():
        log(f"{method.name}: {trainer.state.global_step} steps, loss {result.training_loss:.4f}, "
            f"{summary['seconds']} s → {out_dir}")
    return summary


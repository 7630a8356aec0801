"""What SFT and RL runs share around the trainer: the fingerprint of what a run is made of, checkpoints that are only
resumed by the run that made them, and the health of a checkpoint (only a sane one is resumed).

A run's checkpoint folder (`<run>/checkpoints`) holds `prift_fingerprint.json`: the fingerprint of everything that
decides the weights (method, recipe, data, cached statistics, backbone entry, weights of the initial model). A run
started with another fingerprint - a changed learning rate, τ, backbone revision or dataset - discards the folder and
trains from step 0, and says so; the same fingerprint resumes from the newest good checkpoint.

Each checkpoint gets `prift_health.json` when it is saved: the largest absolute weight over all processes and whether
every weight is finite and below `SANE_WEIGHT` (weights around 1e29 came before a NaN loss, a few steps after a
checkpoint that already held them). Only healthy checkpoints are resumed. A run stopped by a non-finite loss leaves
`prift_stopped.json` in its checkpoint folder; running it again needs an explicit choice (training recipe
`after_nan: resume | restart`), since the same config would most likely diverge again.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from pathlib import Path

FINGERPRINT_FILE = "prift_fingerprint.json"
HEALTH_FILE = "prift_health.json"
STOPPED_FILE = "prift_stopped.json"
CKPT_DONE = "trainer_state.json"   # written last by Trainer._save_checkpoint: its presence marks a complete checkpoint
SANE_WEIGHT = 1.0e4                # |weight| above this is divergence: trained LLM weights stay far below 100


def fingerprint(obj) -> str:
    """A short stable hash of a JSON-able description."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


def model_identity(model_path: str) -> dict:
    """What identifies the weights behind `model_path`: for a directory, the weight and config files' names, sizes and
    modification times (a rebuilt or retrained model changes them) and the hash of a fine-tuned run's summary
    (prift_run.json); for a hub id, the id (its revision is part of the backbone entry)."""
    p = Path(model_path)
    if not p.is_dir():
        return {"model": str(model_path)}
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in (".safetensors", ".bin", ".json"))
    ident = {"model": str(p.resolve()), "files": [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]}
    if (p / "prift_run.json").is_file():
        ident["run"] = hashlib.sha256((p / "prift_run.json").read_bytes()).hexdigest()[:16]
    return ident


def _complete_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    found = []
    if not ckpt_dir.is_dir():
        return found
    for p in ckpt_dir.iterdir():
        m = re.fullmatch(r"checkpoint-(\d+)", p.name)
        if m and p.is_dir() and (p / CKPT_DONE).is_file():
            try:
                json.loads((p / CKPT_DONE).read_text())
            except ValueError:
                continue
            found.append((int(m.group(1)), p))
    return sorted(found)


def healthy(ckpt: Path) -> bool:
    try:
        return bool(json.loads((Path(ckpt) / HEALTH_FILE).read_text()).get("good"))
    except (OSError, ValueError):
        return False


def last_checkpoint(ckpt_dir: str | Path) -> str | None:
    """The newest complete and healthy trainer checkpoint (`checkpoint-<step>` holding trainer_state.json and a good
    prift_health.json) in ckpt_dir: a checkpoint written partly (a killed run) or holding diverged weights is
    skipped."""
    good = [p for _, p in _complete_checkpoints(Path(ckpt_dir)) if healthy(p)]
    return str(good[-1]) if good else None


def prepare_checkpoints(ckpt_dir: str | Path, fp: str, describe: dict, *, after_nan: str = "stop",
                        log=print) -> str | None:
    """The checkpoint to resume from, after making sure that every checkpoint in `ckpt_dir` was made by a run of
    fingerprint `fp` (else the folder is emptied: the run starts over, and the log says why). `describe` is written
    beside the fingerprint for a reader. After a non-finite-loss stop, `after_nan` decides: "stop" (raise, naming
    the two choices), "resume" (from the last healthy checkpoint) or "restart" (from step 0).

    Every process of a launch calls it: all of them read the folder, then the main process alone changes it, and all
    return once it is done (two processes emptying and writing one folder at once lose each other's files)."""
    from accelerate import PartialState
    state = PartialState()
    ckpt_dir = Path(ckpt_dir)
    fp_file = ckpt_dir / FINGERPRINT_FILE
    have = None
    if fp_file.is_file():
        try:
            have = json.loads(fp_file.read_text()).get("fingerprint")
        except ValueError:
            have = None
    stale = ckpt_dir.is_dir() and any(ckpt_dir.iterdir()) and have != fp
    stopped = ckpt_dir / STOPPED_FILE
    info = json.loads(stopped.read_text()) if not stale and stopped.is_file() else None
    if info is not None and after_nan == "stop":
        raise RuntimeError(f"{ckpt_dir}: the last run stopped on a non-finite loss ({info.get('reason')}); "
                           f"running it again with the same configuration needs a choice: set `after_nan: "
                           f"resume` (from the last healthy checkpoint, {last_checkpoint(ckpt_dir) or 'none'}) or "
                           f"`after_nan: restart` (from step 0) in the training recipe, or change the recipe")
    state.wait_for_everyone()   # every process has read the folder before it changes
    if state.is_main_process:
        if stale:
            n = len(_complete_checkpoints(ckpt_dir))
            log(f"{ckpt_dir}: {n} checkpoint(s) made by another configuration (fingerprint {have} != {fp}): "
                f"discarded, training from step 0")
            shutil.rmtree(ckpt_dir)
        elif info is not None and after_nan == "restart":
            log(f"{ckpt_dir}: after_nan=restart: discarding the checkpoints of the stopped run")
            shutil.rmtree(ckpt_dir)
        elif info is not None:
            stopped.unlink()
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        if not fp_file.is_file():
            from prift.io import write_text
            write_text(fp_file, json.dumps({"fingerprint": fp, "of": describe}, indent=1, sort_keys=True, default=str))
    state.wait_for_everyone()
    return last_checkpoint(ckpt_dir)


def mark_stopped(ckpt_dir: str | Path, reason: str) -> None:
    p = Path(ckpt_dir) / STOPPED_FILE
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"reason": reason, "last_good": last_checkpoint(ckpt_dir)}))


def max_abs_weight(model) -> float:
    """The largest |weight| of the model over all processes (local shards under FSDP); inf if any is not finite."""
    import torch
    import torch.distributed as dist
    worst = torch.zeros((), dtype=torch.float32)
    dev = None
    for p in model.parameters():
        t = p.detach()
        if hasattr(t, "to_local"):  # a DTensor shard (FSDP2)
            t = t.to_local()
        if t.numel() == 0:
            continue
        dev = t.device
        m = t.abs().max().float()
        if not torch.isfinite(m):
            m = torch.tensor(float("inf"), device=t.device)
        worst = torch.maximum(worst.to(t.device), m)
    if dist.is_available() and dist.is_initialized():
        worst = worst.to(dev or "cpu")
        if dist.get_backend() == "nccl" and worst.device.type != "cuda":
            worst = worst.cuda()
        dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return float(worst)


def health_callback():
    """A transformers TrainerCallback writing prift_health.json into every checkpoint it saves (all processes take
    part in the max over weights; the main process writes)."""
    from transformers import TrainerCallback

    class _Health(TrainerCallback):
        def on_save(self, args, state, control, model=None, **kwargs):
            worst = max_abs_weight(model)
            if state.is_world_process_zero:
                ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                good = math.isfinite(worst) and worst <= SANE_WEIGHT
                if ckpt.is_dir():
                    (ckpt / HEALTH_FILE).write_text(json.dumps({"good": good, "max_abs_weight": worst,
                                                                "step": state.global_step}))

    return _Health()


def parallelism(trainer, log=print) -> str:
    """How the processes of a (started) Trainer share the model: "fsdp2" / "fsdp1" (parameters, gradients and optimizer
    state sharded), "ddp" (a full replica per process, gradients averaged) or "single". Recorded in prift_run.json.

    A launch that asks for FSDP (accelerate's config sets ACCELERATE_USE_FSDP) and gets DDP is said in the log:
    accelerate promotes a launch to FSDP only on GPU-like devices, so `accelerate launch --config_file
    config/accelerate/fsdp.yaml` on CPU trains with DDP on gloo (correct, with a full model in every process)."""
    acc = trainer.accelerator
    if trainer.is_fsdp_enabled:
        return "fsdp2" if acc.is_fsdp2 else "fsdp1"
    kind = "ddp" if acc.num_processes > 1 else "single"
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        log(f"FSDP was asked for (ACCELERATE_USE_FSDP) but accelerate runs {kind} ({acc.distributed_type.value}): "
            f"accelerate enables FSDP only on GPUs; every process holds the full model")
    return kind


def save_final_model(trainer, out_dir: str | Path) -> None:
    """Write the trained model to `out_dir` as a Hugging Face checkpoint. Every process calls it; the main process
    writes.

    Under FSDP (sharded trainer checkpoints while training) the full state dict is gathered from the shards once
    (accelerate: torch's `get_model_state_dict`, full tensors on the main process's CPU). The gather hands back weights
    that the model ties - the embedding and output layer of a tied backbone such as Qwen2.5-1.5B - as separate
    tensors, which `save_pretrained` would store twice; they are made one tensor again, so that the checkpoint is the
    one a single process writes."""
    if not trainer.is_fsdp_enabled:
        trainer.save_model(str(out_dir))
        return
    state = trainer.accelerator.get_state_dict(trainer.model)   # a collective; empty on the other processes
    model = trainer.accelerator.unwrap_model(trainer.model)
    owner: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        first = owner.setdefault(id(p), name)
        if first != name and first in state and name in state:
            state[name] = state[first]
    if trainer.is_world_process_zero():
        model.save_pretrained(str(out_dir), state_dict=state)


def resolve_save_dtype(save_dtype: str, bf16_training: bool) -> str:
    """The dtype a final model is saved in: `auto` = the training dtype (bfloat16 for a bf16 run on GPU: the paper's
    7-8B runs take 15 GB each instead of 30), else float32; or the named dtype."""
    if save_dtype == "auto":
        return "bfloat16" if bf16_training else "float32"
    from prift.recipes import SAVE_DTYPES
    if save_dtype not in SAVE_DTYPES:
        raise ValueError(f"save_dtype must be one of {SAVE_DTYPES}, not {save_dtype!r}")
    return save_dtype


def cast_checkpoint(model_dir: str | Path, dtype: str) -> None:
    """Rewrite a saved Hugging Face checkpoint's floating-point weights in `dtype` (every *.safetensors shard, the
    shard index's total size, config.json's dtype), in place. Integer tensors are left as they are."""
    import torch
    from safetensors.torch import load_file, save_file
    target = getattr(torch, dtype)
    model_dir = Path(model_dir)
    total = 0
    for f in sorted(model_dir.glob("*.safetensors")):
        tensors = load_file(str(f))
        if any(t.is_floating_point() and t.dtype != target for t in tensors.values()):
            tensors = {k: t.to(target) if t.is_floating_point() else t for k, t in tensors.items()}
            save_file({k: t.contiguous() for k, t in tensors.items()}, str(f), metadata={"format": "pt"})
        total += sum(t.numel() * t.element_size() for t in tensors.values())
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        meta = json.loads(index.read_text())
        meta.setdefault("metadata", {})["total_size"] = total
        index.write_text(json.dumps(meta, indent=2))
    cfg = model_dir / "config.json"
    if cfg.exists():
        c = json.loads(cfg.read_text())
        c["dtype" if "dtype" in c or "torch_dtype" not in c else "torch_dtype"] = dtype
        cfg.write_text(json.dumps(c, indent=2))


def completed(out_dir: str | Path, fp: str, log=print) -> dict | None:
    """The summary of a finished run of fingerprint `fp` in `out_dir` (then there is nothing to do), else None; a
    finished run of another configuration is trained again, and the log says so."""
    done = Path(out_dir) / "prift_run.json"
    if not done.exists():
        return None
    summary = json.loads(done.read_text())
    if summary.get("fingerprint") == fp:
        log(f"{out_dir} is complete; nothing to do")
        return summary
    log(f"{out_dir} was trained with another configuration (fingerprint {summary.get('fingerprint')} != {fp}); "
        f"training it again")
    return None


def publish(trainer, out_dir: str | Path, ckpt_dir: str | Path, tok, summary: dict, *, keep_checkpoints: bool,
            files: dict[str, Path] | None = None, log=print) -> None:
    """The end of a run, on every process: the final model (gathered from the shards under FSDP) in the summary's
    `save_dtype`, its tokenizer, train_log.json, prift_run.json (`summary`) and `files` ({name: path} copied in)
    written beside `out_dir` and moved onto it at once; the trainer checkpoints removed unless kept."""
    from contextlib import nullcontext
    from prift.io import atomic_path
    main = trainer.is_world_process_zero()
    with atomic_path(out_dir) if main else nullcontext() as tmp:   # only the main process writes
        trainer.accelerator.wait_for_everyone()
        save_final_model(trainer, tmp if main else out_dir)
        if main:
            finish_run(tmp, ckpt_dir, save_dtype=summary["save_dtype"], keep_checkpoints=keep_checkpoints, log=log)
            tok.save_pretrained(str(tmp))
            (tmp / "train_log.json").write_text(json.dumps(trainer.state.log_history, indent=1))
            (tmp / "prift_run.json").write_text(json.dumps(summary, indent=2, default=str))
            for name, path in (files or {}).items():
                if Path(path).exists():
                    shutil.copy(path, tmp / name)
    trainer.accelerator.wait_for_everyone()


def finish_run(model_dir: str | Path, ckpt_dir: str | Path, *, save_dtype: str, keep_checkpoints: bool,
               log=print) -> None:
    """After a run's final model is written (main process, before it is published): weights in the save dtype; the
    trainer checkpoints (optimizer state included: 3x the weights) removed unless kept - some 55 SFT and RL runs of
    7-8B models would otherwise fill terabytes."""
    if save_dtype != "float32":
        cast_checkpoint(model_dir, save_dtype)
    if not keep_checkpoints and Path(ckpt_dir).is_dir():
        freed = sum(f.stat().st_size for f in Path(ckpt_dir).rglob("*") if f.is_file())
        shutil.rmtree(ckpt_dir)
        log(f"removed the trainer checkpoints ({freed / 2**30:.2f} GiB) of the finished run: {ckpt_dir}")

"""Test helper: run `prift` verbs under FSDP2 on CPU (gloo), through the repository's own FSDP launch path.

    accelerate launch --config_file config/accelerate/fsdp.yaml --num_processes 2 -m tests.fsdp_launch JOBS.json

is the command of `workflow/rules/common.smk` `launcher("sft")` with `-m tests.fsdp_launch` in place of
`-m prift.cli`: this module makes accelerate keep the FSDP that the config asks for, then calls `prift.cli.main` for
each job of JOBS.json in turn, [{"argv": ["sft", "--config", ...], "kill_at": null | <optimizer step>}, ...] (one
launch for several runs: starting the processes costs more than a tiny run). Each job gets a fresh accelerate state
and FSDP plugin, as a process of its own would (TrainingArguments resets accelerate's shared state).

Why the promotion: accelerate turns the config's FSDP into FSDP only for GPU-like distributed types
(`AcceleratorState.__init__` promotes MULTI_GPU, MULTI_XPU, ... but not MULTI_CPU), so on CPU the same launch trains
with DDP on gloo (prift records `parallelism: ddp`). Everything FSDP needs works on CPU with gloo (torch's
`fully_shard`, DTensor collectives, distributed checkpoints), so the promotion is the only change: after
accelerate's own `__init__`, a MULTI_CPU state that was given an FSDP plugin becomes FSDP, in both of accelerate's
shared states. `PartialState` must change as well: every later `AcceleratorState()` (accelerate's optimizer wrapper
makes one) starts by copying `PartialState._shared_state` into itself, so promoting only the AcceleratorState is
undone as soon as the optimizer is prepared: the model is sharded, but clipping, accumulation and the final save
then run as MULTI_CPU (the final save gets the DTensor shards instead of a gathered state dict, and crashes on a tied
embedding with an odd row count, or hangs with an even one).

`kill_at`: every process SIGKILLs itself right after the trainer checkpoint of that optimizer step is complete and
its health recorded (a run killed between two checkpoints, at a known place); the launch then fails.
"""
from __future__ import annotations

import os
import signal
import sys


def promote_fsdp_on_cpu() -> None:
    """Make accelerate run FSDP on CPU processes (gloo), as it does on GPUs, when an FSDP plugin is configured."""
    import accelerate.state as S
    from accelerate.utils import DistributedType

    init = S.AcceleratorState.__init__
    if getattr(init, "prift_fsdp_on_cpu", False):
        return

    def __init__(self, *args, fsdp_plugin=None, **kwargs):
        init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            # what AcceleratorState.__init__ does for a GPU-like type (mixed precision: prift asks for none on CPU)
            if self._mixed_precision != "no":
                fsdp_plugin.set_mixed_precision(self._mixed_precision)
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            S.PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    __init__.prift_fsdp_on_cpu = True
    S.AcceleratorState.__init__ = __init__


def kill_after_checkpoint(step: int) -> None:
    """SIGKILL every process once the checkpoint of `step` is complete: prift's health callback (the last thing a
    checkpoint gets, on every process, SFT and RL alike) is followed by the kill."""
    from prift import runs
    make = runs.health_callback

    def health_then_kill():
        cb = make()
        record = cb.on_save

        def on_save(args, state, control, **kwargs):
            record(args, state, control, **kwargs)
            if state.global_step == step:
                import torch.distributed as dist
                if dist.is_initialized():
                    dist.barrier()  # the main process has written the health record: nothing is half done
                os.kill(os.getpid(), signal.SIGKILL)

        cb.on_save = on_save
        return cb

    runs.health_callback = health_then_kill


def run_jobs(jobs: list[dict]) -> int:
    from prift import cli, runs
    make = runs.health_callback
    for job in jobs:
        runs.health_callback = make
        if job.get("kill_at"):
            kill_after_checkpoint(int(job["kill_at"]))
        rc = cli.main(job["argv"])
        if rc:
            return rc
    return 0


def main(argv=None) -> int:
    import json
    promote_fsdp_on_cpu()
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0], encoding="utf-8") as f:
        return run_jobs(json.load(f))


if __name__ == "__main__":
    sys.exit(main())

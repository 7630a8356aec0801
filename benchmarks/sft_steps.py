"""The SFT steps the benchmarks time, in one place: prift's WeightedSFTTrainer training a method (PriFT-prob unless
told) over pre-tokenised rows, cached statistics from `Cache`, the micro-batches in the rows' order (the same
examples in every mode), with the settings prift.sft.train gives it (mixed precision from the recipe, not the
launcher), and a clock at each optimizer step. bench_sft, bench_packing, bench_reference_pass and gpu_check call
`trainer` (bench_sft's TRL baseline takes `config` and `clock`).

The length distribution the GPU check trains on is MATH-500's (math500_lengths.json beside this file: each problem
as a chat prompt and its solution as the response, through SmolLM2's byte-level BPE tokenizer, cut at 2,048 tokens,
as bench_packing.tokenized_math500 tokenises them; tests/test_gpu_check.py checks that the file is what that gives),
so that a machine without that tokenizer (the GPU image) trains on the real lengths.
"""
from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import torch

LENGTHS = Path(__file__).resolve().with_name("math500_lengths.json")
MAX_LENGTH = 2048
BATCH = 4   # the paper's micro-batch (config/config.yaml training.default.per_device_batch_size)
METHODS = {   # the methods the benchmarks train (config/config.yaml `methods:`)
    "sft": {"rule": "sft", "source": "online"},
    "dft": {"rule": "prob", "source": "online"},
    "prift-prob": {"rule": "prob", "source": "pretrained"},
    "prift-mass": {"rule": "mass", "source": "pretrained", "params": {"tau": 0.5}},
    "asft": {"rule": "prob", "source": "online", "asft_beta": 0.05},
}


class Cache:
    """Reference statistics of the right lengths (values random: they are read and placed, as a real cache's)."""

    def __init__(self, n_resp: list[int]):
        g = torch.Generator().manual_seed(0)
        self.rows = [{"prob": torch.rand(n, generator=g), "mass": torch.rand(n, generator=g)} for n in n_resp]
        for r in self.rows:
            r["logp"] = r["prob"].log()

    def __getitem__(self, i):
        return self.rows[i]


def response_tokens(row: dict) -> int:
    """The tokens a row's loss counts: labels != -100 after the first position (the shifted targets)."""
    return sum(1 for j, lab in enumerate(row["labels"]) if lab != -100 and j > 0)


def math500_lengths() -> list[tuple[int, int]]:
    """(prompt tokens, total tokens) of each MATH-500 example, in the file's order."""
    return [tuple(x) for x in json.loads(LENGTHS.read_text())["lengths"]]


def rows_of_lengths(lengths: list[tuple[int, int]], vocab: int, n: int, seed: int = 0) -> list[dict]:
    """`n` examples of the given (prompt, total) lengths (shuffled with `seed`, repeated if n exceeds them) with
    random token ids: the prompt's labels -100, the response's its own ids."""
    order = list(lengths)
    random.Random(seed).shuffle(order)
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        prompt, total = order[i % len(order)]
        ids = torch.randint(3, vocab, (total,), generator=g).tolist()
        rows.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:], "idx": i})
    return rows


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def config(*, batch: int = BATCH, max_steps: int = -1, max_length: int = MAX_LENGTH,
           gradient_checkpointing: bool = False, device: str = "cpu"):
    """The SFTConfig of a timed run: micro-batches of `batch`, no gradient accumulation, constant learning rate,
    no checkpoints or logs; one epoch, or `max_steps`; on CUDA bf16 autocast over float32 weights, as prift.sft.train
    runs a recipe with `bf16: true`."""
    from trl import SFTConfig
    cuda = device == "cuda"
    args = SFTConfig(output_dir=f"/tmp/prift_bench_{os.getpid()}", per_device_train_batch_size=batch,
                     gradient_accumulation_steps=1, num_train_epochs=1, max_steps=max_steps, learning_rate=1e-5,
                     lr_scheduler_type="constant", bf16=cuda, use_cpu=not cuda, save_strategy="no",
                     logging_steps=10_000, report_to=[], remove_unused_columns=False,
                     dataset_kwargs={"skip_prepare_dataset": True}, max_length=max_length, dataloader_num_workers=0,
                     disable_tqdm=True, seed=0, gradient_checkpointing=gradient_checkpointing)
    args.mixed_precision = "bf16" if cuda else "no"     # as prift.sft.train: the recipe decides, not the launcher
    return args


def clock():
    """A trainer callback that records, at the end of each optimizer step (after a CUDA synchronisation), the wall
    time (`.wall`) and this process's CPU time (`.cpu`)."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self):
            self.wall: list[float] = []
            self.cpu: list[float] = []

        def on_step_end(self, args, state, control, **kw):
            sync()
            self.wall.append(time.perf_counter())
            self.cpu.append(time.process_time())
    return Clock()


def tokenizer():
    from prift.backbone import train_tokenizer
    return train_tokenizer(["the quick brown fox jumps over the lazy dog"] * 4, 300)


def trainer(model, rows: list[dict], *, packed: bool, method: str = "prift-prob", ref_model=None, fused_head="auto",
            gradient_checkpointing: bool = False, max_steps: int = -1, batch: int = BATCH,
            max_length: int = MAX_LENGTH, device: str = "cpu", callbacks=()):
    """prift's WeightedSFTTrainer training `method` (a METHODS name) over `rows` (each {input_ids, labels, idx}) in
    their order, with `config`'s settings and cached statistics where the method reads them. Returns (trainer,
    clock): the clock's `.wall` / `.cpu` fill with the times at the end of each optimizer step."""
    from datasets import Dataset
    from prift import sft
    from prift.methods import Method
    m = Method.from_config(method, METHODS[method])
    cache = Cache([response_tokens(r) for r in rows]) if m.cached else None
    collator = sft.WeightedCollator(0, cache, stat_keys=m.stats if m.cached else (), packed=packed)
    c = clock()
    args = config(batch=batch, max_steps=max_steps, max_length=max_length,
                  gradient_checkpointing=gradient_checkpointing, device=device)
    t = sft.WeightedSFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                               processing_class=tokenizer(), method=m, ref_model=ref_model, data_collator=collator,
                               fused_head=fused_head, callbacks=[c, *callbacks])
    t._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(rows)   # the same micro-batches
    return t, c


def positions(rows: list[dict], batch: int, packed: bool) -> int:
    """Positions the model computes over `rows` in micro-batches of `batch`: the tokens (packed) or each
    micro-batch's size × its longest row (padded)."""
    if packed:
        return sum(len(r["input_ids"]) for r in rows)
    return sum(len(b) * max(len(r["input_ids"]) for r in b) for b in (rows[i:i + batch]
                                                                      for i in range(0, len(rows), batch)))

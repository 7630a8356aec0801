"""The training recipes: SFT (`training.<domain>`: `Recipe`) and DAPO (`rl.recipe` + `rl.backbones.<b>`: `RLRecipe`),
as plain dataclasses checked without torch (config validation builds them before any job).
"""
from __future__ import annotations

from dataclasses import dataclass

SAVE_DTYPES = ("auto", "float32", "bfloat16", "float16")   # a final model's dtype; auto = the training dtype


def check_keys(cls, spec: dict, what: str) -> None:
    """A config section read into dataclass `cls` may only use its fields."""
    known = set(cls.__dataclass_fields__)
    unknown = set(spec) - known
    if unknown:
        raise ValueError(f"{what}: unknown keys {sorted(unknown)} (known: {sorted(known)})")


@dataclass
class Recipe:
    """Optimisation hyper-parameters of one run (config `training.<domain>`)."""
    epochs: float = 1.0
    global_batch_size: int = 256
    per_device_batch_size: int = 4
    lr: float = 5e-5
    betas: tuple = (0.9, 0.95)
    weight_decay: float = 0.01
    scheduler: str = "cosine"
    warmup_ratio: float = 0.1
    grad_clip: float = 1.0
    max_length: int = 2048
    bf16: bool = True
    save_steps: int = 100
    logging_steps: int = 10
    max_steps: int = -1
    seed: int = 42
    gradient_checkpointing: bool = False
    fused_head: bool | str = "auto" # loss from hidden states + chunked LM head (no [B, L, V] logits), the full logits,
                                     # or auto: fused on GPU, full logits on CPU while they fit (prift.losses.loss_path)
    loss_norm: str = "micro_batch"   # micro_batch (the authors' code) | global_tokens; see the module doc
    packing: bool = True             # each micro-batch as one padding-free row (prift.sft.WeightedCollator)
    max_truncated_frac: float = 0.05 # stop when more examples are cut by max_length (prift.data.check_lengths)
    max_empty_frac: float = 0.01     # stop when more examples have an empty response
    after_nan: str = "stop"          # a rerun after a non-finite-loss stop: stop | resume | restart (prift.runs)
    save_dtype: str = "auto"         # the final model's dtype: auto = the training dtype (bf16 runs: bfloat16)
    keep_checkpoints: bool = False   # keep the trainer checkpoints once the final model is published

    # recipe keys that change no trained weight: left out of the run's fingerprint (a change resumes, never retrains)
    OPERATIONAL = ("save_steps", "logging_steps", "max_truncated_frac", "max_empty_frac", "after_nan",
                   "keep_checkpoints")

    @classmethod
    def from_config(cls, spec: dict) -> "Recipe":
        check_keys(cls, spec, "training recipe")
        r = cls(**spec)
        r.betas = tuple(r.betas)
        if r.loss_norm not in ("micro_batch", "global_tokens"):
            raise ValueError(f"training recipe: loss_norm must be 'micro_batch' or 'global_tokens', not "
                             f"{r.loss_norm!r}")
        if r.fused_head not in ("auto", True, False):
            raise ValueError(f"training recipe: fused_head must be auto, true or false, not {r.fused_head!r}")
        if r.save_dtype not in SAVE_DTYPES:
            raise ValueError(f"training recipe: save_dtype must be one of {SAVE_DTYPES}, not {r.save_dtype!r}")
        if r.after_nan not in ("stop", "resume", "restart"):
            raise ValueError(f"training recipe: after_nan must be 'stop', 'resume' or 'restart', not {r.after_nan!r}")
        return r

    def weights_part(self) -> dict:
        """The recipe's keys that decide the weights (its part of the run fingerprint)."""
        return {k: v for k, v in self.__dict__.items() if k not in self.OPERATIONAL} | {"betas": list(self.betas)}


def grad_accum_steps(global_batch: int, per_device: int, world_size: int) -> int:
    """Gradient accumulation that keeps the global batch exact for any GPU count."""
    denom = per_device * world_size
    if global_batch % denom:
        raise ValueError(f"global_batch_size={global_batch} is not a multiple of per_device_batch_size={per_device} "
                         f"× {world_size} processes; change per_device_batch_size")
    return global_batch // denom


@dataclass
class RLRecipe:
    """DAPO hyper-parameters of one RL run (config ``rl.recipe``, per-backbone overrides in ``rl.backbones``).
    Defaults are App. E's recipe; `steps`, `warmup_steps` and `save_steps` count RL steps (one generation batch)."""
    steps: int = 100                    # RL steps
    prompt_batch_size: int = 128        # prompts per RL step (= verl's train and generation prompt batch)
    mini_batch_size: int = 32           # prompts per PPO mini-batch = one optimizer update
    ppo_epochs: int = 1
    rollouts_per_prompt: int = 32       # n: 32 for Qwen2.5-Math-1.5B, 16 for Qwen3-8B-Base (per-backbone override)
    lr: float = 1.0e-6
    warmup_steps: int = 10              # RL steps of linear warm-up, then constant (verl's constant schedule)
    weight_decay: float = 0.1
    betas: tuple = (0.9, 0.999)         # verl's AdamW defaults
    grad_clip: float = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    kl_coef: float = 0.01               # actor KL loss coefficient (TRL's beta; k3 estimator, as verl's low_var_kl)
    loss_type: str = "dapo"             # token-level policy loss
    epsilon: float = 0.2                # clip-higher: ratio clipped to [1 − 0.2, 1 + 0.28]
    epsilon_high: float = 0.28
    # Lengths. DAPO's own recipe uses 2048 prompt + 20480 response tokens with a 4096-token overlong buffer
    # (buffer = 1/5 of the response budget). Qwen2.5-Math-1.5B has 4096 positions, so prompt + response must fit in
    # 4096: dapo-math-17k problems are short competition statements, so 1024 prompt tokens (template included) cover
    # nearly all of them (longer prompts are dropped and counted in prift_run.json, as verl's
    # filter_overlong_prompts does), which leaves 3072 for the response. The buffer keeps DAPO's
    # 1/5 proportion rounded to 512 tokens: responses longer than 2560 tokens are penalised linearly to −1 at 3072.
    # The same lengths serve Qwen3-8B-Base (32k positions), so that both backbones see one RL configuration.
    max_prompt_length: int = 1024
    max_response_length: int = 3072
    overlong_buffer: int = 512          # DAPO's soft overlong punishment: buffer length L_cache ...
    overlong_penalty: float = 1.0       # ... and penalty factor (DAPO: 4096 / 1.0 for 20480-token responses)
    mask_truncated_completions: bool = False  # DAPO's "overlong filtering" (off: the soft punishment is used instead)
    require_boxed: bool = True          # App. E: "+1 to correct boxed answers"; an unboxed answer scores −1
    template: str = "qwen-boxed"        # the evaluation's prompt template
    dynamic_sampling: bool = True       # DAPO's group filter + refill
    filter_metric: str = "acc"          # filter on the verdict (DAPO's recipe) or on the total "reward"
    max_gen_rounds: int = 10            # generation rounds per RL step (verl: max_num_gen_batches)
    on_exhausted: str = "error"         # rounds used up, batch short: error (verl 0.4) | mask (zero-loss filler groups)
    importance_sampling_correction: bool = False  # TRL's vLLM-vs-trainer correction; verl 0.4 has none
    micro_batch_size: int = 8           # sequences per forward/backward per process (memory knob, not a recipe value)
    use_vllm: bool | str = "auto"       # auto: vLLM (colocated) when CUDA and vllm are available
    vllm_gpu_memory_utilization: float = 0.3
    vllm_enable_sleep_mode: bool = False
    bf16: bool = True                   # mixed precision on GPU (fp32 master weights); ignored on CPU
    dtype: str = "float32"              # dtype of the trained weights
    gradient_checkpointing: bool = True
    cpu_threads: int | None = None      # CPU only: torch intra-op threads (1 is ~10x faster for the tiny demo model on
                                        # a shared 2-core machine); None leaves torch's default
    save_steps: int = 10                # RL steps between checkpoints
    save_total_limit: int = 2
    save_dtype: str = "auto"            # the final model's dtype: auto = bfloat16 for a bf16 run on GPU, else float32
    keep_checkpoints: bool = False      # keep the trainer checkpoints once the final model is published
    seed: int = 42

    @classmethod
    def from_config(cls, spec: dict, overrides: dict | None = None) -> "RLRecipe":
        merged = {**(spec or {}), **(overrides or {})}
        check_keys(cls, merged, "rl recipe")
        r = cls(**merged)
        r.betas = tuple(r.betas)
        r.validate()
        return r

    def validate(self, world_size: int = 1) -> None:
        if self.prompt_batch_size % self.mini_batch_size:
            raise ValueError(f"prompt_batch_size={self.prompt_batch_size} is not a multiple of "
                             f"mini_batch_size={self.mini_batch_size}")
        if self.rollouts_per_prompt < 2:
            raise ValueError("rollouts_per_prompt must be >= 2 (GRPO advantages need a group)")
        seqs = self.mini_batch_size * self.rollouts_per_prompt
        if seqs % (self.micro_batch_size * world_size):
            raise ValueError(f"a mini-batch of {self.mini_batch_size} prompts × {self.rollouts_per_prompt} rollouts = "
                             f"{seqs} sequences is not a multiple of micro_batch_size={self.micro_batch_size} × "
                             f"{world_size} processes; change micro_batch_size")
        if self.dynamic_sampling and self.prompt_batch_size % world_size:
            raise ValueError(f"dynamic sampling keeps whole prompt groups on each process: prompt_batch_size="
                             f"{self.prompt_batch_size} must be a multiple of the {world_size} processes")
        if self.save_dtype not in SAVE_DTYPES:
            raise ValueError(f"save_dtype must be one of {SAVE_DTYPES}, not {self.save_dtype!r}")
        if self.on_exhausted not in ("error", "mask"):
            raise ValueError(f"on_exhausted must be 'error' (verl) or 'mask', not {self.on_exhausted!r}")
        if self.filter_metric not in ("acc", "reward"):
            raise ValueError(f"filter_metric must be 'acc' or 'reward', not {self.filter_metric!r}")
        if not 0 <= self.overlong_buffer < self.max_response_length:
            raise ValueError("overlong_buffer must be in [0, max_response_length)")
        if self.loss_type != "dapo":
            raise ValueError(f"loss_type {self.loss_type!r}: this stage implements DAPO (loss_type 'dapo')")

    @property
    def updates_per_rl_step(self) -> int:
        return self.prompt_batch_size // self.mini_batch_size * self.ppo_epochs

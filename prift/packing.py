"""Attention for padding-free packed rows without flash-attention: each sequence of a packed row attends to itself
alone, at the cost of its own length.

A packed row [1, T] holds several sequences one after another, with position ids restarting at 0 at each
(`sft.WeightedCollator(packed=True)`, `scoring.reference_stats(packed=True)`). flash-attention's variable-length
path attends within each sequence; transformers' sdpa and eager paths attend through a [T, T] block-diagonal causal
mask, which costs T² (a micro-batch of 4 sequences of length L: 16 L² instead of the padded batch's 4 L²) and gives
back, on CPU, what packing saves in the linear layers (benchmarks/results/packing.md). `varlen_sdpa` is
transformers' sdpa attention with that variable-length path: the packed row's sequences (read from the position
ids the model passes its attention layers) each go through `scaled_dot_product_attention(is_causal=True)`; a row
that is not packed goes to transformers' own sdpa function unchanged. Registered under ATTENTION in transformers'
attention and mask interfaces; `use_varlen_sdpa(model)` switches an sdpa model to it.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

ATTENTION = "prift_varlen_sdpa"


def segments(position_ids: torch.Tensor) -> list[tuple[int, int]] | None:
    """[(start, end)] of the sequences of a packed row ([1, T] position ids restarting at 0), or None when the row
    holds a single sequence or the ids are not a packed layout (several rows, positions not restarting at 0)."""
    if position_ids is None or position_ids.dim() != 2 or position_ids.shape[0] != 1:
        return None
    pos = position_ids[0]
    starts = (pos == 0).nonzero().flatten().tolist()
    if len(starts) < 2 or starts[0] != 0:
        return None
    ends = starts[1:] + [pos.numel()]
    return list(zip(starts, ends))


def varlen_sdpa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
                is_causal: bool | None = None, **kwargs):
    """transformers' attention-function signature: query [1, H, T, d], key / value [1, H_kv, T, d] → ([1, T, H, d],
    None). Packed rows (position ids restarting): causal attention per sequence; anything else: transformers' sdpa."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    segs = segments(kwargs.get("position_ids"))
    if (segs is None or query.shape[2] != key.shape[2] or kwargs.get("sliding_window") is not None
            or is_causal is False or not getattr(module, "is_causal", True)):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    gqa = query.shape[1] != key.shape[1]
    out = [F.scaled_dot_product_attention(query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], dropout_p=dropout,
                                          is_causal=True, scale=scaling, enable_gqa=gqa) for s, e in segs]
    return torch.cat(out, dim=2).transpose(1, 2).contiguous(), None


def register() -> None:
    """Register `varlen_sdpa` with transformers (idempotent): the attention function and, for the mask, sdpa's own
    (a row that is not packed gets exactly sdpa's mask and attention)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
    AttentionInterface.register(ATTENTION, varlen_sdpa)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)


def use_varlen_sdpa(model) -> bool:
    """Switch a model whose attention is sdpa to `varlen_sdpa` (in place; returns whether it did). Models on
    flash-attention keep it (its own variable-length path), eager ones stay eager (what they need eager for, e.g.
    soft-capping, sdpa lacks)."""
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "_attn_implementation", None) != "sdpa":
        return False
    register()
    model.set_attn_implementation(ATTENTION)
    return True


@contextlib.contextmanager
def varlen_sdpa_during(model, on: bool = True):
    """`use_varlen_sdpa` for the duration of a block (when `on`): a model switched from sdpa is sdpa again after."""
    switched = on and use_varlen_sdpa(model)
    try:
        yield
    finally:
        if switched:
            model.set_attn_implementation("sdpa")

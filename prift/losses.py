"""The per-token weighted loss of a method, in two implementations of the same numbers (prift.sft trains with it).

  `method_loss`         from the full logits [B, L, V] (the reference implementation, used for models whose LM head
                        the fused path does not cover: logit soft-capping or scaling);
  `method_loss_hidden`  from the last hidden states and the LM head, never materialising [B, L, V]: log p_t (with its
                        gradient, and H_t when a rule needs it) through TRL's chunked log-prob kernel, the other online
                        statistics through `token_stats_chunked`, ASFT's KL and KD's non-target term in checkpointed
                        position chunks. It runs inside the model's forward (`add_prift_head`), so that DDP and FSDP
                        see an ordinary forward.
`loss_path` chooses between them per device and vocabulary (recipe `fused_head`).

Loss: Σ_t m_t · CE_t · mask_t / N, weights not renormalised (the normaliser N: prift.sft's module docstring).
"""
from __future__ import annotations

import functools
import types

import torch
import torch.nn.functional as F

from prift import weighting as W
from prift.methods import Method

# Online statistics that come out of the chunked log-prob kernel itself (no extra pass over the vocabulary).
KERNEL_STATS = {"logp", "prob", "entropy"}



def method_weights(method: Method, stats: dict, mask: torch.Tensor,
                   seq_lens: torch.Tensor | None = None) -> torch.Tensor:
    """m_t of the method's rule for statistics {key: [B, L-1]} and the response mask [B, L-1] of one micro-batch
    (the batch a batch-level rule - quantile, TALR's adaptive τ - is computed over). No grad, 0 off the mask.
    A packed micro-batch ([1, T-1], `seq_lens` [B]) is laid out as rows [B, max len - 1] for the rule, so that a
    sequence-level rule (TALR's per-sequence median) sees its sequences; the tokens keep their order."""
    if not stats:  # a rule that reads no statistics (sft) on a cached source: no columns were attached
        stats = {"prob": torch.ones(mask.shape, device=mask.device)}
    if seq_lens is None:
        return W.token_weights(method.rule, stats, mask=mask, **method.params)
    row, col = _packed_cells(seq_lens.to(mask.device))   # [T-1] each; -1 where a position predicts no token
    keep = row >= 0
    grid = (len(seq_lens), int(seq_lens.max()) - 1)
    gmask = torch.zeros(grid, dtype=torch.bool, device=mask.device)
    gmask[row[keep], col[keep]] = mask[0, keep]
    gstats = {}
    for k, v in stats.items():
        g = torch.zeros(grid, dtype=v.dtype, device=v.device)
        g[row[keep], col[keep]] = v[0, keep]
        gstats[k] = g
    w = W.token_weights(method.rule, gstats, mask=gmask, **method.params)   # [B, max len - 1]
    out = torch.zeros(mask.shape, dtype=w.dtype, device=w.device)
    out[0, keep] = w[row[keep], col[keep]]
    return out


def _packed_cells(seq_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each position p of a packed row's targets (p predicts token p + 1), its (sequence, position in the
    sequence's own targets), or (-1, -1) where p + 1 starts a sequence (no target)."""
    T = int(seq_lens.sum())
    starts = torch.cumsum(seq_lens, 0) - seq_lens                     # [B]
    seq = torch.repeat_interleave(torch.arange(len(seq_lens), device=seq_lens.device), seq_lens)  # [T] token → seq
    target = torch.arange(1, T, device=seq_lens.device)               # [T-1] the token each position predicts
    row = seq[target]
    col = target - starts[row] - 1
    first = col < 0                                                   # p + 1 is a sequence's first token
    return torch.where(first, -1, row), torch.where(first, -1, col)


def _combine(method: Method, logp: torch.Tensor, mask: torch.Tensor, num_tokens, weights: torch.Tensor,
             kl: torch.Tensor | None = None, nontarget: torch.Tensor | None = None):
    """Σ m_t·CE_t/N (+ β·ΣKL/N for ASFT, + β·Σ non-target CE/N for KD) and the diagnostics' sums.

    logp [...] online log p_t with grad; mask [...] bool; weights [...] m_t (method_weights); kl / nontarget [...]
    per-token extras (with grad). Sums (not means) are returned so that they add up over micro-batches and ranks."""
    loss = W.weighted_nll(logp, weights, mask, num_tokens)
    diag = {"weight_sum": weights.sum().detach(), "selected": ((weights > 0) & mask).sum().detach(),
            "resp_tokens": mask.sum().detach()}
    if kl is not None:
        kl_sum = torch.where(mask, kl, 0.0).sum()
        loss = loss + method.asft_beta * kl_sum / num_tokens
        diag["kl_sum"] = kl_sum.detach()
    if nontarget is not None:
        loss = loss + method.kd_beta * torch.where(mask, nontarget, 0.0).sum() / num_tokens
    return loss, diag


def diag_means(diag: dict) -> dict:
    n = max(float(diag["resp_tokens"]), 1.0)
    out = {"weight_mean": float(diag["weight_sum"]) / n, "selected_frac": float(diag["selected"]) / n}
    if "kl_sum" in diag:
        out["kl_ref"] = float(diag["kl_sum"]) / n
    return out


def method_loss(method: Method, logits: torch.Tensor, labels: torch.Tensor, num_tokens, ref: dict | None = None,
                ref_logits: torch.Tensor | None = None, ema_logits: torch.Tensor | None = None,
                seq_lens: torch.Tensor | None = None):
    """Loss of one micro-batch from the full logits, and its diagnostics (sums, see `_combine`; the means are under
    `weight_mean`, `selected_frac`, `kl_ref`).

    logits [B, L, V] of the online model, labels [B, L] (-100 off the response); ref: cached statistics aligned with
    labels ([B, L] each, keys `ref_<stat>`); ref_logits / ema_logits: [B, L, V] of a frozen model, when the method
    needs them. num_tokens: response tokens of the whole (global, accumulated) batch.
    """
    logits = logits[:, :-1]                                   # [B, L-1, V] position t predicts token t+1
    targets = labels[:, 1:]                                   # [B, L-1]
    mask = targets != -100
    safe_t = targets.clamp(min=0)
    logp = -F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), safe_t.reshape(-1),
                            reduction="none").view_as(targets)  # [B, L-1] online log p_t (with grad)
    if method.source == "online":
        if set(method.stats) <= {"logp", "prob"}:
            lp = logp.detach()
            stats = {"logp": lp, "prob": lp.exp()}
        else:
            stats = W.token_stats(logits.detach(), safe_t)
    elif method.source == "ema":
        stats = W.token_stats(ema_logits[:, :-1], safe_t)
    else:
        stats = {k[4:]: v[:, 1:] for k, v in (ref or {}).items()}
    kl = W.asft_kl(logits, ref_logits[:, :-1], mask) if method.asft_beta > 0 else None
    nt = W.kd_nontarget(logits, ref_logits[:, :-1], safe_t) if method.kd_beta else None
    loss, diag = _combine(method, logp, mask, num_tokens, method_weights(method, stats, mask, seq_lens), kl, nt)
    return loss, {**diag, **diag_means(diag)}


# -- the same loss from hidden states (no [B, L, V] logits)

def _rows_per_chunk(vocab: int) -> int:
    """Positions per chunk for full-vocabulary work: ~2^24 float32 logits (64 MiB) per [rows, V] temporary, about
    what one tile of TRL's chunked log-prob kernel holds, so that ASFT's KL adds no more peak memory than the
    log-prob itself (110 positions for V = 151,936)."""
    return max(1, (1 << 24) // vocab)


def chunked_logp(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
                 entropy: bool = False):
    """log p_t of `targets` [N] under softmax(hidden [N, D] @ weight.T + bias), with gradient, through TRL's chunked
    kernel (the one TRL's SFTTrainer uses); and H_t [N] when `entropy`. Returns (logp, entropy or None)."""
    from trl.kernels import ChunkedLogProbFunction
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE
    if hidden.shape[0] == 0:  # keep the graph connected: a micro-batch without response tokens adds 0
        z = hidden.sum() * 0.0 + weight.sum() * 0.0
        return z.expand(0).float(), (z.expand(0).float() if entropy else None)
    lp, ent, *_ = ChunkedLogProbFunction.apply(hidden, weight, bias, targets, 1.0, _CHUNKED_LOGPROB_CHUNK_SIZE, None,
                                               1.0, ("entropy",) if entropy else ())
    return lp, (ent.detach() if ent is not None else None)


def source_stats(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
                 keys) -> dict:
    """Statistics `keys` of softmax(hidden @ weight.T + bias) at `targets` [N], no grad, in chunks: the kernel when
    the keys are among log p / p / H, else `token_stats_chunked` (all statistics, ~5 [rows, V] temporaries)."""
    with torch.no_grad():
        keys = set(keys)
        if not keys:
            return {}
        if keys <= KERNEL_STATS:
            lp, ent = chunked_logp(hidden.detach(), weight.detach(), None if bias is None else bias.detach(),
                                   targets, entropy="entropy" in keys)
            out = {"logp": lp, "prob": lp.exp()}
            if ent is not None:
                out["entropy"] = ent
            return out
        return W.token_stats_chunked(hidden, weight, targets, chunk_size=_rows_per_chunk(weight.shape[0]),
                                     lm_head_bias=bias)


def _divergence_chunk(h, w, b, rh, rw, rb, t, kind: str):
    z = F.linear(h, w, b)                                    # [C, V] online logits (with grad)
    with torch.no_grad():
        zr = F.linear(rh, rw, rb)                            # [C, V] reference logits
    return W.asft_kl(z, zr) if kind == "kl" else W.kd_nontarget(z, zr, t)


def forward_kl(hidden, weight, bias, ref_hidden, ref_weight, ref_bias, targets) -> torch.Tensor:
    """Per-token KL(π_ref ‖ π_θ) [N] (ASFT) from both models' hidden states: TRL's chunked divergence kernel
    (`ChunkedDivergenceFunction`, forward KL at beta 0) when the two output layers have the same rows, else
    prift's own `chunked_divergence` on the rows they share (TRL's kernel needs one vocabulary)."""
    if ref_weight.shape[0] != weight.shape[0]:
        return chunked_divergence("kl", hidden, weight, bias, ref_hidden, ref_weight, ref_bias, targets)
    if hidden.shape[0] == 0:
        return hidden.new_zeros(0, dtype=torch.float32) + hidden.sum() * 0.0
    from trl.kernels.chunked_divergence import ChunkedDivergenceFunction
    kl, _ = ChunkedDivergenceFunction.apply(hidden, weight, bias, ref_hidden.detach(), ref_weight.detach(),
                                            None if ref_bias is None else ref_bias.detach(), 0.0)
    return kl


def chunked_divergence(kind: str, hidden, weight, bias, ref_hidden, ref_weight, ref_bias, targets) -> torch.Tensor:
    """Per-token KL(π_ref ‖ π_θ) (kind "kl", ASFT) or −Σ_{v≠y} q(v) log p(v) (kind "kd", App. D.1) [N] for hidden [N, D]
    (with grad) and ref_hidden [N, D'], position chunks under activation checkpointing: only one chunk's [rows, V]
    temporaries live at a time, forward or backward (the backward recomputes the chunk's two LM-head products)."""
    from torch.utils.checkpoint import checkpoint
    rows = _rows_per_chunk(weight.shape[0])
    out = [checkpoint(_divergence_chunk, hidden[i:i + rows], weight, bias, ref_hidden[i:i + rows].detach(),
                      ref_weight.detach(), None if ref_bias is None else ref_bias.detach(), targets[i:i + rows], kind,
                      use_reentrant=False)
           for i in range(0, hidden.shape[0], rows)]
    return torch.cat(out) if out else hidden.new_zeros(0, dtype=torch.float32)


def method_loss_hidden(method: Method, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                       labels: torch.Tensor, num_tokens, ref: dict | None = None,
                       ref_hidden: torch.Tensor | None = None, ref_head: tuple = (None, None),
                       ema_hidden: torch.Tensor | None = None, ema_head: tuple = (None, None),
                       seq_lens: torch.Tensor | None = None):
    """`method_loss` from the last hidden states [B, L, D] and the LM head (weight [V, D], bias [V] or None) of the
    online model; ref_hidden / ema_hidden and ref_head / ema_head (weight, bias) of the frozen reference / EMA model.
    Only the response positions are projected, in chunks; equal to `method_loss` on the same model up to float
    summation order."""
    targets = labels[:, 1:]                                   # [B, L-1]
    mask = targets != -100
    h = hidden[:, :-1][mask]                                  # [n, D] response positions only, row-major order
    t = targets[mask]                                         # [n]
    need = set(method.stats)
    online = method.source == "online"
    logp, ent = chunked_logp(h, weight, bias, t, entropy=online and "entropy" in need)  # [n] with grad
    if online:
        stats = {"logp": logp.detach(), "prob": logp.detach().exp()}
        if ent is not None:
            stats["entropy"] = ent
        if need - KERNEL_STATS:
            stats = source_stats(h, weight, bias, t, need)
    elif method.source == "ema":
        stats = source_stats(ema_hidden[:, :-1][mask], *ema_head, t, need)
    else:
        stats = {k[4:]: v[:, 1:][mask] for k, v in (ref or {}).items()}
    kl = nt = None
    if method.needs_ref_logits:
        rh = ref_hidden[:, :-1][mask]
        if method.asft_beta > 0:
            kl = forward_kl(h, weight, bias, rh, *ref_head, t)
        if method.kd_beta:
            nt = chunked_divergence("kd", h, weight, bias, rh, *ref_head, t)
    # The rule sees the micro-batch as [B, L-1] with its mask, as in `method_loss` (batch- and sequence-level rules:
    # quantile, TALR's adaptive τ); its weights are then gathered back to the response positions.
    full = {k: torch.zeros(mask.shape, dtype=v.dtype, device=v.device).masked_scatter(mask, v)
            for k, v in stats.items()}
    weights = method_weights(method, full, mask, seq_lens)[mask]   # [n]
    m = torch.ones_like(t, dtype=torch.bool)                  # every gathered position is a response token
    return _combine(method, logp, m, num_tokens, weights, kl, nt)


def fused_head_supported(model) -> bool:
    """Whether `method_loss_hidden` reproduces the model's own logits: a plain linear LM head (no soft-capping,
    no logit scaling) and TRL's chunked kernel available."""
    try:
        import trl.kernels  # noqa: F401
    except ImportError:
        return False
    cfg = model.config.get_text_config()
    for key in ("final_logit_softcapping", "logits_scaling", "output_multiplier", "lm_head_multiplier"):
        if getattr(cfg, key, None) is not None:
            return False
    if getattr(cfg, "logit_scale", None) not in (None, 1, 1.0):
        return False
    return model.get_output_embeddings() is not None and hasattr(model, "base_model")


FULL_LOGITS_BUDGET = 4 * 2**30   # bytes of [B, L, V] float32 logits the full-logits path may take on CPU (x3 in use)


def loss_path(setting: bool | str, model, *, device: str, tokens: int) -> bool:
    """Whether a run takes the fused head (True) or the full logits (False). `auto` chooses by device and size: on a
    GPU the fused head (no [B, L, V] logits: the paper's 2,048-token micro-batches of 151,936-way logits would take
    ~10 GB each); on CPU the full logits, faster there (benchmarks/results/sft_step.md, packing.md), while the
    largest micro-batch's logits (`tokens` positions × V float32, with their log-softmax and gradient) fit in
    FULL_LOGITS_BUDGET. Models whose LM head the fused path cannot reproduce always take the full logits."""
    if not fused_head_supported(model):
        return False
    if setting != "auto":
        return bool(setting)
    if device != "cpu":
        return True
    vocab = model.get_output_embeddings().weight.shape[0]
    return 3 * tokens * vocab * 4 > FULL_LOGITS_BUDGET


def add_prift_head(model) -> None:
    """Add a `prift_head` argument to `model.forward`: `model(input_ids=…, attention_mask=…, prift_head=fn)` runs the
    backbone and returns fn(last_hidden_state, lm_head.weight, lm_head.bias), inside the forward so that DDP's and
    FSDP's hooks (gradient sync, parameter unsharding) apply. Without it the forward is unchanged (generation, TRL).

    TRL's `add_fused_lm_head` is the same hook for a loss made of the labels' log-probabilities (and entropies); a
    weighted loss also needs the hidden states themselves - the weights of a cached source per position, the online
    mass / rank / top-K entropy over the vocabulary, the reference's hidden states for ASFT and KD - so prift keeps
    its own hook and calls TRL's kernels inside it (`ChunkedLogProbFunction`, `ChunkedDivergenceFunction`)."""
    inner = model.forward

    @functools.wraps(type(model).forward)
    def forward(self, *args, prift_head=None, **kwargs):
        if prift_head is None:
            return inner(*args, **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state  # [B, L, D]
        head = self.get_output_embeddings()
        weight, bias = head.weight, head.bias
        try:  # FSDP2 exposes sharded parameters as DTensors (as TRL's fused head does)
            from torch.distributed.tensor import DTensor
            if isinstance(weight, DTensor):
                weight = weight.full_tensor()
                bias = bias.full_tensor() if bias is not None else None
        except ImportError:
            pass
        return prift_head(hidden.to(weight.device), weight, bias)

    model.forward = types.MethodType(forward, model)

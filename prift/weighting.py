"""Token statistics, weighting rules and loss extras for weighted SFT (pure tensors, no I/O).

A token-reweighting method is a weighting RULE applied to per-token STATISTICS of some source distribution
(the online model, a frozen pretrained reference, an EMA of the online model, a stronger teacher ...). The
weighted objective is Eq. (1) of the paper,

    L(theta) = - sum_t m_t log pi_theta(y_t | x, y_<t),    m_t = rule(stats(source), ...) >= 0,

with m_t detached. This module holds the statistics (`token_stats`, `token_stats_chunked`), the application of a rule of
`prift.rules` to them (`token_weights`), the loss extras that need full-vocabulary distributions
(`asft_kl`, App. B; `kd_nontarget`, App. D.1), the normalised loss (`weighted_nll`) and the EMA update of the
EMA source (`ema_update`, App. D.1 / Fig. 6a). It imports no prift module but prift.rules.

Conventions: statistics are computed in float32 whatever the logits dtype, under no_grad; every statistic has
the shape of `targets`; targets equal to the ignore index (-100, or anything negative) are clamped to 0 for
gathering and the caller masks them out.
"""
import math
from typing import Iterable

import torch
import torch.nn.functional as F

from prift import rules as R
from prift.rules import STAT_KEYS

IGNORE_INDEX = -100
DEFAULT_TOPK = 20  # K of EAFT's top-K entropy (App. B: "we set K = 20")
_FMIN = torch.finfo(torch.float32).min  # stands in for -inf logits so that 0 * z stays 0

# -----------------------------------------------------------------------------
# token statistics


def _softmax_into(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """softmax(x, -1) written into the preallocated `out` (one fused max / exp-sum / scale kernel; on CPU a fresh
    [N, V] result would cost more in page faults than the arithmetic)."""
    try:
        return torch.ops.aten._softmax.out(x, -1, False, out=out)
    except (AttributeError, RuntimeError, NotImplementedError):  # no out= variant in this build
        return out.copy_(torch.softmax(x, -1))


def _row_stats(x: torch.Tensor, t: torch.Tensor, topk: int, work: torch.Tensor | None = None,
               flags: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """All statistics for float32 logits x [N, V] and clamped targets t [N] (long).

    x is OVERWRITTEN (it becomes the max-shifted logits z, then p * z); `work` and `flags` are optional float32
    [>= N, V] scratch buffers that token_stats_chunked reuses across chunks. On CPU a fresh [N, V] allocation costs
    more than the arithmetic on it, so every full-vocabulary step is one in-place or out= pass: softmax, compare,
    sum, multiply-sum, top-K, sum, shift, multiply-sum.
    """
    N, V = x.shape
    p = torch.empty_like(x) if work is None else work[:N]  # [N, V] p(v)
    le = torch.empty_like(x) if flags is None else flags[:N]  # [N, V] 1.0 where p(v) <= p(y_t), else 0.0
    xt = x.gather(-1, t[:, None])  # [N, 1] target logit
    _softmax_into(x, p)
    # comparisons on the raw logits are exact and equivalent to comparing probabilities (softmax is monotone)
    torch.le(x, xt, out=le)
    rank = V - le.sum(-1)  # [N] tokens strictly more likely than the target; ties rank the target first
    mass = le.mul_(p).sum(-1)  # [N] sum_{v: p(v) <= p(y_t)} p(v), ties with the target included (u_t * s)
    top, am = _topk(x, max(1, min(topk, V)))  # [N, K] largest logits, decreasing; [N] index of one row maximum
    mx = top[:, :1]  # [N, 1] row max
    top = (top - mx).clamp_(min=_FMIN)  # [N, K] the K largest shifted logits, max exactly 0, no -inf
    zt = (xt - mx).clamp_(min=_FMIN).squeeze(-1)  # [N]
    z = x.sub_(mx)  # [N, V] <= 0, row max exactly 0 (-inf logits stay -inf)
    # The softmax kernel's own normaliser is a plain float32 running sum (relative error up to ~2e-5 over 151,936
    # entries), so the sums here renormalise by s = sum_v p_v (cascade summation): p_v / s is then exact to
    # float32 rounding. q sums every entry but one row maximum (tied maxima count in q), so that
    # lse = log sum_v exp(z_v) = log1p(q / p_max) keeps log p of a near-certain token precise.
    pmax = p.gather(-1, am[:, None]).squeeze(-1)  # [N]
    q = p.scatter_(-1, am[:, None], 0.0).sum(-1)  # [N]
    s = q + pmax  # [N]
    lse = torch.log1p(q / pmax)  # [N]
    pz = z.mul_(p).nansum(-1) / s  # [N] sum_v p_v z_v <= 0 (the max's term is 0 anyway); nansum: 0 * -inf terms
    return _finish(rank, mass / s, lse, pz, zt, top, topk)


def _vocab_passes(x: torch.Tensor, t: torch.Tensor):
    """The passes over V of _row_stats, written out of place for torch.compile (which fuses them into a few loops:
    C++/OpenMP on CPU, Triton on GPU). x [N, V] float32 is not modified. Returns rank, mass, lse, pz, zt (all [N])
    and the shifted logits z [N, V], as _finish takes them."""
    V = x.shape[-1]
    xt = x.gather(-1, t[:, None])  # [N, 1]
    le = (x <= xt).float()  # [N, V]
    mx = x.amax(-1, keepdim=True)  # [N, 1]
    z = (x - mx).clamp(min=_FMIN)  # [N, V]
    e = z.exp()  # [N, V]
    below = (z != 0).float()  # [N, V]
    rest = (below * e).sum(-1) + ((V - below.sum(-1)) - 1.0)  # [N] sum of e off one row maximum (precision)
    s = 1.0 + rest  # [N]
    return (V - le.sum(-1), (le * e).sum(-1) / s, torch.log1p(rest), (e * z).sum(-1) / s,
            (xt - mx).clamp(min=_FMIN).squeeze(-1), z)


def _finish(rank, mass, lse, pz, zt, top, topk: int) -> dict[str, torch.Tensor]:
    """The statistics from per-row results of the passes over V (all [N]): rank, u_t before the top-rank fix,
    lse = log sum_v exp(z_v), pz = sum_v p_v z_v, the target's shifted logit zt; and top [N, K], the row's K largest
    shifted logits in decreasing order."""
    logp = zt - lse  # [N]
    mass = torch.where(zt == 0, 1.0, mass.clamp(0.0, 1.0))  # a top-ranked target has u_t = 1 exactly
    # H = lse - sum_v p_v z_v: two non-negative terms (z <= 0) that never cancel
    ent = (lse - pz).clamp_min(0.0)  # [N]
    # EAFT: entropy of the top-K renormalised distribution / log K, K capped at V
    k = min(topk, top.shape[-1])
    ent_topk = _entropy(top[:, :k]) / math.log(k) if k > 1 else torch.zeros_like(logp)  # [N]
    return {"logp": logp, "prob": logp.exp(), "entropy": ent, "entropy_topk": ent_topk, "mass": mass, "rank": rank}


_COMPILED = {}


def _compiled_vocab_passes():
    """torch.compile(_vocab_passes), built once per process (the first call compiles: ~1 min on CPU)."""
    if "fn" not in _COMPILED:
        _COMPILED["fn"] = torch.compile(_vocab_passes, dynamic=False)
    return _COMPILED["fn"]


def _topk(z: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest values of each row of z [N, V], in decreasing order, and the index of one row maximum, without
    a top-k over all V entries.

    The row is cut into blocks of B; the k largest values all lie in the k blocks with the largest maxima (a value
    outside them is <= its own block's maximum <= each of those k maxima), so a top-k over the block maxima and then
    over those k * B candidates gives exactly the row's top-k values. Falls back to a plain top-k when V is not a
    multiple of a block size or is small.
    """
    N, V = z.shape
    B = next((b for b in (64, 32, 16) if V % b == 0 and V // b >= 8 * k), None)
    if B is None:
        vals, idx = z.topk(k, dim=-1)
        return vals, idx[:, 0]
    blocks = z.view(N, V // B, B)  # [N, V/B, B]
    top_blocks = blocks.amax(-1).topk(k, dim=-1).indices  # [N, k]
    cand = blocks.gather(1, top_blocks[:, :, None].expand(N, k, B)).reshape(N, k * B)  # [N, k*B]
    vals, idx = cand.topk(k, dim=-1)  # [N, k]
    first = idx[:, 0]  # [N] position of the maximum among the candidates
    argmax = top_blocks.gather(1, (first // B)[:, None]).squeeze(1) * B + first % B  # [N]
    return vals, argmax


def _entropy(z: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of softmax(z) for rows z [N, K] sorted in decreasing order with z[:, 0] = 0 (top-K output).
    log s = log1p(s - 1) with the leading 1 left out of the float sum, for precision on sharp rows."""
    e = z.exp()  # [N, K]
    rest = e[:, 1:].sum(-1)  # [N] = s - 1
    lse = torch.log1p(rest)  # [N]
    return (lse - (e * z).sum(-1) / (1.0 + rest)).clamp_min(0.0)


def token_stats(logits: torch.Tensor, targets: torch.Tensor, topk: int = DEFAULT_TOPK) -> dict[str, torch.Tensor]:
    """Per-token statistics of the distribution softmax(logits) at the target tokens.

    logits [..., V] (any float dtype; upcast to float32), targets [...] (long; negatives = ignore, clamped to 0).
    Returns {key: float32 tensor shaped like targets} for key in STAT_KEYS:
      logp          log p_t, p_t = pi(y_t | x, y_<t)                         (DFT / PriFT-prob, Eq. 2)
      prob          p_t
      entropy       H_t = -sum_v p(v) log p(v) over the full vocabulary, nats (Sec. 2)
      entropy_topk  H_t^{top-K} / log K of the top-K renormalised distribution (EAFT, App. B; K = min(topk, V))
      mass          u_t = sum_{v: p(v) <= p(y_t)} p(v), ties with the target included (PriFT-mass, Eq. 3)
      rank          0-based rank of y_t = #{v: p(v) > p(y_t)} (ties rank the target first), as float32
                    (exact below 2^24, so all statistics share one dtype and can be stacked / cached together)
    Computed under no_grad; materialises a few [..., V] float32 temporaries (see token_stats_chunked for large V).
    """
    with torch.no_grad():
        V = logits.shape[-1]
        x = logits.detach().reshape(-1, V).to(torch.float32, copy=True)  # [N, V], ours to overwrite
        t = targets.detach().reshape(-1).long().to(x.device).clamp(min=0)  # [N]
        out = _row_stats(x, t, topk)
        return {key: val.reshape(targets.shape) for key, val in out.items()}


def token_stats_chunked(hidden: torch.Tensor, lm_head_weight: torch.Tensor, targets: torch.Tensor,
                        topk: int = DEFAULT_TOPK, chunk_size: int = 1024, lm_head_bias: torch.Tensor | None = None,
                        logit_scale: float | None = None, compile: bool = False,
                        workspace: dict | None = None) -> dict[str, torch.Tensor]:
    """token_stats for logits = (hidden @ W^T + b) * logit_scale, computed `chunk_size` positions at a time.

    hidden [N, D] (or [..., D] matching targets [...]), lm_head_weight [V, D], targets [N]. Only [chunk, V]
    logits are ever materialised (the frozen reference pass with V = 151,936; App. "Computational overhead").
    The matmul runs in the weight's dtype, exactly like the model's own lm_head, so the result equals
    token_stats(model logits); the statistics are then computed in float32. Peak memory is three float32
    [chunk_size, V] buffers allocated once for the whole call (~1.8 GB for 1024 x 151,936; lower chunk_size if
    that is too much). compile=True runs the passes over V through torch.compile (fused loops; every chunk is
    padded to chunk_size rows so that one compiled shape serves the whole pass): worth it for a long pass, not for
    a few hundred tokens (compiling takes about a minute on CPU). `workspace`: a dict the caller keeps across calls
    (the reference pass, batch after batch) so that the buffers are allocated once, not once per call.
    """
    with torch.no_grad():
        D = hidden.shape[-1]
        h = hidden.detach().reshape(-1, D)  # [N, D]
        t = targets.detach().reshape(-1).long().to(h.device).clamp(min=0)  # [N]
        assert h.shape[0] == t.shape[0], f"hidden has {h.shape[0]} positions, targets {t.shape[0]}"
        W = lm_head_weight.detach()
        b = None if lm_head_bias is None else lm_head_bias.detach()
        parts = {key: [] for key in STAT_KEYS}
        rows = chunk_size if compile else min(chunk_size, h.shape[0])
        # three float32 [rows, V] buffers for the whole pass: logits, probabilities, comparison flags
        ws = {} if workspace is None else workspace
        have = ws.get("bufs")
        if have is None or have[0].shape[0] < rows or have[0].shape[1] != W.shape[0] or have[0].device != h.device:
            ws["bufs"] = [torch.empty(rows, W.shape[0], dtype=torch.float32, device=h.device) for _ in range(3)]
        xbuf, work, flags = (b[:rows] for b in ws["bufs"])  # [rows, V] views of buffers with >= rows rows
        for i in range(0, h.shape[0], chunk_size):
            hc = h[i:i + chunk_size].to(W.dtype)  # [C, D]
            x = xbuf[:hc.shape[0]]  # [C, V]
            if W.dtype == torch.float32:
                torch.mm(hc, W.t(), out=x)
                if b is not None:
                    x.add_(b)
            else:  # the matmul in the weight's dtype (bf16 on GPU), like the model's lm_head; stats in float32
                x.copy_(F.linear(hc, W, b))
            if logit_scale is not None:
                x.mul_(logit_scale)
            tc = t[i:i + chunk_size]  # [C]
            if compile:
                n = tc.shape[0]
                tpad = torch.zeros(rows, dtype=torch.long, device=tc.device)
                tpad[:n] = tc
                xbuf[n:].zero_()  # the last chunk's padding rows: finite values, results dropped
                rank, mass, lse, pz, zt, z = _compiled_vocab_passes()(xbuf, tpad)  # [rows] ... [rows, V]
                top, _ = _topk(z[:n], max(1, min(topk, z.shape[-1])))  # [n, K]
                out = _finish(rank[:n], mass[:n], lse[:n], pz[:n], zt[:n], top, topk)
            else:
                out = _row_stats(x, tc, topk, work, flags)
            for key, val in out.items():
                parts[key].append(val)
        if h.shape[0] == 0:
            return {key: torch.zeros(targets.shape, dtype=torch.float32, device=h.device) for key in STAT_KEYS}
        return {key: torch.cat(vals).reshape(targets.shape) for key, vals in parts.items()}


# -----------------------------------------------------------------------------
# applying a rule of prift.rules: rule(stats, mask, *, params) -> weights shaped like stats["prob"]

def token_weights(rule: str, stats: dict[str, torch.Tensor], mask: torch.Tensor | None = None,
                  **params) -> torch.Tensor:
    """Detached float32 token weights m_t (Eq. 1) of the named rule; zero outside `mask` (bool, like stats)."""
    fn = R.rule(rule)
    accepted = R.rule_params(rule)
    for key in params:
        if key not in accepted:
            raise TypeError(f"weighting rule {rule!r} got an unknown parameter {key!r}; accepted: {accepted}")
    with torch.no_grad():
        stats = {key: val.detach() for key, val in stats.items()}
        mask = None if mask is None else mask.detach().bool()
        w = fn(stats, mask, **params).float()  # [...]
        if mask is not None:
            w = torch.where(mask, w, 0.0)
        return w


# -----------------------------------------------------------------------------
# loss extras that need the full-vocabulary distributions (carry gradient w.r.t. the online logits)


def shared_vocab(lp: torch.Tensor, ref_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The online log-probabilities lp [..., V] and the reference's log-probabilities on the rows both output layers
    have (Table 7: the Qwen2.5-Math-1.5B student has 151,936 rows, the 7B teacher 152,064, over one tokenizer of
    151,665 tokens). The online distribution is the student's own (normalised over all its V rows); the reference's
    is renormalised over the shared rows min(V, V_ref): a token the student cannot emit carries no reference mass.
    Returns (lp [..., m], lq [..., m]), float32."""
    m = min(lp.shape[-1], ref_logits.shape[-1])
    lq = F.log_softmax(ref_logits[..., :m].detach().float(), dim=-1)  # [..., m]
    return lp[..., :m], lq


def asft_kl(online_logits: torch.Tensor, ref_logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-token KL(pi_ref || pi_theta) over the full vocabulary (ASFT, App. B).

    ASFT's per-token loss is l_t = -sg(p_t) log p_t + beta * KL(pi_pt(.|x,y_<t) || pi_on(.|x,y_<t)), beta = 0.05;
    this returns the KL term [...] for logits [..., V] (caller multiplies by beta and normalises), zero outside
    mask. Float32; ref_logits are treated as constants; works on any leading shape so callers can chunk positions.
    Output layers of different sizes are compared on their shared rows (`shared_vocab`).
    """
    lp, lq = shared_vocab(F.log_softmax(online_logits.float(), dim=-1), ref_logits)  # [..., m]
    q = lq.exp()  # [..., m]
    kl = torch.where(q > 0, q * (lq - lp), 0.0).sum(-1)  # [...]
    return kl if mask is None else torch.where(mask.bool(), kl, 0.0)


def kd_nontarget(online_logits: torch.Tensor, ref_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Non-target KD term -sum_{v != y_t} q_t(v) log p_t(v) per token (App. D.1, Table 7).

    q = softmax(ref_logits) (teacher, constant), p = softmax(online_logits). The decomposed KD loss is
    L_beta = -q_t(y_t) log p_t(y_t) - beta * sum_{v != y_t} q_t(v) log p_t(v) = weighted NLL with m_t = q_t(y_t)
    plus beta * this. Returns [...] for logits [..., V]; positions with a negative (ignore) target are 0. A teacher
    with another output-layer size is compared on the shared rows (`shared_vocab`).
    """
    lp, lq = shared_vocab(F.log_softmax(online_logits.float(), dim=-1), ref_logits)  # [..., m]
    q = lq.exp()  # [..., m]
    t = targets.long().clamp(min=0).unsqueeze(-1)  # [..., 1]
    q = q.scatter(-1, t, 0.0)  # [..., m] teacher mass off the target (targets are real tokens: < m)
    out = -torch.where(q > 0, q * lp, 0.0).sum(-1)  # [...]
    return torch.where(targets >= 0, out, 0.0)


def weighted_nll(logp: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor,
                 num_tokens: int | torch.Tensor) -> torch.Tensor:
    """Eq. (1) normalised by a token count: sum_t m_t * (-log p_t) * mask_t / num_tokens.

    logp: online target log-probs [...] (with grad); weights: m_t [...] (detached here); num_tokens: the response
    tokens of this micro-batch (the authors' normalisation: a per-micro-batch mean, then averaged over accumulation
    steps and processes; training recipe `loss_norm: micro_batch`) or of the whole accumulated global batch
    (`loss_norm: global_tokens`). Weights are NOT renormalised. num_tokens is floored at 1.
    """
    per_token = torch.where(mask.bool(), weights.detach().float() * -logp.float(), 0.0)  # [...]
    if torch.is_tensor(num_tokens):
        return per_token.sum() / num_tokens.clamp_min(1)
    return per_token.sum() / max(num_tokens, 1)


# -----------------------------------------------------------------------------
# EMA source (App. D.1, Fig. 6a)


def ema_update(ema_params: Iterable[torch.Tensor], online_params: Iterable[torch.Tensor], rho: float) -> None:
    """In place theta_ema <- rho * theta_ema + (1 - rho) * theta_on. rho = 0 copies the online model (the
    EMA source then gives DFT); rho = 1 leaves theta_ema untouched (pretrained source, PriFT-prob)."""
    ema_params, online_params = list(ema_params), list(online_params)
    if len(ema_params) != len(online_params):
        raise ValueError(f"{len(ema_params)} EMA tensors but {len(online_params)} online tensors")
    with torch.no_grad():
        for e, o in zip(ema_params, online_params):
            if rho == 0.0:
                e.copy_(o)
            elif rho != 1.0:
                e.mul_(rho).add_(o.to(e.dtype), alpha=1.0 - rho)

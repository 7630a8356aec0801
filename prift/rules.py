"""The weighting rules m_t = rule(statistics, mask, params) of Eq. (1), in one registry (torch-free at import).

A rule is a function of the per-token statistics of some source distribution (STAT_KEYS; `prift.weighting` computes
them) and of the response mask, with keyword-only parameters. It registers with what it reads and a check of its
parameters' values, so that a config naming it is validated - names, ranges, "did you mean" - before any job runs,
without importing torch (the functions use only tensor methods on what they are given):

    @register_rule("rank", reads=("rank",), check=in_range("k", 1, math.inf))
    def _rank(stats, mask, *, k=10):
        # keep the tokens the statistics source ranks in its top k
        return (stats["rank"] < k).float()

`prift.weighting.token_weights` applies a rule (detached, zero off the mask).
"""
from __future__ import annotations

import difflib
import inspect
import math
from typing import Callable

STAT_KEYS = ("logp", "prob", "entropy", "entropy_topk", "mass", "rank")

RULES: dict[str, Callable] = {}


def register_rule(name: str, *, reads: tuple[str, ...] = STAT_KEYS, check: Callable[[dict], list[str]] | None = None):
    """Decorator adding a rule to RULES; a name can be registered only once.

    reads: the statistics (STAT_KEYS) the rule reads - only those are computed or attached for it (a rule that
    declares nothing reads them all); check(params) -> list of problems with its parameters' values (names are
    checked against the function's keyword-only arguments), run when a config is validated, before any job."""
    unknown = set(reads) - set(STAT_KEYS)
    if unknown:
        raise ValueError(f"weighting rule {name!r} reads unknown statistics {sorted(unknown)}; known: {STAT_KEYS}")

    def decorator(fn: Callable) -> Callable:
        if name in RULES:
            raise ValueError(f"weighting rule {name!r} is already registered")
        fn.reads = tuple(reads)
        fn.check = check
        RULES[name] = fn
        return fn
    return decorator


def rule(name: str) -> Callable:
    """The function of a registered rule; an unknown name raises KeyError with the registry and a suggestion."""
    if name not in RULES:
        raise _unknown_rule(name)
    return RULES[name]


def _unknown_rule(rule: str) -> KeyError:
    close = difflib.get_close_matches(rule, RULES, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return KeyError(f"unknown weighting rule {rule!r}; available: {', '.join(sorted(RULES))}{hint}")


def rule_params(rule: str) -> list[str]:
    """The parameters (keyword-only arguments) a rule accepts."""
    if rule not in RULES:
        raise _unknown_rule(rule)
    return [p.name for p in inspect.signature(RULES[rule]).parameters.values() if p.kind is p.KEYWORD_ONLY]


def rule_reads(rule: str, params: dict | None = None) -> tuple[str, ...]:
    """The statistics a rule reads with these parameters (the quantile rule reads the one it ranks by)."""
    if rule not in RULES:
        raise _unknown_rule(rule)
    if rule == "quantile":
        return ((params or {}).get("stat", "prob"),)
    return RULES[rule].reads


def check_rule_params(rule: str, params: dict | None) -> list[str]:
    """Problems with a rule's parameters (unknown names, values out of range); [] when they are fine. No tensors:
    runs at config validation, before any job."""
    if rule not in RULES:
        return [str(_unknown_rule(rule)).strip("'\"")]
    params = params or {}
    accepted = rule_params(rule)
    msgs = [f"unknown parameter {k!r} of rule {rule!r}"
            + (f" (did you mean {difflib.get_close_matches(k, accepted, n=1)[0]!r}?)"
               if difflib.get_close_matches(k, accepted, n=1) else "") + f"; accepted: {accepted}"
            for k in params if k not in accepted]
    if not msgs and RULES[rule].check is not None:
        msgs += RULES[rule].check(params)
    return msgs


def in_range(name: str, lo: float, hi: float, *, lo_open: bool = False):
    """A check that parameter `name`, when given, is a number in [lo, hi] ((lo, hi] with lo_open)."""
    def check(params: dict) -> list[str]:
        if name not in params:
            return []
        v = params[name]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (lo < v if lo_open else lo <= v) and v <= hi
        return [] if ok else [f"parameter {name!r} must be a number in {'(' if lo_open else '['}{lo:g}, {hi:g}], "
                              f"got {v!r}"]
    return check


@register_rule("sft", reads=())
def _sft(stats, mask):
    """SFT: m_t = 1."""
    x = next(iter(stats.values()))
    return x.new_ones(x.shape)


@register_rule("prob", reads=("prob",))
def _prob(stats, mask):
    """m_t = p_t: DFT with the online source, PriFT-prob (Eq. 2) with the pretrained source."""
    return stats["prob"]


@register_rule("profit", reads=("prob",), check=in_range("tau", 0.0, 1.0))
def _profit(stats, mask, *, tau=0.1):
    """ProFit (Table 1): m_t = 1[p_t >= tau]."""
    return (stats["prob"] >= tau).float()


def median(x):
    """The median of a 1-D tensor, the mean of the two middle values for an even count (numpy's median)."""
    s = x.sort().values
    n = s.numel()
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


TALR_TAU_MIN = 1e-6  # floor of the adaptive temperature (a batch whose median loss is 0: every p_t = 1)


def talr_tau(logp, mask, median_over: str = "tokens"):
    """TALR's adaptive temperature of one batch: the median of the losses -log p_t over the masked tokens
    (median_over="tokens"), or over the sequences' mean losses (median_over="sequences": rows of [B, L] with at
    least one masked token); floored at TALR_TAU_MIN. A batch without a masked token gets tau = 1 (no weights)."""
    nll = -logp.float()  # [...]
    m = (nll.new_ones(nll.shape) > 0) if mask is None else mask
    if median_over == "tokens":
        vals = nll[m]  # [n]
    elif median_over == "sequences":
        if nll.dim() < 2:
            raise ValueError("TALR median_over='sequences' needs statistics shaped [batch, length]")
        rows, counts = nll.flatten(1), m.flatten(1)  # [B, L]
        has = counts.any(1)  # [B]
        vals = rows.masked_fill(~counts, 0.0).sum(1)[has] / counts.sum(1)[has]  # [B'] per-sequence mean loss
    else:
        raise ValueError(f"median_over must be 'tokens' or 'sequences', got {median_over!r}")
    if vals.numel() == 0:
        return nll.new_ones(())
    return median(vals).clamp_min(TALR_TAU_MIN)


def _check_talr(params: dict) -> list[str]:
    msgs = in_range("w_min", 0.0, 1.0)(params)
    tau = params.get("tau", "adaptive")
    if tau != "adaptive" and not (isinstance(tau, (int, float)) and not isinstance(tau, bool) and tau > 0):
        msgs.append(f"parameter 'tau' must be 'adaptive' or a number > 0, got {tau!r}")
    if params.get("median_over", "tokens") not in ("tokens", "sequences"):
        msgs.append(f"parameter 'median_over' must be 'tokens' or 'sequences', got {params['median_over']!r}")
    return msgs


@register_rule("talr", reads=("logp",), check=_check_talr)
def _talr(stats, mask, *, tau="adaptive", w_min=0.01, median_over="tokens"):
    """TALR (Table 1, App. B): m_t = max(sg(p_t^{1/tau}), w_min), w_min = 0.01 as in the paper.

    tau="adaptive" (TALR's own definition, arXiv 2509.20758): recomputed for every batch the rule receives - in SFT
    one micro-batch on one process - as the median of the losses -log p_t of its response tokens (`talr_tau`;
    median_over="sequences": the median of the per-sequence mean losses, the variant of the one public
    re-implementation). A number is a fixed tau (tau = 1 makes TALR DFT with a floor). With the pretrained source
    (Table 6) p_t and tau both come from the pretrained statistics."""
    logp = stats["logp"]
    t = talr_tau(logp, mask, median_over) if tau == "adaptive" else logp.new_tensor(float(tau))
    return (logp / t).exp().clamp_min(w_min)


@register_rule("eaft", reads=("entropy_topk",))
def _eaft(stats, mask):
    """EAFT (Table 1, App. B): m_t = H_t^{top-K} / log K; K is fixed when the statistics are computed (20)."""
    return stats["entropy_topk"]


@register_rule("idft", reads=("logp", "entropy"), check=in_range("b", 0.0, math.inf, lo_open=True))
def _idft(stats, mask, *, b=1.0):
    """IDFT (Table 1, App. B): m_t = p_t^{exp(-phi_t)}, phi_t = clip(log p_t + H_t, -b, b), b = 1.0."""
    phi = (stats["logp"] + stats["entropy"]).clamp(-b, b)
    return (stats["logp"] * (-phi).exp()).exp()


def _check_mass(params: dict) -> list[str]:
    msgs = in_range("tau", 0.0, 1.0)(params)
    if not isinstance(params.get("strict", False), bool):
        msgs.append(f"parameter 'strict' must be true or false, got {params['strict']!r}")
    return msgs


@register_rule("mass", reads=("mass",), check=_check_mass)
def _mass(stats, mask, *, tau=0.5, strict=False):
    """PriFT-mass (Eq. 3): m_t = 1[u_t >= tau], tau = 0.5. strict=True uses u_t > tau, the form of the App. D.1
    threshold sweep (Fig. 6b), where tau = 1 selects no token."""
    u = stats["mass"]
    return (u > tau).float() if strict else (u >= tau).float()


def _check_quantile(params: dict) -> list[str]:
    msgs = in_range("frac", 0.0, 1.0)(params)
    if params.get("keep", "top") not in ("top", "bottom"):
        msgs.append(f"parameter 'keep' must be 'top' or 'bottom', got {params['keep']!r}")
    if params.get("stat", "prob") not in STAT_KEYS:
        msgs.append(f"parameter 'stat' must be one of {list(STAT_KEYS)}, got {params['stat']!r}")
    return msgs


@register_rule("quantile", check=_check_quantile)
def _quantile(stats, mask, *, stat="prob", keep="top", frac=0.5):
    """Table 2 selection: m_t = 1 for the top (keep="top") or bottom (keep="bottom") `frac` of the tokens by
    stats[stat] ("prob" = p_t, "entropy" = H_t), else 0.

    The quantile is BATCH-LEVEL: it is taken over all positions of the given tensor where mask is True (all
    positions when mask is None), not per sequence. Exactly round(frac * n) tokens are selected (halves round
    up); ties are broken by position (stable sort), so the result is deterministic.
    """
    if keep not in ("top", "bottom"):
        raise ValueError(f"keep must be 'top' or 'bottom', got {keep!r}")
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"frac must be in [0, 1], got {frac}")
    v = stats[stat].reshape(-1).float()  # [N]
    keep_all = v.new_ones(v.shape) > 0
    idx = (keep_all if mask is None else mask.reshape(-1)).nonzero().squeeze(1)  # [n]
    k = math.floor(frac * idx.numel() + 0.5)
    order = v[idx].sort(descending=(keep == "top"), stable=True).indices[:k]  # [k]
    w = v.new_zeros(v.shape)
    w[idx[order]] = 1.0
    return w.reshape(stats[stat].shape)


